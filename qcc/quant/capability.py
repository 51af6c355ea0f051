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

The ``tflite`` table is TFLite's quantization spec (ARITHMETIC.md, "TFLite / LiteRT"): int8
activations only; CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV / FULLY_CONNECTED / BATCH_MATMUL
are ``linear`` (Relu and ReLU6 become their fused activation); ADD, SUB, MUL, MEAN,
HARD_SWISH, LEAKY_RELU, LOGISTIC, TANH and SOFTMAX are ``integer``, the last three with fixed
output parameters; CONCATENATION, the pools, PAD, RESIZE, RESHAPE, TRANSPOSE, SLICE, SPLIT and
GATHER are ``shared`` (every input and the output have one scale and zero point). Constant
operands are int8. What TFLite has no integer kernel for (HardSigmoid, Div, Pow, ...) stays
float: the backend writes DEQUANTIZE -> float op -> QUANTIZE.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping

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


def _conv(node: Node, weight_axis: int) -> OpCapability:
    """A convolution with constant weights (and bias) is linear; otherwise it stays float."""
    if constant_value(node.input(1)) is None:
        return dataclasses.replace(_FLOAT, reason="weights are not constant")
    ins = [(0, Role.ACTIVATION), (1, Role.WEIGHT)]
    if node.input(2) is not None:
        if constant_value(node.input(2)) is None:
            return dataclasses.replace(_FLOAT, reason="bias is not constant")
        ins.append((2, Role.BIAS))
    return OpCapability(Kind.LINEAR, tuple(ins), weight_axis=weight_axis)


def ort_x86(node: Node) -> OpCapability:
    """What onnxruntime's x86 CPU provider can do with ``node`` in QDQ form."""
    op = node.op_type
    if node.domain:
        return dataclasses.replace(_FLOAT, reason=f"custom domain {node.domain}")
    if op == "Conv":
        return _conv(node, weight_axis=0)
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


_TFLITE_SHARED = _SHARED_OPS | {"AveragePool", "Pad", "Resize"}
_TFLITE_UNARY = {"GlobalAveragePool", "Sigmoid", "Softmax", "Tanh", "HardSwish", "LeakyRelu"}


def tflite(node: Node) -> OpCapability:
    """What TFLite's int8 kernels can do with ``node`` (its quantization spec)."""
    op = node.op_type
    if node.domain:
        return dataclasses.replace(_FLOAT, reason=f"custom domain {node.domain}")
    if op in ("Conv", "ConvTranspose"):
        if op == "Conv" and len(node.input(1).shape or ()) != 4:
            return dataclasses.replace(_FLOAT, reason="TFLite converts 2-D convolutions only")
        return _conv(node, weight_axis=0 if op == "Conv" else 1)  # ConvTranspose: [Cin, Cout..]
    if op in ("MatMul", "Gemm"):
        return ort_x86(node)  # FULLY_CONNECTED (constant B) or BATCH_MATMUL, same roles
    if op in ("Add", "Sub", "Mul"):
        return OpCapability(Kind.INTEGER, ((0, Role.ACTIVATION), (1, Role.ACTIVATION)))
    if op == "ReduceMean":
        return _UNARY
    if op in _TFLITE_UNARY:
        return _UNARY
    if op == "Concat":
        return OpCapability(
            Kind.SHARED, tuple((i, Role.ACTIVATION) for i in range(len(node.inputs)))
        )
    if op in _TFLITE_SHARED:
        return _SHARED
    if op in ("Relu", "Clip"):
        return OpCapability(Kind.ABSORBED, ((0, Role.ACTIVATION),))
    return dataclasses.replace(_FLOAT, reason=f"TFLite has no integer {op}")


@dataclasses.dataclass(frozen=True)
class Target:
    """A runtime's capability table plus the rules that are not per op.

    ``uint8_constants``: constant operands of integer ops are quantized as uint8 whatever the
    activation type (x86 onnxruntime fuses only those). ``fixed_outputs``: op -> (scale, zero
    point) its int8 output must have. ``activation_types``: the 8-bit activation types the
    runtime has integer kernels for. ``min_constant_ratio``: the least scale of a constant Add/Sub
    operand relative to the output's (XNNPACK refuses smaller ratios).
    """

    name: str
    capability: Callable[[Node], OpCapability]
    uint8_constants: bool = False
    fixed_outputs: Mapping[str, tuple[float, int]] = dataclasses.field(default_factory=dict)
    activation_types: tuple[str, ...] = ("int8", "uint8")
    min_constant_ratio: float | None = None  # least scale of an Add/Sub constant, / output's

    def __call__(self, node: Node) -> OpCapability:
        return self.capability(node)


TARGETS: dict[str, Target] = {
    "ort-x86": Target("ort-x86", ort_x86, uint8_constants=True),
    "tflite": Target(
        "tflite",
        tflite,
        fixed_outputs={
            "Sigmoid": (1 / 256, -128),
            "Softmax": (1 / 256, -128),
            "Tanh": (1 / 128, 0),
        },
        activation_types=("int8",),
        min_constant_ratio=2.0**-9,  # XNNPACK's ADD takes input/output scale ratios >= 2^-10
    ),
}
