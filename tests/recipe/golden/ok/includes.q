recipe includes
include "lib/cleanup-local.q"     # beside this file
include "common/cleanup.q"        # a built-in recipe file

pipeline {
  use cleanup
  use tidy
  fuse-activations conv-relu
}
