"""Shared algebra of fold-batchnorm and fold-affine (not a pass: the loader skips ``_`` modules).

:func:`fold_channel_affine` rewrites ``consumer(producer(a)) = s * producer(a) + t``, with ``s``
and ``t`` per output channel of the producer, into a producer with scaled weights and a new
bias. The weight's output-channel axis is 0 for Conv (``[O, I/g, k...]``), ``g*(O/g)`` split
over axes 0 and 1 for ConvTranspose (``[I, O/g, k...]``), the N axis of Gemm's B (``[K, N]``,
or ``[N, K]`` with ``transB``) and axis 1 of MatMul's 2-D right operand. Gemm's C becomes
``beta*C*s + t`` with ``beta = 1``; MatMul has no bias input, so a constant ``Add`` is inserted
after it when ``t`` is not zero and the caller allows it. Arithmetic is float64, rounded once
to the weight's type.
"""

from __future__ import annotations

import numpy as np

from qcc.ir import Graph, Node, Value, constant_value, derived_origin

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def fold_channel_affine(
    graph: Graph,
    p: Node,
    bn: Node,
    s: np.ndarray,
    t: np.ndarray,
    *,
    allow_new_add: bool = True,
    tag: str = "fold",
) -> str | None:
    """Fold ``bn`` (computing ``s * y + t`` of ``p``'s output ``y``) into ``p``; None on
    success, else the reason it cannot."""
    y = p.outputs[0]
    if p.domain or p.op_type not in LINEAR_OPS:
        return f"its input comes from {p.op_type}"
    if len(y.uses) != 1 or y.is_graph_output:
        return f"{p.describe()}'s output has other users"
    w_in = 1
    w = constant_value(p.input(w_in))
    if w is None or not np.issubdtype(w.dtype, np.floating):
        return f"{p.describe()} has no constant float weights"
    c = len(s)
    dt = w.dtype
    w64 = w.astype(np.float64)
    bias_idx = 2
    if p.op_type == "Conv":
        if w.ndim < 3 or w.shape[0] != c:
            return "channel counts disagree"
        w_new = w64 * s.reshape((c,) + (1,) * (w.ndim - 1))
        b_old = _bias(p.input(2), c)
        if b_old is None:
            return f"{p.describe()} has a non-constant bias"
    elif p.op_type == "ConvTranspose":
        g = int(p.attr("group", 1))
        if w.ndim < 3 or w.shape[1] * g != c or w.shape[0] % g:
            return "channel counts disagree"
        per = w.shape[1]
        w_g = w64.reshape((g, w.shape[0] // g, *w.shape[1:]))
        w_new = (w_g * s.reshape((g, 1, per) + (1,) * (w.ndim - 2))).reshape(w.shape)
        b_old = _bias(p.input(2), c)
        if b_old is None:
            return f"{p.describe()} has a non-constant bias"
    elif p.op_type == "Gemm":
        axis = 0 if p.attr("transB", 0) else 1
        if w.ndim != 2 or w.shape[axis] != c:
            return "channel counts disagree"
        w_new = w64 * (s.reshape(c, 1) if axis == 0 else s.reshape(1, c))
        beta = float(p.attr("beta", 1.0))
        c_in = p.input(2)
        c_val = constant_value(c_in) if c_in is not None else None
        if c_in is not None and c_val is None:
            return f"{p.describe()} has a non-constant C"
        b_old = beta * c_val.astype(np.float64) if c_val is not None else np.zeros(c)
        if b_old.ndim > 2 or (b_old.ndim >= 1 and b_old.shape[-1] not in (1, c)):
            return "C does not broadcast per channel"
    else:  # MatMul
        if w.ndim != 2 or w.shape[1] != c:
            return "channel counts disagree"
        if not allow_new_add and np.any(t != 0):
            return "MatMul has no bias input"
        w_new = w64 * s.reshape(1, c)
        b_old = np.zeros(c)
        bias_idx = None
    b_new = (b_old * s + t).astype(dt)
    w_val = graph.add_constant(w_new.astype(dt), f"{p.input(w_in).name}_{tag}")
    b_val = graph.add_constant(b_new, f"{bn.name or p.name or tag}_bias")
    origin = derived_origin(p, bn)
    ins = list(p.inputs)
    ins[w_in] = w_val
    new_nodes: list[Node]
    if bias_idx is None and not np.any(t != 0):
        new_nodes = [Node("MatMul", ins, name=p.name, origin=origin)]
    elif bias_idx is None:
        mm = Node("MatMul", ins, name=p.name, origin=origin)
        add = Node(
            "Add",
            [mm.output, b_val],
            name=graph.names.fresh_node(f"{p.name or 'matmul'}/{tag}_bias"),
            origin=origin,
        )
        new_nodes = [mm, add]
    else:
        while len(ins) <= bias_idx:
            ins.append(None)
        ins[bias_idx] = b_val
        attrs = dict(p.attrs)
        if p.op_type == "Gemm":
            attrs.pop("beta", None)
        new_nodes = [Node(p.op_type, ins, attrs=attrs, name=p.name, origin=origin)]
    graph.insert_before(bn, *new_nodes)
    graph.replace_value(bn.outputs[0], new_nodes[-1].outputs[0], keep_name=True)
    old_inputs = [*p.inputs, *bn.inputs]
    graph.remove(bn)
    graph.remove(p)
    graph.remove_unused_constants(old_inputs)
    return None


def _bias(v: Value | None, c: int) -> np.ndarray | None:
    """The bias as float64 ``[c]``; zeros if absent, None if not a constant of that size."""
    if v is None:
        return np.zeros(c)
    b = constant_value(v)
    if b is None or b.size != c:
        return None
    return b.astype(np.float64).reshape(-1)
