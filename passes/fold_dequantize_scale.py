"""``fold-dequantize-scale``: fold a multiplication by a positive constant into the scale of
the DequantizeLinear before it.

In a QDQ graph, ``DQ(q; s, z) * c`` is ``DQ(q; s * c, z)`` for any scalar ``c > 0``: the
integer tensor is the same, only the scale changes. Where the product is only requantized
(``Mul -> QuantizeLinear -> DequantizeLinear``), the pass drops the Mul and its quantizer
and lets each consumer read ``q`` through its own DequantizeLinear with scale
``f32(s * c)``: one integer op less (onnxruntime would run the Mul as a QLinearMul) and one
rounding less.

Its use is HardSwish and HardSigmoid in onnxruntime, which has integer kernels for neither.
After ``decompose-hardswish`` and ``decompose-hardsigmoid`` a HardSwish is
``x * Clip(x * 1/6 + 1/2, 0, 1)``; with the ``* 1/6`` folded, the gate is one QLinearAdd
(its [0, 1] clamp is its output quantizer) and the product one QLinearMul. Measured with
onnxruntime 1.31 on 200 K uint8 values: 48 + 110 us, against 324 us for the float island
(DequantizeLinear, HardSwish, QuantizeLinear) it replaces, and the QLinearMul by 1/6 it
removes took 96 us.

Folds only where every consumer of the requantized value reads it as the input of an op
onnxruntime runs with its own input parameters (the linear and integer ops of the
``ort-x86`` capability table: QLinearAdd/Mul, QLinearConv, QGemm,
QLinearMatMul, QLinearConcat, QLinearAveragePool, QLinearSigmoid/LeakyRelu): ops whose
Q/DQ onnxruntime drops (MaxPool, Reshape, ...) need equal input and output parameters and
would fall back to float. Not for TFLite, whose tensors carry one set of parameters each
(the pass does nothing for a ``.tflite`` output). Run it right after ``quantize``.
"""

from __future__ import annotations

import numpy as np

from qcc.ir import Graph, Node, Value, constant_value, derived_origin
from qcc.pipeline import PassContext, PassResult, register_pass
from qcc.quant.capability import TARGETS, Kind


def _own_params(node: Node) -> bool:
    """Whether onnxruntime runs ``node`` with its own input parameters: its linear and
    integer QLinear kernels do; ops whose Q/DQ it drops (``shared``) need equal ones."""
    return TARGETS["ort-x86"](node).kind in (Kind.LINEAR, Kind.INTEGER)


def _scalar_of(v: Value | None) -> float | None:
    """The value of a scalar constant operand: a float constant or a dequantized one."""
    if v is None:
        return None
    c = constant_value(v)
    if c is None:
        p = v.producer
        if p is None or p.op_type != "DequantizeLinear" or p.domain:
            return None
        q, s, z = (constant_value(p.input(i)) for i in range(3))
        if q is None or s is None or q.size != 1 or s.size != 1:
            return None
        zero = 0 if z is None else int(np.asarray(z).reshape(-1)[0])
        return float(np.float32(s.reshape(-1)[0]) * np.float32(int(q.reshape(-1)[0]) - zero))
    if c.size != 1 or not np.issubdtype(c.dtype, np.floating):
        return None
    return float(c.reshape(-1)[0])


def _activation_dq(v: Value | None) -> Node | None:
    p = v.producer if v is not None else None
    if p is None or p.op_type != "DequantizeLinear" or p.domain:
        return None
    if constant_value(p.input(0)) is not None:
        return None
    s = constant_value(p.input(1))
    if s is None or s.size != 1:
        return None
    return p


@register_pass("fold-dequantize-scale", selectable=True)
def fold_dequantize_scale(graph: Graph, ctx: PassContext) -> PassResult:
    """Fold Mul(DQ(q), c > 0) into the DequantizeLinear scale where the product is only
    requantized (onnxruntime QDQ graphs)."""
    result = PassResult()
    if ctx.session is not None and ctx.session.backend == "tflite":
        result.note("does nothing for TFLite: a tensor has one set of parameters")
        return result
    for node in list(graph):
        if node.op_type != "Mul" or node.domain or not ctx.selected(node) or node.is_erased:
            continue
        found = None
        for a, b in ((0, 1), (1, 0)):
            dq = _activation_dq(node.input(a))
            c = _scalar_of(node.input(b))
            if dq is not None and c is not None and np.isfinite(c) and c > 0:
                found = dq, c
                break
        if found is None:
            continue
        dq, c = found
        y = node.outputs[0]
        users = y.consumers()
        if y.is_graph_output or len(users) != 1 or users[0].op_type != "QuantizeLinear":
            continue
        qnode = users[0]
        dq_users = qnode.outputs[0].consumers()
        if qnode.outputs[0].is_graph_output or not dq_users:
            continue
        if any(d.op_type != "DequantizeLinear" or d.domain for d in dq_users):
            continue
        if any(not _own_params(u) for d in dq_users for u in d.outputs[0].consumers()) or any(
            d.outputs[0].is_graph_output for d in dq_users
        ):
            continue
        s = np.asarray(constant_value(dq.input(1)), np.float32)
        scale = np.asarray(np.float32(s.reshape(-1)[0]) * np.float32(c), np.float32).reshape(
            s.shape
        )
        if not (np.isfinite(scale).all() and float(scale.reshape(-1)[0]) > 0):
            continue
        new_scale = graph.add_constant(scale, f"{dq.input(1).name}_x{c:g}")
        zp = dq.input(2)
        for d in dq_users:
            new = Node(
                "DequantizeLinear",
                [dq.input(0), new_scale] + ([zp] if zp is not None else []),
                name=graph.names.fresh_node(f"{d.name or 'dq'}/folded"),
                origin=derived_origin(node),
            )
            if dq.attr("axis") is not None:
                new.set_attr("axis", dq.attr("axis"))
            new.output.dtype, new.output.shape = d.outputs[0].dtype, d.outputs[0].shape
            graph.insert_before(d, new)
            graph.replace_value(d.outputs[0], new.output, keep_name=True)
        old = [v for n in (*dq_users, qnode, node) for v in n.inputs]
        operands = [v.producer for v in node.inputs if v is not None and v.producer is not None]
        for n in (*dq_users, qnode, node):
            graph.remove(n)
        for p in operands:  # the activation's DQ and the constant's, when nothing else reads them
            if p.op_type == "DequantizeLinear" and not p.is_erased and not p.outputs[0].has_uses():
                old += list(p.inputs)
                graph.remove(p)
        graph.remove_unused_constants(old)
        result.count("folded")
    return result
