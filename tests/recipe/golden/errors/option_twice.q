pipeline {
  fold-constants max-bytes = 1, max-bytes = 2
}
