pipeline {
  fold-constants max-byte = 3
}
