"""``observe``: plan quantization and attach an observer to every tensor it needs.

For each node the target can run in integer (the capability table of
:mod:`qcc.quant.capability`), the pass records the node's weight and activation schemes and
attaches an observer to each float activation tensor the node reads or writes; a tensor
shared by a producer and its consumers takes the producer's scheme. Weights are not observed
here: ``quantize`` reads their range from the constants directly.

``on``/``exclude`` choose which nodes are planned (the others stay in float); ``where``
clauses give the selected nodes other schemes (``where op(Softmax) { activations = a16 }``).

Does not fire on nodes the target runs in float (they are listed by ``quantize``), on tensors
that are not float32, or inside subgraphs.
"""

from __future__ import annotations

from google.protobuf.message import EncodeError

from qcc.frontend import lower_model
from qcc.ir import DType, Graph, Value
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
    for v, scheme in chosen.items():
        plan.observers[v] = (make_observer(scheme.observer), scheme)
    if "error-report" in ctx.session.pipeline:  # only it needs the FP32 copy
        try:
            plan.fp32_model = lower_model(ctx.model).SerializeToString()
        except EncodeError:  # above protobuf's 2 GB: error-report will say it cannot run
            plan.fp32_model = None
    ctx.session.state[KEY] = plan
    result.count("nodes", len(plan.activations))
    result.count("tensors", len(plan.observers))
    kinds = sorted({s.observer.kind for _, s in plan.observers.values()})
    if kinds:
        result.note("observers: " + ", ".join(kinds))
    return result


def _is_float(v: Value | None) -> bool:
    return v is not None and v.dtype is DType.FLOAT and v.const is None
