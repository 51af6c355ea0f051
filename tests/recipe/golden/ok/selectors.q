# model: digits
recipe selectors
scheme a8 = uint8
scheme a16 = int16 symmetric

pipeline {
  fuse-activations on op(Conv) - name("/features/features.0/*")
  fold-batchnorm exclude op(Gemm, Relu) | name(~"head")
  test-observe activations = a8 on op(Conv, Gemm) & name("/features*", ~"^/head/head\.1/")
      where op(Gemm) { activations = a16 }
      where between(["input"], ["/features/features.2/Relu_output_0"]) { activations = a16 }
  eliminate-identity on all exclude (op(Conv) | op(Relu)) & name("*features.3*")
}
