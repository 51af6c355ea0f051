# model: digits
pipeline {
  fuse-activations on op(Cnov)
}
