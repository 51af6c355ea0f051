"""Quantization schemes: what a recipe's ``scheme`` declaration means, as data.

``scheme a8 = uint8 asymmetric per_tensor observer percentile(99.99)`` resolves to a
:class:`QuantScheme`. The vocabulary (element types, observers and their parameters) is defined
here once, so the recipe resolver, the docs and the quantization passes agree on it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any


class QDType(enum.Enum):
    """Element type a scheme quantizes to (``float`` keeps the tensor in float)."""

    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    UINT16 = "uint16"
    FLOAT = "float"

    @property
    def bits(self) -> int:
        return {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "float": 32}[self.value]

    @property
    def signed(self) -> bool:
        return self in (QDType.INT8, QDType.INT16)

    @property
    def qrange(self) -> tuple[int, int]:
        """Representable integer range (not defined for float)."""
        if self is QDType.FLOAT:
            raise ValueError("float has no integer range")
        if self.signed:
            return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        return 0, 2**self.bits - 1


class Granularity(enum.Enum):
    PER_TENSOR = "per_tensor"
    PER_CHANNEL = "per_channel"


@dataclasses.dataclass(frozen=True)
class ObserverParam:
    name: str
    type: type
    default: Any
    valid: Callable[[Any], bool]
    range_text: str  # the valid range, for messages and docs
    help: str


@dataclasses.dataclass(frozen=True)
class ObserverKind:
    name: str
    params: tuple[ObserverParam, ...]
    help: str


# Histogram observers sample the bulk of each large tensor and bin its tails and min/max
# exactly: binning costs ~8 ns a value in numpy and dominated calibration on detection-size
# activations (docs/quantization.md, "Calibration cost").
_VALUES = ObserverParam(
    "values",
    int,
    4096,
    lambda v: v >= 0,
    "values >= 0",
    "bulk values sampled per sample of a tensor over 16x this size (tails always exact; 0: all)",
)

OBSERVERS: dict[str, ObserverKind] = {
    o.name: o
    for o in (
        ObserverKind("minmax", (), "the smallest and largest value seen"),
        ObserverKind(
            "moving_average",
            (
                ObserverParam(
                    "momentum",
                    float,
                    0.01,
                    lambda v: 0 < v <= 1,
                    "0 < momentum <= 1",
                    "weight of each new batch",
                ),
            ),
            "exponential moving average of each batch's min and max",
        ),
        ObserverKind(
            "percentile",
            (
                ObserverParam(
                    "p", float, 99.99, lambda v: 50 <= v <= 100, "50 <= p <= 100", "percentile kept"
                ),
                _VALUES,
            ),
            "clip the range at a percentile of the value histogram",
        ),
        ObserverKind(
            "entropy",
            (
                ObserverParam(
                    "bins", int, 2048, lambda v: v >= 128, "bins >= 128", "histogram bins"
                ),
                _VALUES,
            ),
            "the range minimizing the KL divergence of the quantized histogram (TensorRT's method)",
        ),
        ObserverKind(
            "mse",
            (
                ObserverParam(
                    "bins", int, 2048, lambda v: v >= 128, "bins >= 128", "histogram bins"
                ),
                _VALUES,
            ),
            "the range minimizing the mean squared quantization error",
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class ObserverSpec:
    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    def __str__(self) -> str:
        if not self.params:
            return self.kind
        return f"{self.kind}(" + ", ".join(f"{k}={v}" for k, v in self.params) + ")"


@dataclasses.dataclass(frozen=True)
class QuantScheme:
    """How one class of tensors is quantized."""

    name: str
    dtype: QDType
    symmetric: bool = False
    granularity: Granularity = Granularity.PER_TENSOR
    axis: int | None = None  # per-channel axis; None means the op's output-channel axis
    observer: ObserverSpec = ObserverSpec("minmax")
    reduce_range: bool = False  # 7-bit weights, for CPUs without VNNI (see ARITHMETIC.md)

    def recipe_text(self) -> str:
        return self.name

    def __str__(self) -> str:
        parts = [self.dtype.value]
        if self.dtype is not QDType.FLOAT:
            parts.append("symmetric" if self.symmetric else "asymmetric")
            parts.append(self.granularity.value)
            if self.axis is not None:
                parts.append(f"axis({self.axis})")
            parts.append(f"observer {self.observer}")
            if self.reduce_range:
                parts.append("reduce_range")
        return " ".join(parts)
