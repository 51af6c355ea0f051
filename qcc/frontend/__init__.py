"""ONNX in and out: read a file into the IR, lower the IR back and write it atomically.

Only this package (and the backends) import ``onnx``.
"""

from __future__ import annotations

from qcc.frontend.lift import lift_model
from qcc.frontend.lower import lower_model
from qcc.frontend.opset import convert_opset
from qcc.frontend.reader import MAX_OPSET, MIN_OPSET, ShapeReport, read_model
from qcc.frontend.writer import save_model, write_model

__all__ = [
    "MAX_OPSET",
    "MIN_OPSET",
    "ShapeReport",
    "convert_opset",
    "lift_model",
    "lower_model",
    "read_model",
    "save_model",
    "write_model",
]
