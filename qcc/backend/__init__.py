"""Backends: turn a quantized qcc model into a file a runtime loads (ONNX lives in frontend/)."""
