"""``observe``: plan quantization and attach an observer to every tensor it needs.

For each node the target can run in integer (the capability table of
:mod:`qcc.quant.capability`), the pass records the node's weight and activation schemes and
attaches an observer to each float activation tensor the node reads or writes; a tensor
shared by a producer and its consumers takes the producer's scheme. Weights are not observed
here: ``quantize`` reads their range from the constants directly.

A tensor computed from another planned tensor by a non-decreasing elementwise map (``x * c``
or ``x / c`` with c > 0, ``x + b``, ``x - b``, ``Clip``, ``Relu``, ``Sigmoid``, ``Tanh``) or
by an op that only rearranges its values (``Reshape``, ``Transpose``, ``Flatten``, ...) gets
no observer when both use the same asymmetric min-max or percentile scheme: those ranges
commute with such maps, so ``quantize`` derives its range from its source's. The decomposed
HardSwish (``x / 6``, ``+ 1/2``, clamp) is three such tensors per HardSwish, which no longer
triple its calibration work; a Relu or the Sigmoid of a SiLU after a Conv is one fetched
tensor instead of two.

``on``/``exclude`` choose which nodes are planned (the others stay in float); ``where``
clauses give the selected nodes other schemes (``where op(Softmax) { activations = a16 }``).

Does not fire on nodes the target runs in float (they are listed by ``quantize``), on tensors
that are not float32, or inside subgraphs.
"""

from __future__ import annotations

import math

import numpy as np
from google.protobuf.message import EncodeError

from qcc.frontend import lower_model
from qcc.ir import DType, Graph, Node, Value, constant_value
from qcc.pipeline import PassContext, PassResult, register_pass
from qcc.quant.capability import TARGETS, Kind, Role
from qcc.quant.observers import make_observer
from qcc.quant.plan import DEFAULT_ACTIVATIONS, DEFAULT_WEIGHTS, KEY, QuantPlan
from qcc.quant.scheme import QDType, QuantScheme


@register_pass("observe", selectable=True, overridable=True)
def observe(
    graph: Graph,
    ctx: PassContext,
    *,
    weights: QuantScheme | None = None,
    activations: QuantScheme | None = None,
    target: str | None = None,
) -> PassResult:
    """Plan which tensors are quantized and attach observers to the activations.

    Options:
        weights: scheme for weights (default: int8 symmetric per_channel).
        activations: scheme for activations (default: uint8 asymmetric per_tensor minmax).
        target: capability table to plan for: ort-x86 or tflite (default: tflite when the
            recipe's target block is tflite or the output is a .tflite, else ort-x86).
    """
    from qcc.errors import PassError

    if target is None:
        target = "tflite" if ctx.session.backend == "tflite" else "ort-x86"
    if target not in TARGETS:
        raise PassError(f"unknown target {target!r} (targets: {', '.join(TARGETS)})")
    capability = TARGETS[target]
    default_a = DEFAULT_ACTIVATIONS
    if "uint8" not in capability.activation_types:
        default_a = QuantScheme("a8", QDType.INT8, symmetric=False)
    defaults = {
        "weights": weights or DEFAULT_WEIGHTS,
        "activations": activations or default_a,
    }
    plan = QuantPlan(target)
    result = PassResult()
    producer_scheme: dict[Value, QuantScheme] = {}
    consumer_scheme: dict[Value, QuantScheme] = {}
    for node in graph:
        if not ctx.selected(node):
            continue
        cap = capability(node)
        if cap.kind is Kind.FLOAT:
            continue
        opts = ctx.options_for(node, defaults)
        w, a = opts["weights"], opts["activations"]
        if a.dtype is QDType.FLOAT:
            continue
        if a.dtype.bits == 8 and a.dtype.value not in capability.activation_types:
            raise PassError(
                f"the {target} target has integer kernels for "
                f"{' and '.join(capability.activation_types)} activations only, and node "
                f"{node.describe()} is planned with {a.dtype.value}: declare the activation "
                "scheme as int8 (scheme a8 = int8 asymmetric per_tensor)"
            )
        plan.weights[node] = w
        plan.activations[node] = a
        for i, role in cap.inputs:
            v = node.input(i)
            if role is Role.ACTIVATION and _is_float(v):
                consumer_scheme.setdefault(v, a)
        for out in node.outputs:
            if _is_float(out) and (out is node.outputs[0] or cap.kind is Kind.SHARED):
                producer_scheme[out] = a
    chosen = {**consumer_scheme, **producer_scheme}  # the producer's scheme wins
    plan.derived = _derived(graph, chosen)
    for v, scheme in chosen.items():
        if v not in plan.derived:
            plan.observers[v] = (make_observer(scheme.observer), scheme)
    if "error-report" in ctx.session.pipeline:  # only it needs the FP32 copy
        try:
            plan.fp32_model = lower_model(ctx.model).SerializeToString()
        except EncodeError:  # above protobuf's 2 GB: error-report will say it cannot run
            plan.fp32_model = None
    ctx.session.state[KEY] = plan
    result.count("nodes", len(plan.activations))
    result.count("tensors", len(plan.observers))
    if plan.derived:
        result.count("derived", len(plan.derived))
    kinds = sorted({s.observer.kind for _, s in plan.observers.values()})
    if kinds:
        result.note("observers: " + ", ".join(kinds))
    return result


