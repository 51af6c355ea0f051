# int8-ort: INT8 for onnxruntime on x86 CPUs, the default to start from.
#
#   qcc compile model.onnx -r int8-ort --calib calib.npy -o model.int8.onnx
#
# uint8 activations (asymmetric, per tensor) with int8 weights (symmetric, per channel) is the
# pair onnxruntime's x86 kernels run fastest (u8s8, VNNI). The quantize pass places the
# QuantizeLinear/DequantizeLinear nodes where onnxruntime fuses them into QLinearConv,
# QLinearMatMul, QGemm, QLinearAdd/Mul/Concat/..., absorbs Relu and ReLU6 into the
# quantizers, and leaves ops it cannot run in integer in float with as few boundaries as
# possible (the compile report lists them). Before that, `ort_kernels` rewrites what
# onnxruntime has no fast integer form for: HardSwish/HardSigmoid become Add and Mul (integer
# kernels; `fold-dequantize-scale` then folds their constant factor into a DQ scale), and
# depthwise convolutions get a channel count that is a multiple of 16 (inert zero channels).

recipe int8_ort

include "common/cleanup.q"
include "common/ort-kernels.q"

# How activation ranges are chosen from the calibration data: minmax, percentile(P),
# entropy (KL, TensorRT's method) or mse. Override with -D observer=entropy.
let observer = percentile(99.999)
# Calibration samples, drawn with the seed from the data given with --calib.
let samples = 256

calibration { samples $samples, seed 0 }

scheme w8 = int8 symmetric per_channel
scheme a8 = uint8 asymmetric per_tensor observer $observer

pipeline {
  use cleanup
  use ort_kernels
  # Conv/Gemm/MatMul + Relu or ReLU6: one integer kernel in onnxruntime.
  fuse-activations
  observe weights = w8, activations = a8
  calibrate
  quantize
  fold-dequantize-scale
}

# Per-channel DequantizeLinear needs opset 13 and HardSwish 14: older models are converted up.
target onnx { format = qdq, min_opset = 14 }
