# int8-ort-accurate: INT8 for onnxruntime, accuracy first.
#
#   qcc compile model.onnx -r int8-ort-accurate --calib calib.npy -o model.int8.onnx
#
# The placement of int8-ort, except for the op groups the accuracy target keeps in float
# (each costs some speed), but activation ranges minimize the mean
# squared quantization error (mse) instead of clipping at a percentile, and the last layers
# (the nodes writing graph outputs) stay in float: output heads such as a detector's
# probability map or a classifier's Softmax are where one quantizer costs the most. Concats
# whose inputs have very different ranges (boxes next to probabilities) stay in float too
# (the quantize pass does that by default). correct-bias moves the mean output error of each
# Conv/Gemm's quantized weights into its bias. quantize then keeps in float the op groups
# that hurt the output most, simulated on the first calibration samples, until the output
# SQNR reaches $sqnr dB or $max_float groups are in float (its report lists each step with the
# SQNR before and after; costs roughly one FP32 inference per sample for each error source
# ranked). The report of the last step lists the SQNR of each quantized tensor against FP32,
# worst first.

recipe int8_ort_accurate

include "common/cleanup.q"
include "common/ort-kernels.q"

let observer = mse
let samples = 256
# Accuracy target: output SQNR in dB (0 turns the search off), and the most op groups it may
# keep in float.
let sqnr = 30
let max_float = 8

calibration { samples $samples, seed 0 }

scheme w8 = int8 symmetric per_channel
scheme a8 = uint8 asymmetric per_tensor observer $observer

pipeline {
  use cleanup
  use ort_kernels
  fuse-activations
  observe weights = w8, activations = a8
  calibrate
  correct-bias
  quantize target-sqnr = $sqnr, max-float = $max_float, float-conv-inputs = 3 exclude outputs()
  fold-dequantize-scale
  error-report
}

target onnx { format = qdq, min_opset = 14 }
