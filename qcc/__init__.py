"""qcc: a quantization compiler for ONNX models (FP32 ONNX in, INT8 ONNX or TFLite out)."""

__version__ = "0.1.0"
