"""The reference integer interpreter: executes INT8 ONNX models with numpy, bit for bit.

``Interpreter(model, profile)`` runs a lifted model; kernels live in :mod:`qcc.interp.kernels`
and register themselves in :mod:`qcc.interp.registry`; profiles (:mod:`qcc.interp.profiles`)
name the arithmetic of a runtime.
"""

from __future__ import annotations

from qcc.interp import kernels as _kernels  # noqa: F401  (registers every kernel)
from qcc.interp.registry import InterpError, kernel, lookup
from qcc.interp.run import Interpreter

__all__ = ["InterpError", "Interpreter", "kernel", "lookup"]
