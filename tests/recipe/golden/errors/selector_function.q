pipeline {
  fold-batchnorm on ops(Conv)
}
