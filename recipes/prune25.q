# prune25: remove 25% of the channels of every prunable layer, re-fit, stay in FP32.
#
#   qcc compile model.onnx -r prune25 --calib calib.npy -o model.pruned.onnx
#
# Structured pruning: channels leave the graph, so the model has fewer parameters and
# multiply-accumulates and runs faster in every runtime (no zeros left for a runtime to skip).
# Coupled channels (residual adds, concats, depthwise and grouped convolutions, squeeze-excite
# multiplies, flatten into a Gemm) are removed together or not at all; channels that reach a
# graph output are kept. The channels chosen are those whose removal changes the next layers'
# outputs least on the calibration data, and those layers are then re-fitted by least squares
# on the same data. The report lists channels per layer, parameters, MACs and bytes before
# and after, and each re-fitted layer's output error before and after the fit.
#
# Protect a layer (the stem, a head) by copying this recipe and adding
# `exclude name("...")` to the prune-channels step; give a layer another ratio with
# `where name("...") { ratio = 0.5 }`.

recipe prune25

include "common/cleanup.q"

# Fraction of each layer's channels to remove: -D ratio=0.5
let ratio = 0.25
# Keep a multiple of this many channels per layer (the one nearest to 75%): widths onnxruntime's
# CPU kernels vectorize well; exactly 25% per layer (-D multiple=1) leaves widths such as 12
# and 18 that ran slower than FP32 on MobileNet-size models (docs/pruning.md).
let multiple = 8
# How channels are ranked (l1, l2, output-error) and whether the next layers are re-fitted
# (least-squares, none).
let criterion = output-error
let recovery = least-squares
# Calibration samples for importance and re-fitting, drawn with the seed from --calib.
let samples = 64

calibration { samples $samples, seed 0 }

pipeline {
  use cleanup
  prune-channels ratio = $ratio, multiple = $multiple, criterion = $criterion, recovery = $recovery
}

target onnx { format = qdq }
