"""The TFLite backend: an INT8 QDQ ONNX model lowered to NHWC and written as a .tflite flatbuffer."""
