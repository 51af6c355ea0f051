"""Tests of the TFLite backend (qcc.backend.tflite)."""
