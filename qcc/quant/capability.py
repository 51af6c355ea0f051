"""Capability tables: which ops a runtime executes in integer, and under which constraints.

The ``ort-x86`` table is onnxruntime's CPU QDQ transformer as measured here (ARITHMETIC.md,
and probes of ``SessionOptions.optimized_model_filepath`` on onnxruntime 1.31):

* ``linear``: DQ(x), DQ(weight), DQ(int32 bias) -> op -> Q becomes QLinearConv / QLinearMatMul
  / QGemm. Weights are constants; Conv's weights are per channel on axis 0, MatMul's on axis
  1, Gemm's on the N axis. The bias scale must be ``f32(sx * sw[c])`` or the fusion silently
  stops. The op's output must feed only its Q.
* ``integer``: DQ inputs -> op -> Q becomes QLinearAdd/Mul/Concat/AveragePool/
  GlobalAveragePool/Sigmoid/LeakyRelu/Softmax, each input with its own parameters.
* ``shared``: onnxruntime drops DQ -> op -> Q around MaxPool, Reshape, Transpose, Flatten,
  Squeeze, Unsqueeze, Slice, Gather, nearest Resize, Split **only when the input and output
  parameters are equal**, and runs the op on the integers; so these ops share parameters.
* ``absorbed``: Relu and Clip vanish into the following Q when that Q's range lies inside
  theirs (zero point at the type minimum for Relu; within ``[lo, hi]`` for Clip).
* everything else (ConvTranspose, HardSwish, HardSigmoid, Tanh, Pad, linear Resize, Sub,
  Div, ReduceMean, ...) runs in float between a DQ and a Q.

Constant operands of integer ops (Add's bias, Mul's scale) are quantized at compile time, as
uint8 even when activations are int8: x86 onnxruntime computes int8 activations in the uint8
domain and fuses only uint8 constant operands. int8 activations need int8 weights; uint8
activations take int8 weights; per-channel weight
zero points must all be equal (they are 0 here); int8 graph inputs and outputs are not fused
on x86 unless the session allows it, so graph inputs and outputs stay float.
"""

from __future__ import annotations

import dataclasses
import enum

from qcc.ir import Node, constant_value


class Kind(enum.Enum):
    LINEAR = "linear"
    INTEGER = "integer"
    SHARED = "shared"
    ABSORBED = "absorbed"
    FLOAT = "float"


class Role(enum.Enum):
    ACTIVATION = "activation"
    WEIGHT = "weight"
    BIAS = "bias"


@dataclasses.dataclass(frozen=True)
class OpCapability:
    kind: Kind
    inputs: tuple[tuple[int, Role], ...] = ()  # which inputs get quantized, and as what
    weight_axis: int | None = None  # per-channel axis of the weight input
    reason: str = ""  # why an op stays in float (for the report)


_FLOAT = OpCapability(Kind.FLOAT)
_SHARED = OpCapability(Kind.SHARED, ((0, Role.ACTIVATION),))
_UNARY = OpCapability(Kind.INTEGER, ((0, Role.ACTIVATION),))

_SHARED_OPS = {
    "MaxPool",
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Slice",
    "Gather",
    "Split",
    "DepthToSpace",
    "SpaceToDepth",
}
_UNARY_OPS = {"AveragePool", "GlobalAveragePool", "Sigmoid", "LeakyRelu", "Softmax"}


def ort_x86(node: Node) -> OpCapability:
    """What onnxruntime's x86 CPU provider can do with ``node`` in QDQ form."""
    op = node.op_type
    if node.domain:
        return dataclasses.replace(_FLOAT, reason=f"custom domain {node.domain}")
    if op == "Conv":
        if constant_value(node.input(1)) is None:
            return dataclasses.replace(_FLOAT, reason="weights are not constant")
        ins = [(0, Role.ACTIVATION), (1, Role.WEIGHT)]
        if node.input(2) is not None:
            if constant_value(node.input(2)) is None:
                return dataclasses.replace(_FLOAT, reason="bias is not constant")
            ins.append((2, Role.BIAS))
        return OpCapability(Kind.LINEAR, tuple(ins), weight_axis=0)
    if op == "MatMul":
        w = constant_value(node.input(1))
        if w is not None and w.ndim == 2:
            return OpCapability(
                Kind.LINEAR, ((0, Role.ACTIVATION), (1, Role.WEIGHT)), weight_axis=1
            )
        return OpCapability(Kind.LINEAR, ((0, Role.ACTIVATION), (1, Role.ACTIVATION)))
    if op == "Gemm":
        w = constant_value(node.input(1))
        if w is None or node.attr("transA", 0):
            return dataclasses.replace(_FLOAT, reason="Gemm with transA or non-constant B")
        ins = [(0, Role.ACTIVATION), (1, Role.WEIGHT)]
        c = node.input(2)
        if c is not None:
            cv = constant_value(c)
            if cv is None or cv.ndim > 1 or float(node.attr("beta", 1.0)) != 1.0:
                return dataclasses.replace(_FLOAT, reason="Gemm C is not a constant bias")
            ins.append((2, Role.BIAS))
        return OpCapability(Kind.LINEAR, tuple(ins), weight_axis=0 if node.attr("transB", 0) else 1)
    if op in ("Add", "Mul"):
        return OpCapability(Kind.INTEGER, ((0, Role.ACTIVATION), (1, Role.ACTIVATION)))
    if op == "Concat":
        return OpCapability(
            Kind.INTEGER, tuple((i, Role.ACTIVATION) for i in range(len(node.inputs)))
        )
    if op in _UNARY_OPS:
        return _UNARY
    if op in _SHARED_OPS:
        return _SHARED
    if op == "Resize":
        if node.attr("mode", "nearest") == "nearest":
            return _SHARED
        return dataclasses.replace(_FLOAT, reason="linear Resize runs in float")
    if op in ("Relu", "Clip"):
        return OpCapability(Kind.ABSORBED, ((0, Role.ACTIVATION),))
    return dataclasses.replace(_FLOAT, reason=f"onnxruntime has no integer {op}")


TARGETS = {"ort-x86": ort_x86}
