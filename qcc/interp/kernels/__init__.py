"""Interpreter kernels; importing this package registers all of them."""

from __future__ import annotations

from qcc.interp.kernels import float_ops, quant  # noqa: F401
