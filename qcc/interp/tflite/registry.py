"""Kernel registry of the TFLite interpreter.

A TFLite kernel is a function ``fn(call, *arrays)`` computing one builtin operator: ``call`` is
the :class:`Call` (the operator, its input and output :class:`~qcc.interp.tflite.model.Tensor`
records with their quantization, the options, and the *arithmetic* it runs in), the arrays are
its inputs (``None`` for an absent optional one). It returns one array or a tuple.

The arithmetic is where LiteRT runs the operator: ``"xnnpack"`` (inside the XNNPACK delegate),
``"builtin"`` (TFLite's optimized builtin kernels, for operators the delegate leaves) or
``"ref"`` (the reference kernels of ``BUILTIN_REF``). A kernel registered for some arithmetics
serves those only; one registered with ``arith=None`` serves all (data movement).

``exact`` says whether the kernel reproduces LiteRT bit for bit: ``True``/``False``, or a
function of the call (the float32 version of an op is inexact where the integer one is exact).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qcc.interp.registry import InterpError
from qcc.interp.tflite.model import Operator, Tensor, TFLiteModel

ARITHS = ("xnnpack", "builtin", "ref")


@dataclass
class Call:
    """One operator bound to its tensors and the arithmetic it runs in."""

    model: TFLiteModel
    op: Operator
    ins: list[Tensor | None]
    outs: list[Tensor]
    arith: str
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def opts(self) -> dict[str, Any]:
        return self.op.options

    @property
    def out(self) -> Tensor:
        return self.outs[0]

    def const(self, i: int) -> np.ndarray:
        """The constant data of input ``i`` (shape tensors, axes), or an error."""
        t = self.ins[i] if i < len(self.ins) else None
        if t is None or t.data is None:
            raise InterpError(f"input {i} must be a constant tensor")
        return t.data

    def describe(self) -> str:
        return self.model.describe(self.op)


Exactness = bool | Callable[[Call], bool]


@dataclass(frozen=True)
class TKernel:
    op: str
    fn: Callable[..., Any]
    arith: tuple[str, ...] | None
    exact: Exactness

    def is_exact(self, call: Call) -> bool:
        return self.exact(call) if callable(self.exact) else bool(self.exact)


_REG: dict[str, list[TKernel]] = {}


def tkernel(
    *ops: str, arith: tuple[str, ...] | None = None, exact: Exactness = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function for builtin ``ops`` under ``arith`` (None: all)."""

    def reg(fn: Callable[..., Any]) -> Callable[..., Any]:
        for op in ops:
            for k in _REG.get(op, []):
                if k.arith == arith or (k.arith and arith and set(k.arith) & set(arith)):
                    raise ValueError(f"TFLite kernel {op} {arith} registered twice")
            _REG.setdefault(op, []).append(TKernel(op, fn, arith, exact))
        return fn

    return reg


def tlookup(op: str, arith: str) -> TKernel | None:
    """The kernel for ``op`` in ``arith``: its own first, else the generic one."""
    specs = _REG.get(op, [])
    for k in specs:
        if k.arith is not None and arith in k.arith:
            return k
    for k in specs:
        if k.arith is None:
            return k
    return None


def registered() -> list[str]:
    return sorted(_REG)


def exact_if_integer(call: Call) -> bool:
    """Exactness of a kernel whose float32 version sums in an order qcc does not reproduce."""
    return call.out.dtype.kind != "f"
