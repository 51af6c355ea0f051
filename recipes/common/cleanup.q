# common/cleanup.q: graph cleanup that every recipe starts with.
#
# Include it and splice it in with `use cleanup`:
#
#   include "common/cleanup.q"
#   pipeline {
#     use cleanup
#     ...
#   }
#
# Every step keeps the FP32 outputs bit-identical except fold-batchnorm, which re-rounds
# weights (see docs/passes.md for the measured tolerance).

pipeline cleanup {
  # Constant nodes (Paddle and PyTorch exports) become initializers; shape arithmetic on
  # static shapes is evaluated by onnxruntime itself.
  fold-constants
  # Identity, inference Dropout, same-type Cast, identity Transpose, no-op reshapes.
  eliminate-identity
  # BatchNormalization into the Conv/ConvTranspose/Gemm/MatMul before it; a BN that cannot
  # be folded becomes a per-channel Mul + Add.
  fold-batchnorm
  # Constant Mul/Div/Add/Sub after a Conv/Gemm/MatMul into its weights and bias (Paddle's
  # "learnable affine" blocks, scale-and-shift layers): one requantization less each.
  fold-affine
  # x * Clip(x + 3, 0, 6) / 6 and x * HardSigmoid(x) back into one HardSwish (opset 14+).
  recompose-hardswish
  # Whatever the steps above left unused.
  eliminate-dead-code
}
