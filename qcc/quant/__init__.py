"""Quantization core: schemes (and, with the quantization passes, observers and parameters)."""
