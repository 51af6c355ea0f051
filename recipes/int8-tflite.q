# int8-tflite: full-integer INT8 TFLite, the default for `-o model.tflite`.
#
#   qcc compile model.onnx --calib calib.npy -o model.int8.tflite
#   qcc compile model.onnx -r int8-tflite --calib calib.npy -o model.int8.tflite
#
# TFLite's quantization spec: int8 activations (asymmetric, per tensor) and int8 weights
# (symmetric, per channel, [-127, 127]); int32 bias with scale in_scale * w_scale[c]. The
# quantize pass follows the tflite capability table: Relu/ReLU6 fused into the op before
# them, fixed output parameters for LOGISTIC, SOFTMAX and TANH, one scale shared by the
# inputs and output of CONCATENATION, pools, PAD, RESIZE, RESHAPE, TRANSPOSE and friends.
# Ops TFLite has no integer kernel for stay float between DEQUANTIZE and QUANTIZE. The
# backend turns the graph to NHWC and writes the flatbuffer itself; no TensorFlow.
#
# Writing .onnx with this recipe gives the QDQ model the backend lowers (for comparisons).

recipe int8_tflite

include "common/cleanup.q"

# How activation ranges are chosen from the calibration data: minmax, percentile(P),
# entropy (KL) or mse. Override with -D observer=minmax.
let observer = percentile(99.999)
# Calibration samples, drawn with the seed from the data given with --calib.
let samples = 256
# float32 (default): float inputs and outputs, QUANTIZE/DEQUANTIZE inside the model; int8:
# the model takes and returns the int8 tensors (for integer-only accelerators).
let io = float32
# nhwc (default): rank-4 inputs and outputs are NHWC, as TFLite models are; nchw: they keep
# the ONNX model's layout (one TRANSPOSE at each).
let layout = nhwc

calibration { samples $samples, seed 0 }

scheme w8 = int8 symmetric per_channel
scheme a8 = int8 asymmetric per_tensor observer $observer

pipeline {
  use cleanup
  # HardSwish as x * HardSigmoid(x): XNNPACK runs no int8 HARD_SWISH (each one runs in the
  # slow builtin kernel and splits the delegated graph); cleanup's recompose-hardswish has
  # already brought every exporter's spelling to one HardSwish.
  decompose-hardswish
  # HardSigmoid (squeeze-and-excitation gates, and the HardSwish gates above) as Mul, Add and
  # a Clip: integer MUL and ADD (TFLite has no HARD_SIGMOID).
  decompose-hardsigmoid
  # Conv/Gemm/MatMul + Relu or ReLU6: TFLite's fused activation.
  fuse-activations
  observe weights = w8, activations = a8
  calibrate
  quantize
}

target tflite { io = $io, layout = $layout }
