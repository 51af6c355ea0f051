"""``recompose-hardswish``: turn a decomposed HardSwish back into one HardSwish node.

Rewrite ``x * Clip(x + 3, 0, 6) / 6`` (the Paddle export, also with ``* (1/6)``) and
``x * HardSigmoid(x)`` with ``alpha = 1/6, beta = 1/2`` into ``HardSwish(x)``, which is the
same function. One op instead of four means one float island instead of three requantized
steps after INT8 quantization (onnxruntime has no integer HardSwish; it runs it as one float
region between a DQ and a Q), and fewer nodes in FP32.

Does not fire below opset 14 (HardSwish does not exist there: use ``target onnx { min_opset =
14 }``), when an intermediate value has another user or is a graph output, or when the
constants differ from the ones above. Works on the main graph.
"""

from __future__ import annotations

from qcc.passes.fuse_activations import _gated, _is_hardsigmoid_for_swish, _paddle_hardswish

from qcc.ir import Graph, Node, derived_origin
from qcc.pipeline import PassContext, PassResult, register_pass


@register_pass("recompose-hardswish")
def recompose_hardswish(graph: Graph, ctx: PassContext) -> PassResult:
    """Replace x*Clip(x+3,0,6)/6 and x*HardSigmoid(x) with HardSwish(x) (opset >= 14)."""
    result = PassResult()
    if graph.opset_imports.get("", 0) < 14:
        result.note("skipped: HardSwish needs opset 14")
        return result
    gated = _gated("HardSigmoid", _is_hardsigmoid_for_swish)
    seen: set[int] = set()
    candidates = [*graph.inputs, *(o for n in graph for o in n.outputs)]
    for x in candidates:
        if x.producer is not None and x.producer.is_erased:
            continue
        users = x.consumers()
        members = _paddle_hardswish(x, users) or gated(x, users)
        if members is None or any(id(m) in seen for m in members):
            continue
        seen.update(id(m) for m in members)
        last = members[-1]
        hs = Node(
            "HardSwish",
            [x],
            name=graph.names.fresh_node(f"{last.name or 'hardswish'}/HardSwish"),
            origin=derived_origin(*members),
        )
        graph.insert_after(last, hs)
        graph.replace_value(last.outputs[0], hs.output, keep_name=True)
        old = [v for m in members for v in m.inputs]
        for m in reversed(members):
            graph.remove(m)
        graph.remove_unused_constants(old)
        result.count("recomposed")
    return result
