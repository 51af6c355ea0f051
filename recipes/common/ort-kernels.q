# Graph forms onnxruntime's x86 CPU kernels run fastest in INT8; `use ort_kernels` before
# `observe`, and run `fold-dequantize-scale` right after `quantize`.

pipeline ort_kernels {
  # HardSwish as x * HardSigmoid(x), and HardSigmoid as Clip(x * alpha + beta, 0, 1):
  # onnxruntime has no integer kernel for either, and each one was a float island
  # (DequantizeLinear, HardSwish, QuantizeLinear: 324 us on 200 K values). After
  # fold-dequantize-scale the gate is one QLinearAdd (its clamp is its quantizer) and the
  # product one QLinearMul (48 + 110 us).
  decompose-hardswish
  decompose-hardsigmoid
  # Depthwise convolutions with a channel count that is not a multiple of 16 run in
  # onnxruntime's slow per-element path: pad them (and what is coupled to them) with inert
  # channels; the function is unchanged.
  pad-channels
}
