pipeline {
  fold-constants max-bytes = "big"
}
