"""``pad-channels``: give depthwise convolutions a channel count their integer kernel runs fast.

onnxruntime's int8 depthwise convolution (QLinearConv with ``group == channels``) runs 16
channels at a time and the rest element by element: with a channel count that is not a
multiple of 16 the layer is 1.5-2.3x *slower than the next multiple of 16*, although that does
more work (measured with onnxruntime 1.31 on AVX-512: a 3x3 depthwise on 6x96 pixels takes
68 us at 24 channels and 42 us at 32; 5x5 on 3x96: 165 us at 88 channels, 76 us at 96).
Pointwise convolutions and Gemm show no such step.

The pass appends inert channels to every channel set a depthwise convolution reads until its
size is a multiple of ``multiple``: the layers producing those channels get zero output rows
and zero biases, the depthwise convolution zero filters (and a larger ``group``), the layers
reading them zero input columns, and per-channel constants on the way neutral values (0, or 1
for a divisor or a BatchNormalization variance). Whatever the padded lanes hold in between
(``HardSigmoid(0) = 0.5`` in a squeeze-excite gate), the next layers multiply it by zero, so
the graph computes exactly the function it computed before; in an INT8 model the padded lanes
quantize exactly (0 and the activations' values at 0 are inside every range) and never reach
a kept output.

The channel sets come from the channel dependency analysis of ``prune-channels``
(:mod:`qcc.prune.deps`): a depthwise layer's channels are padded together with everything
coupled to them (the expand convolution before it, the squeeze-excite convolutions and
``Mul``, a residual stream). The pass leaves a channel set alone when any part of it cannot
take padding: it is blocked for pruning (reaches a graph output, an op the analysis does not
understand, ...), a tensor holds it together with other channels (``Concat``) or only part of
it (``Split``), a ``Reshape``/``Flatten`` names its size, a grouped convolution or
ConvTranspose reads it, or an op on the way is not known to keep zero lanes finite (only
activations, pooling, ``Resize``, ``BatchNormalization`` and ``Add``/``Sub``/``Mul``/``Max``/
``Min``/``PRelu``/``Div`` by a constant are). Only nodes the recipe selects are changed.

Run it on the FP32 graph before ``observe``. The model grows by the padded weights (zeros;
the INT8 file by about ``padded / channels`` of those layers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qcc.ir import Graph, Node, Value, constant_value
from qcc.pipeline import PassContext, PassResult, register_pass

if TYPE_CHECKING:  # qcc.prune is imported when the pass runs: every compile loads this module
    from qcc.prune.deps import ChannelGraph

# Ops that may carry padded lanes: they keep a zero lane finite and never mix channels.
_LANE_SAFE = {
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Clip",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Mish",
    "Softplus",
    "Identity",
    "Dropout",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Resize",
    "Upsample",
    "BatchNormalization",
    "Add",
    "Sub",
    "Mul",
    "Max",
    "Min",
    "Div",
}


def _neutral(node: Node, index: int) -> float:
    """The value a padded lane of ``node``'s constant input ``index`` gets."""
    if node.op_type == "Div" and index == 1:
        return 1.0
    if node.op_type == "BatchNormalization" and index == 4:
        return 1.0
    return 0.0


@register_pass("pad-channels", selectable=True, valid={"multiple": (lambda v: v >= 2, ">= 2")})
def pad_channels(graph: Graph, ctx: PassContext, *, multiple: int = 16) -> PassResult:
    """Pad the channels of depthwise convolutions (and what is coupled to them) up to a
    multiple of ``multiple`` with inert channels; the function is unchanged."""
    from qcc.prune.deps import ChannelGraph

    result = PassResult()
    cg = ChannelGraph(graph)
    roots = cg.roots()
    groups = cg.groups()
    done: set[frozenset[int]] = set()
    for dw in cg.depthwise:
        if len(dw.out_ids) != len(dw.in_ids):
            continue  # channel multiplier > 1
        group_set = frozenset(roots[dw.in_ids].tolist())
        if group_set in done or len(group_set) != len(dw.in_ids):
            continue
        done.add(group_set)
        pad = (-len(group_set)) % multiple
        if pad == 0:
            continue
        plan = _plan(graph, cg, roots, groups, group_set, ctx)
        if isinstance(plan, str):
            result.note(f"{dw.node.describe()}: {len(group_set)} channels left as they are: {plan}")
            continue
        _apply(graph, cg, roots, group_set, plan, pad)
        result.count("channel sets padded")
        result.count("channels added", pad)
        result.note(f"{dw.node.describe()}: {len(group_set)} -> {len(group_set) + pad} channels")
    return result


