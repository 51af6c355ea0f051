# fp32-optimize: clean up an FP32 model and mark Conv+activation groups, without quantizing.
#
#   qcc compile model.onnx -r fp32-optimize -o model.opt.onnx
#
# The output computes what the input computes (within the float tolerance of
# fold-batchnorm) with fewer nodes: Constant nodes folded, BatchNorm folded, dead code gone.
# It is also the FP32 starting point the INT8 recipes build on.

recipe fp32_optimize

include "common/cleanup.q"

pipeline {
  use cleanup
  # Mark Conv/Gemm/MatMul + activation groups (ReLU, ReLU6/Clip, HardSwish, SiLU...) so the
  # quantization passes never put a quantizer between an op and its activation.
  fuse-activations
}

target onnx { format = qdq }
