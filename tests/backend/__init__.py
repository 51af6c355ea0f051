"""Tests of the TFLite backend: lowering, flatbuffer writing, LiteRT numerics."""