def _plan(
    graph: Graph,
    cg: ChannelGraph,
    roots: np.ndarray,
    groups: dict,
    group_set: frozenset[int],
    ctx: PassContext,
) -> list[Value] | str:
    """The tensors to widen, or why the channel set cannot be padded."""
    for r in group_set:
        if groups[r].blocked:
            return next(iter(groups[r].blocked))
        for node in groups[r].nodes:
            if not ctx.selected(node):
                return f"{node.describe()} is not selected"
    n = len(group_set)
    tensors: list[Value] = []
    for v, m in cg.maps.items():
        rs = roots[m.ids].tolist()
        hit = group_set.intersection(rs)
        if not hit:
            continue
        if len(rs) != n or set(rs) != group_set:
            return f"{v.name!r} holds other channels too, or part of them"
        tensors.append(v)

    touches = _toucher(roots, group_set)
    for s in cg.splits:
        if any(touches(ids) for ids in s.outputs):
            return f"{s.node.describe()} splits them"
    for rs in cg.reshapes:
        if touches(rs.ids):
            return f"{rs.node.describe()} names their count"
    for c in cg.consumers:
        if touches(c.ids) and c.kind not in ("conv", "gemm", "matmul"):
            return f"{c.node.describe()} ({c.kind}) reads them"
    for s in cg.sources:
        if touches(s.ids) and not _plain_source(s.node):
            return f"{s.node.describe()} (grouped or transposed) produces them"
    mapped = set(tensors)
    for v in tensors:
        for user in v.consumers():
            if user.op_type in ("Conv", "Gemm", "MatMul") and user.input(0) is v:
                continue
            if user.op_type not in _LANE_SAFE:
                return f"{user.describe()} may not keep padded lanes finite"
            if user.op_type == "Div" and user.input(1) is not None and user.input(1) in mapped:
                return f"{user.describe()} divides by them"
    return tensors


def _toucher(roots: np.ndarray, group_set: frozenset[int]):
    """``touches(ids)``: whether any element in ``ids`` belongs to the channel set."""
    return lambda ids: bool(group_set.intersection(roots[ids].tolist()))


def _plain_source(node: Node) -> bool:
    if node.op_type == "Conv":
        return int(node.attr("group", 1)) == 1
    return node.op_type in ("Gemm", "MatMul")


def _pad_axis(arr: np.ndarray, axis: int, pad: int, value: float = 0.0) -> np.ndarray:
    widths = [(0, 0)] * arr.ndim
    widths[axis] = (0, pad)
    return np.pad(arr, widths, constant_values=np.asarray(value, arr.dtype))


def _replace_const(graph: Graph, node: Node, index: int, new: np.ndarray) -> None:
    old = node.input(index)
    node.replace_input(index, graph.add_constant(new, old.name))
    graph.remove_unused_constants([old])


def _apply(
    graph: Graph,
    cg: ChannelGraph,
    roots: np.ndarray,
    group_set: frozenset[int],
    tensors: list[Value],
    pad: int,
) -> None:
    touches = _toucher(roots, group_set)
    for v in tensors:
        m = cg.maps[v]
        if v.shape is not None and m.axis < len(v.shape):
            dims = list(v.shape)
            dims[m.axis] = len(m.ids) + pad
            v.shape = tuple(dims)
    for s in cg.sources:  # output rows (and bias entries) of the producing layers
        if not touches(s.ids):
            continue
        node = s.node
        w = constant_value(node.input(1))
        transposed = node.op_type == "Gemm" and node.attr("transB", 0)
        out_axis = 0 if node.op_type == "Conv" or transposed else 1
        _replace_const(graph, node, 1, _pad_axis(w, out_axis, pad))
        b = constant_value(node.input(2)) if node.op_type != "MatMul" else None
        if b is not None and b.size > 1:
            _replace_const(graph, node, 2, _pad_axis(b, b.ndim - 1, pad))
    for d in cg.depthwise:
        if not touches(d.in_ids):
            continue
        node = d.node
        _replace_const(graph, node, 1, _pad_axis(constant_value(node.input(1)), 0, pad))
        b = constant_value(node.input(2))
        if b is not None:
            _replace_const(graph, node, 2, _pad_axis(b, 0, pad))
        node.set_attr("group", int(node.attr("group", 1)) + pad)
    for c in cg.consumers:  # input columns of the layers reading them
        if not touches(c.ids):
            continue
        node = c.node
        w = constant_value(node.input(1))
        in_axis = 1 if c.kind == "conv" or (c.kind == "gemm" and node.attr("transB", 0)) else 0
        _replace_const(graph, node, 1, _pad_axis(w, in_axis, pad))
    for cs in cg.consts:
        if not touches(cs.ids):
            continue
        arr = constant_value(cs.node.input(cs.index))
        new = _pad_axis(arr, cs.axis, pad, _neutral(cs.node, cs.index))
        _replace_const(graph, cs.node, cs.index, new)
