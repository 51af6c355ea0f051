pipeline {
  fold-batchnorm on name(~"conv(")
}
