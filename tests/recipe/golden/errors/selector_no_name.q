# model: digits
pipeline {
  fuse-activations exclude name("/features/feature.0/Conv")
}
