# define: limit=4096
recipe variables
let limit = 1024
let rules = [conv-relu, conv-clip]
let standalone = false

pipeline {
  fold-constants max-bytes = $limit
  fold-batchnorm standalone = $standalone
  fuse-activations $rules
}
