"""``fold-batchnorm``: fold inference BatchNormalization into the layer before it.

Algebra. Inference BatchNormalization computes, per channel ``c`` (axis 1)::

    y = gamma[c] * (x - mean[c]) / sqrt(var[c] + eps) + beta[c] = s[c] * x + t[c]
    s = gamma / sqrt(var + eps),   t = beta - mean * s

When ``x = W * a + b`` is a Conv, ConvTranspose, Gemm or MatMul with constant weights whose
output channel is BN's channel, ``y = (s W) * a + (s b + t)``: the weights are scaled per
output channel and the bias becomes ``s*b + t``. The weight's output-channel axis is 0 for Conv
(``[O, I/g, k...]``), ``g*(O/g)`` split over axes 0 and 1 for ConvTranspose (``[I, O/g, k...]``),
the N axis of Gemm's B (``[K, N]``, or ``[N, K]`` with ``transB``) and axis 1 of MatMul's 2-D
right operand. Gemm's C becomes ``beta*C*s + t`` with ``beta = 1``. MatMul has no bias input,
so a constant ``Add`` is inserted after it. The arithmetic is done in float64 and rounded once
to the weight's type; results differ from the unfolded graph only by float rounding (see
docs/passes.md for the measured tolerance).

A BatchNormalization that cannot be folded becomes ``Mul(x, s) + t`` with constants shaped
``[C, 1, ..., 1]`` (``standalone`` option), which later passes and runtimes handle as ordinary
element-wise ops.

Does not fire when
    * BN is in training mode (``training_mode=1``, or its running-mean outputs are used), or
      ``spatial=0`` (opset < 9);
    * gamma, beta, mean or var is not constant;
    * the producer's output has other users or is a graph output (then the standalone rewrite
      applies), or its weights are not constant, or the channel counts disagree;
    * a MatMul's output rank is not 2 (axis 1 would not be the output-channel axis);
    * the rank of BN's input is unknown (standalone rewrite only).
"""

from __future__ import annotations

import numpy as np
from qcc.passes._channel_affine import fold_channel_affine

from qcc.ir import Graph, Node, constant_value, derived_origin
from qcc.pipeline import PassContext, PassResult, register_pass


@register_pass("fold-batchnorm", selectable=True)
def fold_batchnorm(graph: Graph, ctx: PassContext, *, standalone: bool = True) -> PassResult:
    """Fold BatchNormalization into the preceding Conv, ConvTranspose, Gemm or MatMul.

    With ``on``/``exclude``, only the selected BatchNormalization nodes are rewritten.

    Options:
        standalone: rewrite a BatchNormalization that cannot be folded as Mul + Add.
    """
    result = PassResult()
    for bn in graph:
        if bn.op_type != "BatchNormalization" or bn.domain or not ctx.selected(bn):
            continue
        params = _bn_params(bn)
        if params is None:
            continue
        s, t = params
        x = bn.input(0)
        producer = x.producer if x is not None else None
        reason = _fold(graph, producer, bn, s, t) if producer is not None else "no producer"
        if reason is None:
            result.count(f"folded-into-{producer.op_type}")
            result.note(f"folded {bn.describe()} into {producer.describe()}")
            continue
        if standalone and _to_mul_add(graph, bn, s, t):
            result.count("standalone-to-mul-add")
            result.note(f"rewrote {bn.describe()} as Mul+Add ({reason})")
    return result


def _bn_params(bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (s, t) in float64, or None if BN is not a foldable inference BN."""
    if bn.attr("training_mode", 0) or bn.attr("spatial", 1) != 1:
        return None
    if any(o.has_uses() or o.is_graph_output for o in bn.outputs[1:]):
        return None
    consts = [constant_value(bn.input(i)) for i in range(1, 5)]
    if any(c is None for c in consts):
        return None
    gamma, beta, mean, var = (np.asarray(c, dtype=np.float64).reshape(-1) for c in consts)
    if not (len(gamma) == len(beta) == len(mean) == len(var)):
        return None
    eps = float(np.float32(bn.attr("epsilon", 1e-5)))
    s = gamma / np.sqrt(var + eps)
    return s, beta - mean * s


def _fold(graph: Graph, p: Node, bn: Node, s: np.ndarray, t: np.ndarray) -> str | None:
    y = p.outputs[0]
    if p.op_type == "MatMul" and (y.shape is None or len(y.shape) != 2):
        return "MatMul output is not 2-D (BN's axis 1 is not its channel axis)"
    return fold_channel_affine(graph, p, bn, s, t, tag="bnfold")


def _to_mul_add(graph: Graph, bn: Node, s: np.ndarray, t: np.ndarray) -> bool:
    x = bn.input(0)
    if x is None or x.shape is None or len(x.shape) < 2:
        return False
    if x.dtype is None or not x.dtype.is_float:
        return False
    dt = x.dtype.numpy
    shape = (len(s),) + (1,) * (len(x.shape) - 2)
    scale = graph.add_constant(s.astype(dt).reshape(shape), f"{bn.name or 'bn'}_scale")
    shift = graph.add_constant(t.astype(dt).reshape(shape), f"{bn.name or 'bn'}_shift")
    origin = derived_origin(bn)
    base = bn.name or "bn"
    mul = Node("Mul", [x, scale], name=graph.names.fresh_node(f"{base}/mul"), origin=origin)
    add = Node(
        "Add", [mul.output, shift], name=graph.names.fresh_node(f"{base}/add"), origin=origin
    )
    graph.insert_before(bn, mul, add)
    graph.replace_value(bn.outputs[0], add.output, keep_name=True)
    old_inputs = bn.inputs
    graph.remove(bn)
    graph.remove_unused_constants(old_inputs)
    return True
