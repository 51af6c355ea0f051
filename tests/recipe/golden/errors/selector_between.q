# model: digits
pipeline {
  fold-batchnorm on between(["input"], ["logit"])
}
