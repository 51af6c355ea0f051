"""Interpreter profiles: the arithmetic of one runtime, by name.

A profile rewrites a model the way its runtime does before executing it (onnxruntime's QDQ
transformer fuses DQ -> op -> Q units into integer kernels; a unit it does not fuse stays
DQ -> float op -> Q) and selects the kernels registered for it. ``onnx-ref`` applies no rewrite:
every op runs as the ONNX specification writes it (Q/DQ in float32 around float ops).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qcc.interp.registry import InterpError
from qcc.ir import Model


@dataclass(frozen=True)
class Profile:
    """A runtime's arithmetic: a name, a one-line description, a model rewrite."""

    name: str
    description: str
    prepare: Callable[[Model], Model]


def _identity(model: Model) -> Model:
    return model


def _ort_x86(model: Model) -> Model:
    from qcc.interp.profiles.ort_x86 import prepare

    return prepare(model)


def _tflite_only(name: str) -> Callable[[Model], Model]:
    def refuse(model: Model) -> Model:
        raise InterpError(
            f"unknown profile {name!r} for an ONNX model (it runs .tflite models); "
            "ONNX profiles: onnx-ref, ort-x86"
        )

    return refuse


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "ort-x86",
            "onnxruntime CPU (MLAS) on x86-64: QDQ units fused as onnxruntime fuses them",
            _ort_x86,
        ),
        Profile("onnx-ref", "the ONNX specification, op by op, no fusion", _identity),
        # .tflite profiles: executed by qcc.interp.tflite.TFLiteInterpreter, not on ONNX models
        Profile(
            "tflite-xnnpack",
            "LiteRT's default resolver: XNNPACK delegate, builtin kernels for the rest",
            _tflite_only("tflite-xnnpack"),
        ),
        Profile(
            "tflite-ref", "LiteRT's reference kernels (BUILTIN_REF)", _tflite_only("tflite-ref")
        ),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; an :class:`InterpError` listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise InterpError(
            f"unknown profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}"
        ) from None
