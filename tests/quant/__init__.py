"""Tests of the quantization core: observers, parameters, calibration data."""
