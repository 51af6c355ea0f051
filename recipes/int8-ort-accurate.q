# int8-ort-accurate: INT8 for onnxruntime, accuracy first.
#
#   qcc compile model.onnx -r int8-ort-accurate --calib calib.npy -o model.int8.onnx
#
# Same placement as int8-ort (so the same speed), but activation ranges minimize the mean
# squared quantization error (mse) instead of clipping at a percentile, and the last layers
# (the nodes writing graph outputs) stay in float: output heads such as a detector's
# probability map or a classifier's Softmax are where one quantizer costs the most. Concats
# whose inputs have very different ranges (boxes next to probabilities) stay in float too
# (the quantize pass does that by default). The report of the last step lists the SQNR of
# each quantized tensor against FP32, worst first.

recipe int8_ort_accurate

include "common/cleanup.q"

let observer = mse
let samples = 256

calibration { samples $samples, seed 0 }

scheme w8 = int8 symmetric per_channel
scheme a8 = uint8 asymmetric per_tensor observer $observer

pipeline {
  use cleanup
  fuse-activations
  observe weights = w8, activations = a8
  calibrate
  quantize exclude outputs()
  error-report
}

target onnx { format = qdq, min_opset = 14 }