def _is_float(v: Value | None) -> bool:
    return v is not None and v.dtype is DType.FLOAT and v.const is None


# Observer kinds whose range commutes with a non-decreasing map f: range(f(x)) = f(range(x))
# (min/max and order statistics do; entropy and MSE, which weigh the histogram, do not).
_ORDER_KINDS = ("minmax", "percentile")


def _derived(graph: Graph, chosen: dict[Value, QuantScheme]) -> dict:
    """Tensors whose range follows exactly from another chosen tensor's: outputs of ``x * c``
    and ``x / c`` (c > 0), ``x + b``, ``x - b``, ``Clip(x, lo, hi)`` with scalar constants,
    ``Relu``, ``Sigmoid`` and ``Tanh`` of ``x``, and ops that only rearrange ``x`` (Reshape,
    Transpose, ...), observed with the same min-max or percentile scheme.
    ``decompose-hardswish`` and ``decompose-hardsigmoid`` write each HardSwish as three such
    ops, and a Relu or a SiLU's Sigmoid after a Conv is one: observing them would fetch and
    bin tensors whose ranges are known in advance."""
    out: dict[Value, tuple[Value, str, float, float]] = {}
    for node in graph:
        y = node.outputs[0] if node.outputs else None
        if y is None or y not in chosen or len(node.outputs) != 1:
            continue
        scheme = chosen[y]
        if scheme.observer.kind not in _ORDER_KINDS or scheme.symmetric:
            continue
        step = _monotone_step(node)
        if step is None:
            continue
        src = step[0]
        if src not in chosen or chosen[src] != scheme:
            continue
        out[y] = step
    return out


# One-input ops and the map they apply to a range: Relu is Clip(x, 0, inf); Sigmoid and Tanh
# are increasing (the output's order statistics are f(the input's)); the rest hold exactly the
# input's values, rearranged.
_UNARY_STEPS: dict[str, tuple[str, float, float]] = {
    "Relu": ("clip", 0.0, math.inf),
    "Sigmoid": ("sigmoid", 0.0, 0.0),
    "Tanh": ("tanh", 0.0, 0.0),
    **{
        op: ("scale", 1.0, 0.0)
        for op in (
            "Reshape",
            "Transpose",
            "Flatten",
            "Squeeze",
            "Unsqueeze",
            "DepthToSpace",
            "SpaceToDepth",
        )
    },
}


def _monotone_step(node: Node) -> tuple[Value, str, float, float] | None:
    if node.domain:
        return None
    op = node.op_type
    ins = node.inputs
    if op in _UNARY_STEPS:
        x = ins[0] if ins else None
        return (x, *_UNARY_STEPS[op]) if _is_activation(x) else None
    if op == "Clip":
        x = ins[0] if ins else None
        bounds = []
        for i, attr, default in ((1, "min", -np.inf), (2, "max", np.inf)):
            v = node.input(i)
            # opset < 11 Clip has its bounds as attributes
            c = constant_value(v) if v is not None else np.float32(node.attr(attr, default))
            if c is None or np.size(c) != 1:
                return None
            bounds.append(float(np.asarray(c).reshape(-1)[0]))
        return (x, "clip", bounds[0], bounds[1]) if _is_activation(x) else None
    if op not in ("Mul", "Div", "Add", "Sub") or len(ins) != 2:
        return None
    for xi in (0, 1):
        x, k = ins[xi], ins[1 - xi]
        c = constant_value(k) if k is not None else None
        if not _is_activation(x) or c is None or np.size(c) != 1:
            continue
        if not np.issubdtype(np.asarray(c).dtype, np.floating):
            return None
        c = float(np.asarray(c).reshape(-1)[0])
        if not np.isfinite(c):
            return None
        if op == "Mul" and c > 0:
            return (x, "scale", c, 0.0)
        if op == "Div" and xi == 0 and c > 0:
            return (x, "scale", 1.0 / c, 0.0)
        if op == "Add":
            return (x, "shift", c, 0.0)
        if op == "Sub" and xi == 0:
            return (x, "shift", -c, 0.0)
        return None
    return None


def _is_activation(v: Value | None) -> bool:
    return v is not None and v.dtype is DType.FLOAT and constant_value(v) is None
