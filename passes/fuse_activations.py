"""``fuse-activations``: mark a linear op and its activation as one fusion group.

Nothing in the computation changes; each member node gets ``meta["fusion_group"]`` (a
:class:`~qcc.ir.FusionGroup`), and quantization passes never place a quantizer on a value
inside a group, so the runtime can execute the group as one kernel (onnxruntime's QLinearConv
absorbs Relu and Clip; TFLite's CONV_2D has fused RELU/RELU6).

The anchor is a Conv, ConvTranspose, Gemm or MatMul whose single output feeds only the
activation. Rules (names as in recipes, ``fuse conv-relu, conv-clip``):

* ``conv-relu``: Relu
* ``conv-clip``: Clip with constant (or absent) bounds, e.g. ReLU6
* ``conv-leakyrelu``: LeakyRelu
* ``conv-hardswish``: HardSwish; ``x * HardSigmoid(x)`` with alpha 1/6 and beta 1/2;
  ``x * Clip(x + 3, 0, 6) / 6`` (the Paddle export)
* ``conv-hardsigmoid``: HardSigmoid
* ``conv-sigmoid``: Sigmoid
* ``conv-silu``: ``x * Sigmoid(x)`` (SiLU / Swish)

Does not fire when the anchor's output (or a value inside the pattern) has a user outside the
pattern or is a graph output, when a Clip bound is not constant, when a pattern's constants
differ from the ones above, or when the anchor is already in a group (so running the pass
twice changes nothing). Works on the main graph only.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable

import numpy as np

from qcc.ir import FusionGroup, Graph, Node, Value, constant_value, fusion_group
from qcc.pipeline import PassContext, PassResult, register_pass

ANCHORS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _single(op: str) -> Callable[[Value, list[Node]], tuple[Node, ...] | None]:
    def match(x: Value, users: list[Node]) -> tuple[Node, ...] | None:
        if len(users) == 1 and users[0].op_type == op and users[0].input(0) is x:
            return (users[0],)
        return None

    return match


def _clip(x: Value, users: list[Node]) -> tuple[Node, ...] | None:
    m = _single("Clip")(x, users)
    if m is None:
        return None
    clip = m[0]
    if any(clip.input(i) is not None and constant_value(clip.input(i)) is None for i in (1, 2)):
        return None
    return m


def _gated(gate_op: str, check: Callable[[Node], bool]):
    """``x * gate(x)``: users are the gate and a Mul reading x and the gate's output."""

    def match(x: Value, users: list[Node]) -> tuple[Node, ...] | None:
        if len(users) != 2:
            return None
        gate = next((u for u in users if u.op_type == gate_op and u.input(0) is x), None)
        mul = next((u for u in users if u.op_type == "Mul"), None)
        if gate is None or mul is None or not check(gate):
            return None
        if {id(v) for v in mul.inputs} != {id(x), id(gate.outputs[0])}:
            return None
        if gate.outputs[0].consumers() != [mul]:
            return None
        return (gate, mul)

    return match


def _is_hardsigmoid_for_swish(n: Node) -> bool:
    return np.isclose(n.attr("alpha", 0.2), 1 / 6) and np.isclose(n.attr("beta", 0.5), 0.5)


def _const_equals(v: Value | None, expected: float) -> bool:
    c = constant_value(v)
    return c is not None and c.size == 1 and np.isclose(float(c.reshape(-1)[0]), expected)


