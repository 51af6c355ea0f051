# int8-ort-fast: INT8 for onnxruntime, quickest to compile.
#
#   qcc compile model.onnx -r int8-ort-fast --calib calib.npy -o model.int8.onnx
#
# The same placement as int8-ort, but min-max ranges (one pass, no histograms) from at most
# 64 samples. Good enough for models whose activations have no long tails; the resulting
# model runs exactly as fast as int8-ort's.

recipe int8_ort_fast

include "common/cleanup.q"

let samples = 64

calibration { samples $samples, seed 0 }

scheme w8 = int8 symmetric per_channel
scheme a8 = uint8 asymmetric per_tensor observer minmax

pipeline {
  use cleanup
  fuse-activations
  observe weights = w8, activations = a8
  calibrate
  quantize
}

target onnx { format = qdq, min_opset = 14 }
