let limit = 1024
pipeline {
  fold-constants max-bytes = $limt
}
