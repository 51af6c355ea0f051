"""ONNX in and out: read a file into the IR, lower the IR back and write it atomically.

Only this package (and the backends) import ``onnx``.
"""

from __future__ import annotations

import os

from qcc.frontend.lift import lift_model
from qcc.frontend.lower import lower_model
from qcc.frontend.reader import MAX_OPSET, MIN_OPSET, ShapeReport, read_model
from qcc.frontend.writer import write_model
from qcc.ir import Model


def save_model(model: Model, path: str | os.PathLike[str], *, external_data: bool | None = None):
    """Lower ``model`` and write it atomically to ``path`` (checked with onnx.checker)."""
    return write_model(lower_model(model), path, external_data=external_data)


__all__ = [
    "MAX_OPSET",
    "MIN_OPSET",
    "ShapeReport",
    "lift_model",
    "lower_model",
    "read_model",
    "save_model",
    "write_model",
]
