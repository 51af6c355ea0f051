"""The kernel registry of the reference interpreter.

A kernel is a plain function computing one ONNX op with numpy: inputs positionally (a missing
optional input is ``None``), ONNX attributes as keyword arguments whose Python defaults are the
ONNX defaults, and the outputs returned as one array or a tuple of arrays. Kernels are registered
by ``(domain, op, since-version)``, like onnxruntime's kernel registry: a model importing opset
``v`` of ``domain`` gets the kernel with the highest ``since <= v``.

A kernel may be registered for named profiles only (``profiles=("ort-x86",)``): the arithmetic
of one runtime (MLAS's Logistic polynomial, TFLite's fixed-point requantization ...). A profile's
own kernel wins over the generic one whatever their ``since``.

``exact`` records whether the kernel reproduces the runtime of its profile bit for bit (integer
kernels, data movement, IEEE-exact float arithmetic). ``qcc verify`` uses it to tell integer
mismatches (a bug) from float islands it cannot match (a float Conv whose accumulation order is
MLAS's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qcc.errors import QccError

Kernel = Callable[..., Any]

ONNX_DOMAIN = ""
MS_DOMAIN = "com.microsoft"


class InterpError(QccError):
    """The interpreter cannot execute a model (no kernel, bad input, a kernel failed)."""


@dataclass(frozen=True)
class KernelSpec:
    """One registered kernel."""

    domain: str
    op: str
    since: int
    fn: Kernel
    profiles: tuple[str, ...] | None  # None: every profile
    exact: bool


_REGISTRY: dict[tuple[str, str], list[KernelSpec]] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def kernel(
    op: str,
    *,
    domain: str = ONNX_DOMAIN,
    since: int = 1,
    profiles: tuple[str, ...] | None = None,
    exact: bool = True,
) -> Callable[[Kernel], Kernel]:
    """Register the decorated function as the kernel of ``op`` from opset ``since`` on."""

    def register(fn: Kernel) -> Kernel:
        key = (_norm_domain(domain), op)
        specs = _REGISTRY.setdefault(key, [])
        for s in specs:
            if s.since == since and s.profiles == profiles:
                raise ValueError(
                    f"kernel {domain or 'ai.onnx'}::{op} since {since} registered twice"
                )
        specs.append(KernelSpec(key[0], op, since, fn, profiles, exact))
        return fn

    return register


def lookup(domain: str, op: str, opset: int, profile: str) -> KernelSpec | None:
    """The kernel for ``op`` in a model importing ``domain`` at ``opset``, or ``None``."""
    specs = _REGISTRY.get((_norm_domain(domain), op), [])
    for own in (True, False):
        cands = [
            s
            for s in specs
            if s.since <= opset
            and ((s.profiles is not None and profile in s.profiles) if own else s.profiles is None)
        ]
        if cands:
            return max(cands, key=lambda s: s.since)
    return None


def registered_ops() -> list[tuple[str, str]]:
    """Every ``(domain, op)`` with at least one kernel, sorted."""
    return sorted(_REGISTRY)
