let limit = 1024
pipeline {
  fold-constnts
  fold-batchnorm standalone = maybe
  fuse-activations conv-rleu
  eliminate-identity max-bytes = $limit
}
