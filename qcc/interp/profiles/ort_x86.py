"""The ``ort-x86`` profile: the graph rewrites by which onnxruntime's CPU EP changes arithmetic.

onnxruntime does not run a QDQ model as written. Before execution (``qdq_selector_action_
transformer.cc`` and friends, x86-64, ``session.qdqisint8allowed`` unset) it:

1. removes a Relu whose only consumer is a QuantizeLinear with the type's minimum as zero point,
   and a Clip whose range contains the Q's representable range (``relu_quantizelinear.cc``,
   ``clip_quantizelinear.cc``): Q alone then gives the same values;
2. turns an int8 Q -> DQ pair (the Q has exactly one consumer, that DQ, and is not a graph
   output; both zero points are the same scalar constant) into uint8 with the zero point
   moved by 128 (``qdq_s8_to_u8.cc``), so integer kernels run in the uint8 domain;
3. fuses node units into integer kernels: DQ(x), DQ(w)[, DQ(b)] -> Conv -> Q into QLinearConv;
   MatMul into QLinearMatMul (or MatMulIntegerToFloat without a Q); Gemm into QGemm; Add, Mul
   into QLinearAdd/Mul; Sigmoid, LeakyRelu, AveragePool, GlobalAveragePool, Softmax into their
   QLinear forms; Concat into QLinearConcat. A DQ feeding several nodes is duplicated first
   (``ensure_unique_dq_for_node_unit.cc``), so sharing does not block a fusion; a DQ output or
   a target output that is a graph output does. Conv and MatMul need uint8 activations on x86
   (int8 ones are only fused when step 2 converted them).

Units onnxruntime merely drops (DQ -> MaxPool/Reshape/Transpose/... -> Q with equal parameters)
are left alone: running them as DQ -> float op -> Q gives the same integers. Units it does not
fuse stay DQ -> float op -> Q, which the float kernels execute.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qcc.interp.registry import MS_DOMAIN
from qcc.ir import Model, Node, Value, constant_value

Q_OPS = ("QuantizeLinear",)
DQ_OPS = ("DequantizeLinear",)
_EPS = float(np.finfo(np.float32).eps)


def _is(node: Node | None, ops: tuple[str, ...]) -> bool:
    return node is not None and node.op_type in ops and node.domain in ("", MS_DOMAIN)


def _const(v: Value | None) -> np.ndarray | None:
    return None if v is None else constant_value(v)


def _q_params(node: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """Constant (scale, zero point) of a Q or DQ node; zero point defaults to uint8 0."""
    s = _const(node.input(1))
    zv = node.input(2) if len(node.inputs) > 2 else None
    z = np.zeros((), np.uint8) if zv is None else _const(zv)
    if s is None or z is None:
        return None
    return np.asarray(s), np.asarray(z)


def _scalar_params(node: Node) -> tuple[float, int, np.dtype] | None:
    p = _q_params(node)
    if p is None or p[0].size != 1 or p[1].size != 1:
        return None
    return float(p[0].reshape(())), int(p[1].reshape(())), p[1].dtype


def _sole_use(v: Value) -> Node | None:
    """The only consumer of ``v`` if it has exactly one use and is not a graph output."""
    if v.is_graph_output or len(v.uses) != 1:
        return None
    return v.uses[0].node


def _bypass(node: Node) -> None:
    g = node.graph
    assert g is not None
    g.replace_value(node.output, node.input(0))
    g.remove(node)


# --------------------------------------------------------------------------- folding


def fold_constants(graph, opset: int) -> int:
    """Evaluate nodes whose inputs are all constant, as onnxruntime's ConstantFolding does,
    except DequantizeLinear, which it keeps so that the units around it can fuse (a Q of a
    constant weight does fold: that is how a quantizer's ``Q(w) -> DQ`` becomes an int8
    initializer). A Shape of a tensor whose shape is static folds too; that can take a
    consumer away from a DQ and so change which Q -> DQ pairs stay int8."""
    from qcc.interp.registry import lookup
    from qcc.interp.run import _attr_value

    count = 0
    for node in list(graph):
        if node.is_erased or _is(node, DQ_OPS) or node.subgraphs():
            continue
        if node.op_type == "Constant" and not node.domain:
            continue
        if node.op_type == "Shape" and not node.domain:
            shape = node.input(0).shape
            # onnxruntime folds whenever every dim has a dim_value, even an exporter's -1
            if shape is not None and all(isinstance(d, int) for d in shape):
                dims = np.asarray(shape, dtype=np.int64)
                start, end = node.attr("start", 0), node.attr("end", None)
                graph.replace_with_constants(node, [dims[start:end]])
                count += 1
            continue
        ins = [None if v is None else _const(v) for v in node.inputs]
        if any(v is not None and c is None for v, c in zip(node.inputs, ins, strict=True)):
            continue
        if not node.inputs:
            continue
        spec = lookup(node.domain, node.op_type, opset if not node.domain else 1, "ort-x86")
        if spec is None:
            continue
        attrs = {k: _attr_value(a.value) for k, a in node.attrs.items()}
        try:
            res = spec.fn(*ins, **attrs)
        except Exception:  # leave it to the run, which reports the node properly
            continue
        outs = res if isinstance(res, tuple) else (res,)
        graph.replace_with_constants(node, [np.asarray(o) for o in outs])
        count += 1
    return count


# --------------------------------------------------------------------------- step 0


def _path_to_q(node: Node) -> bool:
    """The output reaches a QuantizeLinear through single-consumer Relu/Clip nodes only."""
    cur = node
    while True:
        if len(cur.outputs) != 1 or len(cur.output.uses) != 1 or cur.output.is_graph_output:
            return False
        nxt = cur.output.uses[0].node
        if _is(nxt, Q_OPS):
            return True
        if nxt.op_type not in ("Relu", "Clip") or nxt.domain:
            return False
        cur = nxt


def quantize_float_bias(graph) -> int:
    """Quantize the float bias of a QDQ Conv/ConvTranspose/Gemm to int32 behind a DQ, as
    onnxruntime's ``weight_bias_quantization.cc`` does: ``Cast(Round(b / f32(sx * sw)))`` with
    scale ``f32(sx * sw)``, so that the unit can fuse. (Its other case, a float weight, is not
    emulated: such a Conv stays float here.)"""
    count = 0
    for node in list(graph):
        if node.domain or node.op_type not in ("Conv", "ConvTranspose", "Gemm"):
            continue
        if len(node.inputs) < 3 or node.input(2) is None:
            continue
        dx, dw = node.input(0).producer, node.input(1).producer
        if not _is(dx, DQ_OPS) or not _is(dw, DQ_OPS) or not _path_to_q(node):
            continue
        sx, sw = _const(dx.input(1)), _const(dw.input(1))
        bias = _const(node.input(2))
        if sx is None or sw is None or bias is None or sx.size != 1 or bias.ndim != 1:
            continue
        if bias.dtype != np.float32 or dw.attr("block_size", 0):
            continue
        if sw.size != 1:
            want_axis = 0
            if node.op_type == "Gemm":
                want_axis = 0 if node.attr("transB", 0) else 1
            axis = dw.attr("axis", 1)
            w = dw.input(0)
            if w.shape is not None and axis < 0:
                axis += len(w.shape)
            if sw.shape != (bias.size,) or axis != want_axis:
                continue
        scale = (np.float32(sx.reshape(())) * sw.astype(np.float32)).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            q = np.rint(bias / scale).astype(np.int32)
        qv = graph.add_constant(q, "bias_int32")
        sv = graph.add_constant(
            scale.reshape(-1) if sw.size != 1 else scale.reshape(()), "bias_scale"
        )
        attrs = {"axis": 0} if sw.size != 1 else {}
        name = graph.names.fresh_value("bias_dq")
        dq = Node("DequantizeLinear", [qv, sv], attrs=attrs, outputs=[name])
        graph.insert_before(node, dq)
        node.replace_input(2, dq.output)
        count += 1
    return count


# --------------------------------------------------------------------------- step 1


def absorb_relu_clip(graph) -> int:
    """Remove Relu/Clip nodes that the following Q makes redundant (onnxruntime level 1)."""
    count = 0
    for node in list(graph):
        if node.op_type not in ("Relu", "Clip") or node.domain or node.is_erased:
            continue
        q = _sole_use(node.output)
        if not _is(q, Q_OPS):
            continue
        p = _scalar_params(q)
        if p is None:
            continue
        scale, zp, dt = p
        if dt not in (np.dtype(np.uint8), np.dtype(np.int8)):
            continue
        qmin, qmax = (0, 255) if dt == np.uint8 else (-128, 127)
        if node.op_type == "Relu":
            if zp != qmin:
                continue
        else:
            lo, hi = _clip_bounds(node)
            if lo is None:
                continue
            lower = np.float32(scale) * np.float32(qmin - zp)
            upper = np.float32(scale) * np.float32(qmax - zp)
            if lo - lower > _EPS or upper - hi > _EPS:
                continue
        _bypass(node)
        count += 1
    return count


def _clip_bounds(node: Node) -> tuple[float | None, float | None]:
    if "min" in node.attrs or "max" in node.attrs or len(node.inputs) == 1:
        lo = node.attr("min", float(np.finfo(np.float32).min))
        hi = node.attr("max", float(np.finfo(np.float32).max))
        return float(lo), float(hi)
    bounds = []
    for i, default in ((1, np.finfo(np.float32).min), (2, np.finfo(np.float32).max)):
        v = node.input(i) if len(node.inputs) > i else None
        if v is None:
            bounds.append(float(default))
            continue
        c = _const(v)
        if c is None:
            return None, None
        bounds.append(float(np.asarray(c).reshape(())))
    return bounds[0], bounds[1]


# --------------------------------------------------------------------------- step 2


def ensure_unique_dq(graph) -> int:
    """Give every consumer edge of a DQ its own copy (``ensure_unique_dq_for_node_unit.cc``).

    The original DQ keeps its first consumer unless it also produces a graph output. This runs
    before the int8 -> uint8 rewrite, so a Q whose DQ fed two nodes now has two DQ consumers,
    and onnxruntime leaves that pair in int8.
    """
    count = 0
    for dq in list(graph):
        if not _is(dq, DQ_OPS):
            continue
        uses = list(dq.output.uses)
        if not uses or (len(uses) == 1 and not dq.output.is_graph_output):
            continue
        start = 0 if dq.output.is_graph_output else 1
        for use in uses[start:]:
            dup = Node(
                "DequantizeLinear",
                list(dq.inputs),
                domain=dq.domain,
                attrs=dict(dq.attrs),
                outputs=[graph.names.fresh_value(f"{dq.output.name}/duplicated")],
            )
            graph.insert_after(dq, dup)
            use.node.replace_input(use.index, dup.output)
            count += 1
    return count


def s8_to_u8(graph) -> int:
    """Convert int8 Q -> DQ pairs to uint8 (zero point + 128), as onnxruntime does on x86."""
    count = 0
    for q in list(graph):
        if not _is(q, Q_OPS) or len(q.inputs) < 3:
            continue
        dq = _sole_use(q.output)
        if not _is(dq, DQ_OPS) or len(dq.inputs) < 3 or dq.input(0) is not q.output:
            continue
        zq, zd = _const(q.input(2)), _const(dq.input(2))
        if zq is None or zd is None or zq.size != 1 or zd.size != 1:
            continue
        if zq.dtype != np.int8 or zd.dtype != np.int8 or int(zq.reshape(())) != int(zd.reshape(())):
            continue
        zp = graph.add_constant(
            np.asarray(int(zq.reshape(())) + 128, dtype=np.uint8), "s8_to_u8_zp"
        )
        q.replace_input(2, zp)
        dq.replace_input(2, zp)
        count += 1
    return count


# --------------------------------------------------------------------------- step 3


def _dq_input(v: Value | None) -> Node | None:
    """The DQ producing ``v`` if a fusion may take it (its output is not a graph output)."""
    if v is None or v.is_graph_output:
        return None
    p = v.producer
    return p if _is(p, DQ_OPS) else None


def _act_type(dq: Node) -> np.dtype | None:
    p = _scalar_params(dq)
    return None if p is None else p[2]


def _out_q(node: Node) -> Node | None:
    q = _sole_use(node.output)
    return q if _is(q, Q_OPS) and _scalar_params(q) is not None else None


def _dq_args(dq: Node, graph) -> list[Value]:
    z = dq.input(2) if len(dq.inputs) > 2 else None
    if z is None:
        z = graph.add_constant(np.zeros((), np.uint8), "zero_point")
    return [dq.input(0), dq.input(1), z]


def _q_args(q: Node, graph) -> list[Value]:
    return _dq_args(q, graph)[1:]


def _replace(graph, target: Node, q: Node | None, new: Node, dqs: list[Node]) -> None:
    """Put ``new`` in place of the unit; its output takes over Q's (or the target's) value."""
    end = q if q is not None else target
    graph.insert_before(target, new)
    graph.replace_value(end.output, new.output, keep_name=True)
    if q is not None:
        graph.remove(q)
    graph.remove(target)
    for dq in dqs:
        if not dq.is_erased and not dq.output.has_uses() and not dq.output.is_graph_output:
            graph.remove(dq)


def _u8(*dts: np.dtype | None) -> bool:
    return all(d == np.dtype(np.uint8) for d in dts)


def _same8(*dts: np.dtype | None) -> bool:
    return dts[0] in (np.dtype(np.uint8), np.dtype(np.int8)) and all(d == dts[0] for d in dts)


def _weight_ok(dq: Node) -> bool:
    p = _q_params(dq)
    return (
        p is not None
        and _const(dq.input(0)) is not None
        and p[1].dtype in (np.dtype(np.int8), np.dtype(np.uint8))
    )


def _bias_ok(dq_b: Node, dq_x: Node, dq_w: Node) -> bool:
    p = _q_params(dq_b)
    px, pw = _scalar_params(dq_x), _q_params(dq_w)
    if p is None or px is None or pw is None or _const(dq_b.input(0)) is None:
        return False
    if np.asarray(_const(dq_b.input(0))).dtype != np.int32:
        return False
    want = np.float32(px[0]) * pw[0].astype(np.float32)
    got = p[0].astype(np.float32)
    return bool(np.all(np.abs(got - want) <= 0.01 * np.abs(want)))


def fuse_conv(graph, node: Node) -> bool:
    dx, dw = _dq_input(node.input(0)), _dq_input(node.input(1))
    db = _dq_input(node.input(2)) if len(node.inputs) > 2 and node.input(2) is not None else None
    has_b = len(node.inputs) > 2 and node.input(2) is not None
    q = _out_q(node)
    if dx is None or dw is None or q is None or (has_b and db is None):
        return False
    if not _u8(_act_type(dx), _scalar_params(q)[2]) or not _weight_ok(dw):
        return False
    if db is not None and not _bias_ok(db, dx, dw):
        return False
    ins = [*_dq_args(dx, graph), *_dq_args(dw, graph), *_q_args(q, graph)]
    if db is not None:
        ins.append(db.input(0))
    new = Node("QLinearConv", ins, attrs=dict(node.attrs), outputs=[None], name=node.name)
    _replace(graph, node, q, new, [d for d in (dx, dw, db) if d is not None])
    return True


def fuse_matmul(graph, node: Node) -> bool:
    da, db = _dq_input(node.input(0)), _dq_input(node.input(1))
    if da is None or db is None:
        return False
    q = _out_q(node)
    if q is None and any(_is(u, Q_OPS) for u in node.output.consumers()):
        return False
    ta, tb = _act_type(da), _q_params(db)
    if ta is None or tb is None or not _u8(ta):
        return False
    if tb[1].dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        return False
    if q is not None:
        if not _u8(_scalar_params(q)[2]):
            return False
        ins = [*_dq_args(da, graph), *_dq_args(db, graph), *_q_args(q, graph)]
        new = Node("QLinearMatMul", ins, outputs=[None], name=node.name)
    else:
        a, b = _dq_args(da, graph), _dq_args(db, graph)
        new = Node(
            "MatMulIntegerToFloat",
            [a[0], b[0], a[1], b[1], a[2], b[2]],
            domain=MS_DOMAIN,
            outputs=[None],
            name=node.name,
        )
    _replace(graph, node, q, new, [da, db])
    return True


def fuse_gemm(graph, node: Node) -> bool:
    da, db = _dq_input(node.input(0)), _dq_input(node.input(1))
    has_c = len(node.inputs) > 2 and node.input(2) is not None
    dc = _dq_input(node.input(2)) if has_c else None
    if da is None or db is None or (has_c and dc is None):
        return False
    if float(node.attr("beta", 1.0)) != 1.0 and dc is not None:
        return False
    q = _out_q(node)
    if q is None and any(_is(u, Q_OPS) for u in node.output.consumers()):
        return False
    ta = _act_type(da)
    if ta is None or not _same8(ta) or not _weight_ok(db):
        return False
    if q is not None and _scalar_params(q)[2] != ta:
        return False
    if dc is not None and np.asarray(_const(dc.input(0))).dtype != np.int32:
        return False
    ins: list[Value | None] = [*_dq_args(da, graph), *_dq_args(db, graph)]
    ins.append(dc.input(0) if dc is not None else None)
    if q is not None:
        ins += _q_args(q, graph)
    attrs = {k: v for k, v in node.attrs.items() if k in ("alpha", "transA", "transB")}
    new = Node("QGemm", ins, domain=MS_DOMAIN, attrs=attrs, outputs=[None], name=node.name)
    _replace(graph, node, q, new, [d for d in (da, db, dc) if d is not None])
    return True


def fuse_binary(graph, node: Node) -> bool:
    da, db = _dq_input(node.input(0)), _dq_input(node.input(1))
    q = _out_q(node)
    if da is None or db is None or q is None:
        return False
    if not _same8(_act_type(da), _act_type(db), _scalar_params(q)[2]):
        return False
    ins = [*_dq_args(da, graph), *_dq_args(db, graph), *_q_args(q, graph)]
    new = Node("QLinear" + node.op_type, ins, domain=MS_DOMAIN, outputs=[None], name=node.name)
    _replace(graph, node, q, new, [da, db])
    return True


def fuse_unary(graph, node: Node, opset: int) -> bool:
    dx = _dq_input(node.input(0))
    q = _out_q(node)
    if dx is None or q is None or not _same8(_act_type(dx), _scalar_params(q)[2]):
        return False
    attrs = dict(node.attrs)
    if node.op_type == "Softmax":
        attrs = {"axis": node.attr("axis", -1 if opset >= 13 else 1), "opset": opset}
    ins = [*_dq_args(dx, graph), *_q_args(q, graph)]
    new = Node(
        "QLinear" + node.op_type, ins, domain=MS_DOMAIN, attrs=attrs, outputs=[None], name=node.name
    )
    _replace(graph, node, q, new, [dx])
    return True


def fuse_concat(graph, node: Node) -> bool:
    dqs = [_dq_input(v) for v in node.inputs]
    q = _out_q(node)
    if q is None or any(d is None for d in dqs):
        return False
    if not _same8(*(_act_type(d) for d in dqs), _scalar_params(q)[2]):
        return False
    ins: list[Value] = list(_q_args(q, graph))
    for d in dqs:
        ins += _dq_args(d, graph)
    new = Node(
        "QLinearConcat",
        ins,
        domain=MS_DOMAIN,
        attrs={"axis": node.attr("axis")},
        outputs=[None],
        name=node.name,
    )
    _replace(graph, node, q, new, dqs)
    return True


def fuse_units(graph, opset: int) -> dict[str, int]:
    """Replace every fusable DQ -> op -> Q unit by onnxruntime's integer kernel."""
    rules: dict[str, Callable[[Node], bool]] = {
        "Conv": lambda n: fuse_conv(graph, n),
        "MatMul": lambda n: fuse_matmul(graph, n),
        "Gemm": lambda n: fuse_gemm(graph, n),
        "Add": lambda n: fuse_binary(graph, n),
        "Mul": lambda n: fuse_binary(graph, n),
        "Concat": lambda n: fuse_concat(graph, n),
    }
    for op in ("Sigmoid", "LeakyRelu", "AveragePool", "GlobalAveragePool", "Softmax"):
        rules[op] = lambda n: fuse_unary(graph, n, opset)
    fused: dict[str, int] = {}
    for node in list(graph):
        if node.is_erased or node.domain or node.op_type not in rules:
            continue
        if rules[node.op_type](node):
            fused[node.op_type] = fused.get(node.op_type, 0) + 1
    return fused


def prepare(model: Model) -> Model:
    """Rewrite ``model`` in place the way onnxruntime's CPU EP would, and return it."""
    g = model.graph
    stats = {
        "constants_folded": fold_constants(g, model.opset),
        "bias_quantized": quantize_float_bias(g),
        "relu_clip_absorbed": absorb_relu_clip(g),
        "dq_duplicated": ensure_unique_dq(g),
        "s8_to_u8_pairs": s8_to_u8(g),
    }
    stats.update(fuse_units(g, model.opset))
    model.opaque["interp_prepare"] = stats
    ms = g.opset_imports
    if MS_DOMAIN not in ms:
        ms[MS_DOMAIN] = 1
    return model
