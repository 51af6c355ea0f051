pipeline {
  fold-constants
  fold-batchnrom
}
