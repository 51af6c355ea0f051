"""``decompose-hardsigmoid``: write ``HardSigmoid(x)`` as ``Clip(x * alpha + beta, 0, 1)``.

Neither TFLite nor onnxruntime has an integer HardSigmoid, so after INT8 quantization each one
is a float island (dequantize, HardSigmoid, quantize). The three ops it is made of all have
integer kernels: a Mul by a constant, an Add of a constant with the Clip absorbed into its
output quantizer (the quantizer's range lies inside [0, 1], so saturation is the clamp). In
squeeze-and-excitation blocks (MobileNetV3, PP-LCNet) the gate then stays integer from the
pooled vector to the channel Mul.

The rewrite computes the same function in float32 up to one rounding (``alpha * x`` and
``+ beta`` round separately; HardSigmoid kernels may fuse them). Run it after
``recompose-hardswish``, which turns ``x * HardSigmoid(x)`` into one HardSwish first. Does not
fire inside subgraphs.
"""

from __future__ import annotations

import numpy as np

from qcc.ir import Graph, Node, derived_origin
from qcc.pipeline import PassContext, PassResult, register_pass


@register_pass("decompose-hardsigmoid", selectable=True)
def decompose_hardsigmoid(graph: Graph, ctx: PassContext) -> PassResult:
    """Replace HardSigmoid(x) with Clip(Mul(x, alpha) + beta, 0, 1) (integer kernels exist)."""
    result = PassResult()
    for node in list(graph):
        if node.op_type != "HardSigmoid" or node.domain or not ctx.selected(node):
            continue
        alpha = np.float32(node.attr("alpha", 0.2))
        beta = np.float32(node.attr("beta", 0.5))
        base = node.name or "hardsigmoid"
        x = node.input(0)
        mul = Node(
            "Mul",
            [x, graph.add_constant(np.array(alpha, np.float32), f"{base}_alpha")],
            name=graph.names.fresh_node(f"{base}/Mul"),
            origin=derived_origin(node),
        )
        add = Node(
            "Add",
            [mul.output, graph.add_constant(np.array(beta, np.float32), f"{base}_beta")],
            name=graph.names.fresh_node(f"{base}/Add"),
            origin=derived_origin(node),
        )
        clip = Node(
            "Clip",
            [
                add.output,
                graph.add_constant(np.array(0.0, np.float32), f"{base}_zero"),
                graph.add_constant(np.array(1.0, np.float32), f"{base}_one"),
            ],
            name=graph.names.fresh_node(f"{base}/Clip"),
            origin=derived_origin(node),
        )
        for n in (mul, add, clip):
            n.output.dtype, n.output.shape = x.dtype, x.shape
        graph.insert_after(node, mul, add, clip)
        graph.replace_value(node.outputs[0], clip.output, keep_name=True)
        graph.remove(node)
        result.count("decomposed")
    return result
