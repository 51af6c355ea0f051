"""``fold-affine``: fold a constant Mul, Div, Add or Sub into the linear op before it.

Algebra. When ``y = W * a + b`` is a Conv, ConvTranspose, Gemm or MatMul with constant
weights and its only user computes ``y * c``, ``y / c``, ``y + c`` or ``y - c`` with a constant
``c`` that is a scalar or varies only along ``y``'s output-channel axis (axis 1 for
Conv/ConvTranspose, the last axis for Gemm/MatMul), then per channel
``s * y + t = (s W) * a + (s b + t)`` with ``s = c, 1/c, 1, 1`` and ``t = 0, 0, c, -c``: the
weights are scaled and the bias shifted (see ``passes/_channel_affine.py``). Chains fold
repeatedly (Paddle's "learnable affine" ``Conv -> Mul -> Add``). onnxruntime does the same in
float (ConvMulFusion, ConvAddFusion); doing it before quantization removes a requantization
per folded op, which is where INT8 error accumulates.

Does not fire when the constant varies along another axis, when the producer's output has
other users or is a graph output, for ``c - y`` or ``c / y``, for an Add or Sub after a
MatMul (it has no bias input), or when a Div's constant has a zero. Works on the main graph.
"""

from __future__ import annotations

import collections

import numpy as np
from qcc.passes._channel_affine import LINEAR_OPS, fold_channel_affine

from qcc.ir import Graph, Node, Value, constant_value
from qcc.pipeline import PassContext, PassResult, register_pass


@register_pass("fold-affine", selectable=True)
def fold_affine(graph: Graph, ctx: PassContext) -> PassResult:
    """Fold constant Mul/Div/Add/Sub into the Conv, ConvTranspose, Gemm or MatMul before it.

    With ``on``/``exclude``, only the selected Mul/Div/Add/Sub nodes are folded.
    """
    result = PassResult()
    folded: collections.Counter[str] = collections.Counter()
    changed = True
    while changed:  # Conv -> Mul -> Add folds twice
        changed = False
        for node in graph:
            if node.domain or node.op_type not in ("Mul", "Div", "Add", "Sub"):
                continue
            if not ctx.selected(node):
                continue
            match = _match(node)
            if match is None:
                continue
            producer, s, t = match
            if (
                fold_channel_affine(graph, producer, node, s, t, allow_new_add=False, tag="affine")
                is None
            ):
                folded[f"{node.op_type}-into-{producer.op_type}"] += 1
                changed = True
    for k, n in sorted(folded.items()):
        result.count(k, n)
    return result


def _match(node: Node) -> tuple[Node, np.ndarray, np.ndarray] | None:
    a, b = node.input(0), node.input(1)
    for y, c, first in ((a, b, True), (b, a, False)):
        p = y.producer if y is not None else None
        if p is None or p.domain or p.op_type not in LINEAR_OPS:
            continue
        if not first and node.op_type in ("Sub", "Div"):
            return None  # c - y, c / y are not affine in y with a positive slope we fold
        const = constant_value(c)
        if const is None or not np.issubdtype(const.dtype, np.floating):
            continue
        vec = _per_channel(const, p, y)
        if vec is None:
            continue
        ones, zeros = np.ones_like(vec), np.zeros_like(vec)
        if node.op_type == "Mul":
            return p, vec, zeros
        if node.op_type == "Div":
            if np.any(vec == 0):
                return None
            return p, 1.0 / vec, zeros
        if node.op_type == "Add":
            return p, ones, vec
        return p, ones, -vec
    return None


def _per_channel(c: np.ndarray, p: Node, y: Value) -> np.ndarray | None:
    """``c`` as a float64 vector over ``p``'s output channels, if it varies only along them."""
    w = constant_value(p.input(1))
    if w is None:
        return None
    if p.op_type == "Conv":
        channels, rank, axis = w.shape[0], w.ndim, 1
    elif p.op_type == "ConvTranspose":
        channels, rank, axis = w.shape[1] * int(p.attr("group", 1)), w.ndim, 1
    elif p.op_type == "Gemm":
        channels, rank = w.shape[0 if p.attr("transB", 0) else 1], 2
        axis = 1
    else:  # MatMul: the last axis
        channels = w.shape[-1]
        rank = len(y.shape) if y.shape is not None else max(c.ndim, 1)
        axis = rank - 1
    c64 = c.astype(np.float64)
    if c64.size == 1:
        return np.full(channels, float(c64.reshape(-1)[0]))
    if c64.ndim > rank:
        return None
    shape = (1,) * (rank - c64.ndim) + c64.shape
    if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] != channels:
        return None
    return c64.reshape(-1)
