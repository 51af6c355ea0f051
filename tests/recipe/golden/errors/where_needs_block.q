pipeline {
  test-observe where op(Conv) samples = 3
}
