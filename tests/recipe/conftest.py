"""Passes that exist only for the recipe tests: they accept schemes, selections and overrides
the way the quantization passes will, and record what they were given."""

from __future__ import annotations

from qcc.ir import Graph
from qcc.pipeline import PassContext, PassResult, register_pass
from qcc.quant.scheme import QuantScheme


@register_pass("test-observe", selectable=True, overridable=True)
def _observe(
    graph: Graph,
    ctx: PassContext,
    *,
    weights: QuantScheme | None = None,
    activations: QuantScheme | None = None,
    samples: int = 8,
) -> PassResult:
    """Record schemes per node (recipe tests only).

    Options:
        weights: scheme for weights.
        activations: scheme for activations.
        samples: a number.
    """
    result = PassResult()
    for node in graph:
        if ctx.selected(node):
            opts = ctx.options_for(node, {"activations": activations})
            act = opts["activations"]
            result.count(f"{node.op_type}:{act.name if act else '-'}")
    return result
