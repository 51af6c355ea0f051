scheme w8 = int8 symmetric
pipeline {
  test-observe weights = w9
}
