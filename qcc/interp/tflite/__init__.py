"""The interpreter for .tflite files: LiteRT's integer arithmetic under the tflite-* profiles."""
