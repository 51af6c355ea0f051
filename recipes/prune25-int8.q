# prune25-int8: prune25 (25% of the channels removed and re-fitted), then INT8 for onnxruntime.
#
#   qcc compile model.onnx -r prune25-int8 --calib calib.npy -o model.pruned.int8.onnx
#
# The pruning of prune25 followed by the quantization of int8-ort (uint8 activations with a
# percentile observer, int8 per-channel weights, Q/DQ placed where onnxruntime fuses it). Both
# steps calibrate on the same data; the quantization observes the pruned, re-fitted model.

recipe prune25_int8

include "common/cleanup.q"
include "common/ort-kernels.q"

let ratio = 0.25
# Keep a multiple of this many channels per layer (the one nearest to 75%): widths onnxruntime's
# CPU kernels vectorize well; exactly 25% per layer (-D multiple=1) leaves widths such as 12
# and 18 that ran slower than FP32 on MobileNet-size models (docs/pruning.md).
let multiple = 8
let observer = percentile(99.999)
let samples = 64

calibration { samples $samples, seed 0 }

scheme w8 = int8 symmetric per_channel
scheme a8 = uint8 asymmetric per_tensor observer $observer

pipeline {
  use cleanup
  prune-channels ratio = $ratio, multiple = $multiple, criterion = output-error, recovery = least-squares
  use ort_kernels
  fuse-activations
  observe weights = w8, activations = a8
  calibrate
  quantize
  fold-dequantize-scale
}

target onnx { format = qdq, min_opset = 14 }
