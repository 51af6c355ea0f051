pipeline {
  fold-batchnorm true
}
