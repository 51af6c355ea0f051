pipeline {
  fold-batchnorm where op(Conv) { standalone = false }
}