def _paddle_hardswish(x: Value, users: list[Node]) -> tuple[Node, ...] | None:
    """``Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)``."""
    if len(users) != 2:
        return None
    add = next((u for u in users if u.op_type == "Add"), None)
    mul = next((u for u in users if u.op_type == "Mul"), None)
    if add is None or mul is None:
        return None
    other = add.input(1) if add.input(0) is x else add.input(0)
    if not _const_equals(other, 3.0):
        return None
    clips = add.outputs[0].consumers()
    if len(clips) != 1 or clips[0].op_type != "Clip":
        return None
    clip = clips[0]
    if not (_const_equals(clip.input(1), 0.0) and _const_equals(clip.input(2), 6.0)):
        return None
    if clip.outputs[0].consumers() != [mul] or {id(v) for v in mul.inputs} != {
        id(x),
        id(clip.outputs[0]),
    }:
        return None
    divs = mul.outputs[0].consumers()
    if len(divs) != 1 or divs[0].op_type != "Div" or divs[0].input(0) is not mul.outputs[0]:
        return None
    if not _const_equals(divs[0].input(1), 6.0) or mul.outputs[0].is_graph_output:
        return None
    return (add, clip, mul, divs[0])


def _hardswish(x: Value, users: list[Node]) -> tuple[Node, ...] | None:
    return (
        _single("HardSwish")(x, users)
        or _gated("HardSigmoid", _is_hardsigmoid_for_swish)(x, users)
        or _paddle_hardswish(x, users)
    )


class Rule(enum.Enum):
    """The patterns ``fuse-activations`` knows (its ``rules`` option)."""

    CONV_HARDSWISH = "conv-hardswish"
    CONV_SILU = "conv-silu"
    CONV_RELU = "conv-relu"
    CONV_CLIP = "conv-clip"
    CONV_LEAKYRELU = "conv-leakyrelu"
    CONV_HARDSIGMOID = "conv-hardsigmoid"
    CONV_SIGMOID = "conv-sigmoid"


# What onnxruntime's QDQ fusion and TFLite's fused activations execute as one integer kernel.
# The other rules describe groups a runtime may fuse in float; ask for them by name.
DEFAULT_RULES = frozenset({"conv-relu", "conv-clip"})

RULES: dict[str, Callable[[Value, list[Node]], tuple[Node, ...] | None]] = {
    # order matters: the multi-node patterns are tried before their single-node prefixes
    "conv-hardswish": _hardswish,
    "conv-silu": _gated("Sigmoid", lambda n: True),
    "conv-relu": _single("Relu"),
    "conv-clip": _clip,
    "conv-leakyrelu": _single("LeakyRelu"),
    "conv-hardsigmoid": _single("HardSigmoid"),
    "conv-sigmoid": _single("Sigmoid"),
}


@register_pass("fuse-activations", positional="rules", selectable=True)
def fuse_activations(graph: Graph, ctx: PassContext, *, rules: tuple[Rule, ...] = ()) -> PassResult:
    """Mark Conv/ConvTranspose/Gemm/MatMul + activation groups so no quantizer splits them.

    In a recipe the rules may be given bare (``fuse-activations conv-relu, conv-clip``); with
    ``on``/``exclude``, only groups whose anchor is selected are marked.

    Options:
        rules: which patterns to mark (conv-relu, conv-clip, conv-leakyrelu, conv-hardswish,
            conv-hardsigmoid, conv-sigmoid, conv-silu); empty means conv-relu and conv-clip, the
            groups onnxruntime and TFLite execute as one integer kernel.
    """
    wanted = {r.value for r in rules} or DEFAULT_RULES
    active = [(name, fn) for name, fn in RULES.items() if name in wanted]
    result = PassResult()
    counts: collections.Counter[str] = collections.Counter()
    for node in graph:
        if node.domain or node.op_type not in ANCHORS or len(node.outputs) != 1:
            continue
        if not ctx.selected(node):
            continue
        if fusion_group(node) is not None:
            result.stats["already-fused"] = result.stats.get("already-fused", 0) + 1
            continue
        x = node.outputs[0]
        if x.is_graph_output:
            continue
        users = x.consumers()
        for name, match in active:
            members = match(x, users)
            if members is None or any(fusion_group(m) is not None for m in members):
                continue
            group = FusionGroup(name, (node, *members))
            for m in group.nodes:
                m.meta["fusion_group"] = group
            counts[name] += 1
            break
    for name, n in sorted(counts.items()):
        result.count(name, n)
    if counts:
        result.note("marked " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    return result
