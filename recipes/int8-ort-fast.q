# int8-ort-fast: INT8 for onnxruntime, quickest to compile.
#
#   qcc compile model.onnx -r int8-ort-fast --calib calib.npy -o model.int8.onnx
#
# The same placement as int8-ort, but min-max ranges (one pass, no histograms) from at most
# 64 samples. Good enough for models whose activations have no long tails. It also keeps
# convolutions reading at most 3 channels (image and audio stems) in float, which onnxruntime
# runs about twice as fast as its int8 kernel there; `qcc verify` then counts what follows
# such a stem as after a float island (float kernels sum in their own order).

recipe int8_ort_fast

include "common/cleanup.q"
include "common/ort-kernels.q"

let samples = 64

calibration { samples $samples, seed 0 }

scheme w8 = int8 symmetric per_channel
scheme a8 = uint8 asymmetric per_tensor observer minmax

pipeline {
  use cleanup
  use ort_kernels
  fuse-activations
  observe weights = w8, activations = a8
  calibrate
  # image/audio stems (<= 3 input channels) run 2x faster in onnxruntime's float Conv
  quantize float-conv-inputs = 3
  fold-dequantize-scale
}

target onnx { format = qdq, min_opset = 14 }
