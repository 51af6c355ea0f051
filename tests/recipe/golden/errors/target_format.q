pipeline { fold-constants }
target onnx { format = qdqq }
