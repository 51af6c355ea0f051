"""Channel dependency analysis: which output channels can be removed, and what else goes with them.

This is the "dependency graph" of Torch-Pruning (Fang et al., *DepGraph*, CVPR 2023) done at
the granularity of single channels. Every output channel of a prunable layer (a Conv,
ConvTranspose, Gemm or MatMul with constant weights) is an *element*. Walking the graph in
topological order, every tensor gets a :class:`ChannelMap`: the axis that carries channels and,
for each position along it, the element that lives there. Operators move, copy or merge these
maps:

* element-wise ops (activations, pooling, Resize, Pad, BatchNormalization, Transpose, ...)
  pass the map through; binary element-wise ops (residual ``Add``, squeeze-excite ``Mul``)
  *unite* the elements at equal positions of their inputs, so they are pruned together;
  a per-channel constant operand is recorded, to be sliced;
* ``Concat`` on the channel axis concatenates the maps (the offsets come for free), ``Split``
  and ``Slice``-free splits slice them;
* a depthwise convolution unites its input channel ``c`` with its outputs ``c*m .. c*m+m-1``;
  a grouped convolution unites channel ``j`` of every group (inputs and outputs), so the groups
  stay equal;
* ``Flatten``/``Reshape`` into a Gemm repeat each channel's element ``H*W`` times;
* a Conv/Gemm/MatMul reading a mapped tensor is a *consumer*: its input-channel weights are
  sliced; its own output starts fresh elements.

Elements united (union-find) form a *group*: the channels that must be removed together or
not at all. A group is *blocked* when any of its elements reaches something that cannot
change: a graph output, an operator this analysis does not understand (it blocks everything
it reads), an op that mixes channels non-linearly (Softmax over channels, LRN), a tensor whose
channels meet an unmapped tensor of the same size, a ``Shape``. Groups sharing the same set of
producing layers form a *layer* (what per-layer ratios and the report count).

The analysis only reads the graph; :mod:`qcc.prune.apply` rewrites it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from qcc.ir import Graph, Node, Value, constant_value

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

# Ops whose output i is input 0 position by position (other inputs are scalars or absent).
_UNARY = {
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Softplus",
    "Softsign",
    "Mish",
    "Erf",
    "Exp",
    "Log",
    "Abs",
    "Neg",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Identity",
    "Dropout",
    "Clip",
    "Cast",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
    "GlobalLpPool",
    "Not",
    "IsNaN",
    "IsInf",
}
_ELEMENTWISE = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "PRelu",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Mod",
    "BitShift",
}
_REDUCE = {
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
}


@dataclasses.dataclass(frozen=True)
class ChannelMap:
    """The channel axis of a tensor and the element at each position along it."""

    axis: int
    ids: np.ndarray  # int64 element ids, one per position along ``axis``


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """A layer whose output channels are elements: its weight's output axis is sliced."""

    node: Node
    ids: np.ndarray  # element of each output channel


@dataclasses.dataclass(frozen=True, eq=False)
class Consumer:
    """A layer reading mapped channels: its weight's input axis is sliced (and re-fitted).

    ``kind``: ``conv`` (group 1, weight axis 1), ``grouped`` (weight axis 1, per group),
    ``convtranspose`` (weight axis 0), ``gemm`` (B's K axis: 0, or 1 with transB),
    ``matmul`` (B's axis 0).
    """

    node: Node
    value: Value
    ids: np.ndarray  # element of each position of the input's channel axis
    kind: str


@dataclasses.dataclass(frozen=True, eq=False)
class Depthwise:
    """A depthwise Conv: its weight rows follow its input channels; ``group`` is updated."""

    node: Node
    in_ids: np.ndarray
    out_ids: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class ConstSlice:
    """A constant operand that varies along the channel axis: sliced along ``axis``."""

    node: Node
    index: int
    axis: int
    ids: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class SplitSizes:
    """A Split on the channel axis: its sizes become the kept counts of each output."""

    node: Node
    outputs: tuple[np.ndarray, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class ReshapeDim:
    """A Reshape whose target shape names the channel dimension explicitly at ``index``."""

    node: Node
    index: int
    ids: np.ndarray


@dataclasses.dataclass(eq=False)
class Group:
    """Channels that are removed together or not at all.

    ``sources``: the layers whose output channels these are (the group's *layer* is this set);
    ``nodes``: every Conv/ConvTranspose/Gemm/MatMul whose weights removing it changes;
    ``blocked``: why it can never be removed (empty when it can).
    """

    root: int
    elements: list[int] = dataclasses.field(default_factory=list)
    blocked: dict[str, None] = dataclasses.field(default_factory=dict)
    nodes: dict[Node, None] = dataclasses.field(default_factory=dict)
    sources: dict[Node, None] = dataclasses.field(default_factory=dict)


class ChannelGraph:
    """The channel dependency analysis of one graph (see the module docstring).

    After construction: ``maps`` (tensor -> ChannelMap), the places to rewrite (``sources``,
    ``consumers``, ``depthwise``, ``consts``, ``splits``, ``reshapes``), and through
    :meth:`groups` the groups of coupled channels.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._parent: list[int] = []
        self.maps: dict[Value, ChannelMap] = {}
        self.sources: list[Source] = []
        self.consumers: list[Consumer] = []
        self.depthwise: list[Depthwise] = []
        self.consts: list[ConstSlice] = []
        self.splits: list[SplitSizes] = []
        self.reshapes: list[ReshapeDim] = []
        self._blocks: list[tuple[np.ndarray, str]] = []
        self._touch: list[tuple[np.ndarray, Node]] = []
        self._run()

    # ------------------------------------------------------------------ union-find
    @property
    def size(self) -> int:
        return len(self._parent)

    def _new(self, n: int) -> np.ndarray:
        start = len(self._parent)
        self._parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def _find(self, i: int) -> int:
        p = self._parent
        root = i
        while p[root] != root:
            root = p[root]
        while p[i] != root:
            p[i], i = root, p[i]
        return root

    def _union(self, a: Iterable[int], b: Iterable[int]) -> None:
        for x, y in zip(a, b, strict=True):
            rx, ry = self._find(int(x)), self._find(int(y))
            if rx != ry:
                if rx < ry:
                    rx, ry = ry, rx
                self._parent[rx] = ry  # the smaller id is the root: deterministic

    def roots(self) -> np.ndarray:
        """The group (root element) of every element."""
        return np.array([self._find(i) for i in range(self.size)], dtype=np.int64)

    # ------------------------------------------------------------------ recording
    def _block(self, ids: np.ndarray, reason: str) -> None:
        if len(ids):
            self._blocks.append((ids, reason))

    def _block_inputs(self, node: Node, reason: str) -> None:
        for v in node.inputs:
            m = self.maps.get(v) if v is not None else None
            if m is not None:
                self._block(m.ids, reason)

    def _set(self, v: Value, axis: int, ids: np.ndarray) -> None:
        self.maps[v] = ChannelMap(axis, ids)

    # ------------------------------------------------------------------ results
    def groups(self) -> dict[int, Group]:
        """Every group of coupled channels, keyed by its root element, in root order."""
        roots = self.roots()
        out: dict[int, Group] = {}
        for r in sorted(set(roots.tolist())):
            out[r] = Group(r)
        for e, r in enumerate(roots.tolist()):
            out[r].elements.append(e)
        for ids, reason in self._blocks:
            for r in set(roots[ids].tolist()):
                out[r].blocked.setdefault(reason, None)
        for ids, node in self._touch:
            for r in set(roots[ids].tolist()):
                out[r].nodes.setdefault(node, None)
        for s in self.sources:
            for r in set(roots[s.ids].tolist()):
                out[r].sources.setdefault(s.node, None)
        return out

    # ------------------------------------------------------------------ the walk
    def _run(self) -> None:
        for node in self.graph:
            if node.domain or node.subgraphs():
                self._block_inputs(node, f"{node.describe()} is not understood")
                for v in self.graph.outer_values_of(node):
                    m = self.maps.get(v)
                    if m is not None:
                        self._block(m.ids, f"read inside the subgraph of {node.describe()}")
                continue
            op = node.op_type
            if op in LINEAR_OPS:
                handler = getattr(self, f"_op_{op}")
            elif op in _UNARY:
                handler = self._op_unary
            elif op in _ELEMENTWISE:
                handler = self._op_elementwise
            elif op in _REDUCE:
                handler = self._op_reduce
            else:
                handler = getattr(self, f"_op_{op}", None)
            if handler is None:
                self._block_inputs(node, f"{node.describe()} is not understood")
                continue
            handler(node)
        for v in self.graph.outputs:
            m = self.maps.get(v)
            if m is not None:
                self._block(m.ids, f"graph output {v.name!r}")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _rank(v: Value | None) -> int | None:
        if v is None:
            return None
        c = constant_value(v)
        if c is not None:
            return c.ndim
        return len(v.shape) if v.shape is not None else None

    @staticmethod
    def _dims(v: Value | None) -> tuple | None:
        if v is None:
            return None
        c = constant_value(v)
        if c is not None:
            return tuple(c.shape)
        return v.shape

    def _mapped(self, v: Value | None) -> ChannelMap | None:
        return self.maps.get(v) if v is not None else None

    def _pass(self, node: Node, m: ChannelMap | None, axis: int | None = None) -> None:
        if m is not None:
            self._set(node.outputs[0], m.axis if axis is None else axis, m.ids)
        for extra in node.outputs[1:]:
            if extra.has_uses() or extra.is_graph_output:
                if m is not None:
                    self._block(m.ids, f"second output of {node.describe()} is used")
                return

    def _scalar_inputs_only(self, node: Node, first: int = 1) -> bool:
        for v in node.inputs[first:]:
            if v is None:
                continue
            c = constant_value(v)
            if c is None or c.size > 1:
                return False
        return True

    # ------------------------------------------------------------------ linear ops
    def _linear_weights(self, node: Node) -> tuple[np.ndarray, np.ndarray | None] | None:
        w = constant_value(node.input(1))
        if w is None or not np.issubdtype(w.dtype, np.floating):
            return None
        b_in = node.input(2)
        b = constant_value(b_in) if b_in is not None else None
        if b_in is not None and b is None:
            return None
        return w, b

    def _op_Conv(self, node: Node) -> None:
        x = node.input(0)
        wb = self._linear_weights(node)
        xm = self._mapped(x)
        if wb is None or wb[0].ndim < 3:
            self._block_inputs(node, f"{node.describe()} has no constant weights")
            return
        w, _ = wb
        g = int(node.attr("group", 1))
        out_c, per_in = int(w.shape[0]), int(w.shape[1])
        if xm is not None and (xm.axis != 1 or len(xm.ids) != per_in * g):
            self._block(xm.ids, f"{node.describe()} reads channels on another axis")
            xm = None
        if g == 1:
            if xm is not None:
                self.consumers.append(Consumer(node, x, xm.ids, "conv"))
                self._touch.append((xm.ids, node))
            out = self._new(out_c)
            self.sources.append(Source(node, out))
            self._touch.append((out, node))
            self._set(node.output, 1, out)
            return
        if out_c % g:
            self._block_inputs(node, f"{node.describe()}: output channels not divisible by group")
            return
        if per_in == 1:  # depthwise (channel multiplier out_c / g)
            if xm is None:
                return  # its channels follow an input that cannot be pruned
            out = np.repeat(xm.ids, out_c // g)
            self.depthwise.append(Depthwise(node, xm.ids, out))
            self._touch.append((xm.ids, node))
            self._set(node.output, 1, out)
            return
        if xm is not None:  # grouped: channel j of every group goes together
            per_group = xm.ids.reshape(g, per_in)
            for k in range(1, g):
                self._union(per_group[0], per_group[k])
            self.consumers.append(Consumer(node, x, xm.ids, "grouped"))
            self._touch.append((xm.ids, node))
        out = np.tile(self._new(out_c // g), g)
        self.sources.append(Source(node, out))
        self._touch.append((out, node))
        self._set(node.output, 1, out)

    def _op_ConvTranspose(self, node: Node) -> None:
        x = node.input(0)
        wb = self._linear_weights(node)
        xm = self._mapped(x)
        if wb is None or wb[0].ndim < 3 or int(node.attr("group", 1)) != 1:
            self._block_inputs(node, f"{node.describe()} is grouped or has no constant weights")
            return
        w, _ = wb
        if xm is not None:
            if xm.axis != 1 or len(xm.ids) != w.shape[0]:
                self._block(xm.ids, f"{node.describe()} reads channels on another axis")
            else:
                self.consumers.append(Consumer(node, x, xm.ids, "convtranspose"))
                self._touch.append((xm.ids, node))
        out = self._new(int(w.shape[1]))
        self.sources.append(Source(node, out))
        self._touch.append((out, node))
        self._set(node.output, 1, out)

    def _op_Gemm(self, node: Node) -> None:
        x = node.input(0)
        wb = self._linear_weights(node)
        xm = self._mapped(x)
        if wb is None or wb[0].ndim != 2 or node.attr("transA", 0):
            self._block_inputs(node, f"{node.describe()} has no constant B or transposes A")
            return
        w, c = wb
        k_axis = 1 if node.attr("transB", 0) else 0
        n = int(w.shape[1 - k_axis])
        if c is not None and c.ndim == 2 and c.shape[0] != 1:
            self._block_inputs(node, f"{node.describe()}: C varies along rows")
            return
        if xm is not None:
            if xm.axis != 1 or len(xm.ids) != w.shape[k_axis]:
                self._block(xm.ids, f"{node.describe()} reads channels on another axis")
            else:
                self.consumers.append(Consumer(node, x, xm.ids, "gemm"))
                self._touch.append((xm.ids, node))
        out = self._new(n)
        self.sources.append(Source(node, out))
        self._touch.append((out, node))
        self._set(node.output, 1, out)

    def _op_MatMul(self, node: Node) -> None:
        x = node.input(0)
        w = constant_value(node.input(1))
        xm = self._mapped(x)
        rank = self._rank(x)
        if (
            w is None
            or w.ndim != 2
            or not np.issubdtype(w.dtype, np.floating)
            or rank is None
            or rank < 2
            or constant_value(x) is not None
        ):
            self._block_inputs(node, f"{node.describe()} has no constant 2-D right operand")
            return
        if xm is not None:
            if xm.axis != rank - 1 or len(xm.ids) != w.shape[0]:
                self._block(xm.ids, f"{node.describe()} reads channels on another axis")
            else:
                self.consumers.append(Consumer(node, x, xm.ids, "matmul"))
                self._touch.append((xm.ids, node))
        out = self._new(int(w.shape[1]))
        self.sources.append(Source(node, out))
        self._touch.append((out, node))
        self._set(node.output, rank - 1, out)

    # ------------------------------------------------------------------ pass-through ops
    def _op_unary(self, node: Node) -> None:
        m = self._mapped(node.input(0))
        if m is None:
            return
        if not self._scalar_inputs_only(node):
            self._block_inputs(node, f"{node.describe()} has non-scalar parameters")
            return
        self._pass(node, m)

    def _op_BatchNormalization(self, node: Node) -> None:
        m = self._mapped(node.input(0))
        if m is None:
            return
        params = [constant_value(node.input(i)) for i in range(1, 5)]
        if m.axis != 1 or any(p is None or p.shape != (len(m.ids),) for p in params):
            self._block(m.ids, f"{node.describe()} has non-constant or mismatched parameters")
            return
        for i in range(1, 5):
            self.consts.append(ConstSlice(node, i, 0, m.ids))
        self._pass(node, m)

    def _op_InstanceNormalization(self, node: Node) -> None:
        m = self._mapped(node.input(0))
        if m is None:
            return
        params = [constant_value(node.input(i)) for i in (1, 2)]
        if m.axis != 1 or any(p is None or p.shape != (len(m.ids),) for p in params):
            self._block(m.ids, f"{node.describe()} has non-constant or mismatched parameters")
            return
        for i in (1, 2):
            self.consts.append(ConstSlice(node, i, 0, m.ids))
        self._pass(node, m)

    def _op_elementwise(self, node: Node) -> None:
        ins = [(i, v) for i, v in enumerate(node.inputs) if v is not None]
        mapped = [(i, v, self.maps[v]) for i, v in ins if v in self.maps]
        if not mapped:
            return
        ranks = [self._rank(v) for _, v in ins]
        if any(r is None for r in ranks):
            self._block_inputs(node, f"{node.describe()}: an operand of unknown rank")
            return
        out_rank = max(ranks)  # type: ignore[type-var]
        aligned = {m.axis + out_rank - self._rank(v) for _, v, m in mapped}  # type: ignore[operator]
        sizes = {len(m.ids) for _, _, m in mapped}
        if len(aligned) != 1 or len(sizes) != 1:
            self._block_inputs(node, f"{node.describe()} combines channels on different axes")
            return
        (axis,) = aligned
        (size,) = sizes
        first = mapped[0][2].ids
        for _, _, m in mapped[1:]:
            self._union(first, m.ids)
        for i, v in ins:
            if v in self.maps:
                continue
            dims = self._dims(v)
            local = axis - (out_rank - len(dims)) if dims is not None else None
            if dims is not None and (local < 0 or dims[local] == 1):
                continue  # broadcast along the channels
            if dims is not None and dims[local] == size and constant_value(v) is not None:
                self.consts.append(ConstSlice(node, i, local, first))
                continue
            self._block_inputs(node, f"{node.describe()} combines channels with {v.name!r}")
            return
        self._set(node.outputs[0], axis, first)

    def _op_Softmax(self, node: Node) -> None:
        self._softmax_like(node)

    def _op_LogSoftmax(self, node: Node) -> None:
        self._softmax_like(node)

    def _op_Hardmax(self, node: Node) -> None:
        self._softmax_like(node)

    def _softmax_like(self, node: Node) -> None:
        m = self._mapped(node.input(0))
        rank = self._rank(node.input(0))
        if m is None or rank is None:
            return
        opset = self.graph.root.opset_imports.get("", 13)
        axis = int(node.attr("axis", -1 if opset >= 13 else 1)) % rank
        if (opset >= 13 and axis == m.axis) or (opset < 13 and m.axis >= axis):
            self._block(m.ids, f"{node.describe()} normalizes over the channels")
            return
        self._pass(node, m)

    def _op_reduce(self, node: Node) -> None:
        x = node.input(0)
        m = self._mapped(x)
        rank = self._rank(x)
        if m is None:
            return
        axes = _ints(node, "axes", 1)
        if axes is None and node.input(1) is not None:
            self._block(m.ids, f"{node.describe()} has non-constant axes")
            return
        if rank is None or not axes:
            self._block(m.ids, f"{node.describe()} reduces over the channels")
            return
        axes = sorted({int(a) % rank for a in axes})
        if m.axis in axes:
            self._block(m.ids, f"{node.describe()} reduces over the channels")
            return
        keep = node.attr("keepdims", 1)
        self._pass(node, m, m.axis if keep else m.axis - sum(a < m.axis for a in axes))

    def _op_Transpose(self, node: Node) -> None:
        m = self._mapped(node.input(0))
        rank = self._rank(node.input(0))
        if m is None or rank is None:
            if m is not None:
                self._block(m.ids, f"{node.describe()}: unknown rank")
            return
        perm = node.attr("perm") or tuple(reversed(range(rank)))
        self._pass(node, m, list(perm).index(m.axis))

    def _op_Squeeze(self, node: Node) -> None:
        self._squeeze(node, squeeze=True)

    def _op_Unsqueeze(self, node: Node) -> None:
        self._squeeze(node, squeeze=False)

    def _squeeze(self, node: Node, squeeze: bool) -> None:
        x = node.input(0)
        m = self._mapped(x)
        if m is None:
            return
        axes = _ints(node, "axes", 1)
        rank_in = self._rank(x)
        if axes is None or rank_in is None:
            self._block(m.ids, f"{node.describe()}: unknown axes")
            return
        if squeeze:
            axes = sorted({int(a) % rank_in for a in axes})
            if m.axis in axes:
                self._block(m.ids, f"{node.describe()} squeezes the channel axis")
                return
            self._pass(node, m, m.axis - sum(a < m.axis for a in axes))
            return
        rank_out = rank_in + len(axes)
        axes = sorted({int(a) % rank_out for a in axes})
        pos = [d for d in range(rank_out) if d not in axes]
        self._pass(node, m, pos[m.axis])

    def _op_Pad(self, node: Node) -> None:
        x = node.input(0)
        m = self._mapped(x)
        rank = self._rank(x)
        if m is None:
            return
        pads = _ints(node, "pads", 1)
        value = node.input(2)
        if (
            pads is None
            or rank is None
            or node.input(3) is not None
            or (value is not None and constant_value(value) is None)
            or pads[m.axis] != 0
            or pads[m.axis + rank] != 0
        ):
            self._block(m.ids, f"{node.describe()} may pad the channels")
            return
        self._pass(node, m)

    def _op_Resize(self, node: Node) -> None:
        x = node.input(0)
        m = self._mapped(x)
        if m is None:
            return
        opset = self.graph.root.opset_imports.get("", 13)
        at = 1 if opset < 11 else 2  # opset 10: Resize(X, scales)
        scales = constant_value(node.input(at)) if node.input(at) is not None else None
        sizes_in = node.input(3) if opset >= 11 else None
        ok = scales is not None and scales.size > m.axis and scales.reshape(-1)[m.axis] == 1
        if sizes_in is not None and constant_value(sizes_in) is not None:
            sizes = constant_value(sizes_in)
            ok = sizes.size == 0 and ok
        if node.attr("axes") is not None:
            ok = False
        if not ok:
            self._block(m.ids, f"{node.describe()} may resize the channels")
            return
        self._pass(node, m)

    def _op_Upsample(self, node: Node) -> None:
        m = self._mapped(node.input(0))
        if m is None:
            return
        scales = node.attr("scales")
        if scales is None and node.input(1) is not None:
            c = constant_value(node.input(1))
            scales = None if c is None else c.reshape(-1).tolist()
        if scales is None or scales[m.axis] != 1:
            self._block(m.ids, f"{node.describe()} may resize the channels")
            return
        self._pass(node, m)

    def _op_Concat(self, node: Node) -> None:
        ins = list(node.inputs)
        maps = [self._mapped(v) for v in ins]
        if not any(maps):
            return
        rank = self._rank(node.outputs[0]) or next(
            (self._rank(v) for v in ins if self._rank(v) is not None), None
        )
        if rank is None:
            self._block_inputs(node, f"{node.describe()}: unknown rank")
            return
        axis = int(node.attr("axis", 1)) % rank
        if any(m is not None and m.axis != axis for m in maps):
            # concatenating along another axis: every input must carry the same channels
            first = next(m for m in maps if m is not None)
            if any(m is None or m.axis != first.axis or len(m.ids) != len(first.ids) for m in maps):
                self._block_inputs(node, f"{node.describe()} joins tensors with other channels")
                return
            for m in maps[1:]:
                self._union(first.ids, m.ids)
            self._pass(node, first)
            return
        parts = []
        for v, m in zip(ins, maps, strict=True):
            if m is not None:
                parts.append(m.ids)
                continue
            dims = self._dims(v)
            d = dims[axis] if dims is not None and len(dims) == rank else None
            if not isinstance(d, int) or d < 0:
                self._block_inputs(node, f"{node.describe()}: an input of unknown size")
                return
            fresh = self._new(d)  # channels that come from elsewhere: never pruned
            self._block(fresh, f"{node.describe()} concatenates {v.name!r}")
            parts.append(fresh)
        self._set(node.output, axis, np.concatenate(parts))

    def _op_Split(self, node: Node) -> None:
        x = node.input(0)
        m = self._mapped(x)
        rank = self._rank(x)
        if m is None:
            return
        if rank is None:
            self._block(m.ids, f"{node.describe()}: unknown rank")
            return
        axis = int(node.attr("axis", 0)) % rank
        if axis != m.axis:
            for o in node.outputs:
                self._set(o, m.axis, m.ids)
            return
        split = _ints(node, "split", 1)
        if split is None and node.input(1) is not None:
            self._block(m.ids, f"{node.describe()} has non-constant sizes")
            return
        n = len(node.outputs)
        if split is None:
            if len(m.ids) % n:
                self._block(m.ids, f"{node.describe()} splits unevenly")
                return
            split = [len(m.ids) // n] * n
        bounds = np.cumsum([0, *split])
        parts = tuple(m.ids[bounds[i] : bounds[i + 1]] for i in range(n))
        if node.attr("split") is None and node.input(1) is None:
            # an even split cannot express uneven kept counts: keep the halves equal
            for p in parts[1:]:
                self._block(p, f"{node.describe()} splits evenly without sizes")
            self._block(parts[0], f"{node.describe()} splits evenly without sizes")
            return
        self.splits.append(SplitSizes(node, parts))
        for o, p in zip(node.outputs, parts, strict=True):
            self._set(o, axis, p)

    def _op_Flatten(self, node: Node) -> None:
        x = node.input(0)
        m = self._mapped(x)
        dims = self._dims(x)
        if m is None:
            return
        if dims is None:
            self._block(m.ids, f"{node.describe()}: unknown shape")
            return
        axis = int(node.attr("axis", 1)) % max(len(dims), 1)
        ids = self._merge(m, dims, axis, len(dims))
        if ids is None:
            self._block(m.ids, f"{node.describe()} flattens the channels away")
            return
        self._set(node.output, 1, ids)

    def _merge(self, m: ChannelMap, dims: tuple, start: int, stop: int) -> np.ndarray | None:
        """The ids of ``dims[start:stop]`` merged into one axis, if the channel axis is the
        first of them and the others are static."""
        if m.axis != start or stop <= start:
            return None
        rest = dims[start + 1 : stop]
        if any(not isinstance(d, int) or d <= 0 for d in rest):
            return None
        return np.repeat(m.ids, int(np.prod(rest, dtype=np.int64)))

    def _op_Reshape(self, node: Node) -> None:
        x = node.input(0)
        m = self._mapped(x)
        if m is None:
            return
        shape = constant_value(node.input(1))
        dims_in = self._dims(x)
        if shape is None or dims_in is None or node.attr("allowzero", 0):
            self._block(m.ids, f"{node.describe()} has a non-constant shape")
            return
        shape = shape.reshape(-1).tolist()
        dims_out = node.output.shape
        if dims_out is None or len(dims_out) != len(shape):  # read it off the target shape
            dims_out = tuple(
                (dims_in[i] if i < len(dims_in) else None) if s == 0 else (s if s > 0 else None)
                for i, s in enumerate(shape)
            )
        tail_in = dims_in[m.axis :]
        if any(not isinstance(d, int) or d <= 0 for d in tail_in):
            self._block(m.ids, f"{node.describe()}: channel dims not static")
            return
        total = int(np.prod(tail_in, dtype=np.int64))
        # the output axis k where the channel axis lands: dims_out[k:] hold the same elements
        for k in range(len(dims_out)):
            tail_out = dims_out[k:]
            if any(not isinstance(d, int) or d <= 0 for d in tail_out):
                continue
            if int(np.prod(tail_out, dtype=np.int64)) != total:
                continue
            c = len(m.ids)
            if dims_out[k] == c and (shape[k] != 0 or k == m.axis):
                ids = m.ids
            elif dims_out[k] % c == 0 and shape[k] != 0:
                merged = dims_out[k] // c
                acc, j = 1, m.axis + 1
                while acc < merged and j < len(dims_in):
                    acc *= dims_in[j]
                    j += 1
                if acc != merged:
                    break
                ids = np.repeat(m.ids, merged)
            else:
                break
            if shape[k] > 0:
                self.reshapes.append(ReshapeDim(node, k, ids))
            self._set(node.output, k, ids)
            return
        self._block(m.ids, f"{node.describe()} reshapes the channels")


def _ints(node: Node, attr: str, index: int) -> list | None:
    """Attribute ``attr``, or the constant input ``index`` that replaced it in later opsets,
    as a list; None when neither is given or the input is not a constant."""
    values = node.attr(attr)
    if values is None and node.input(index) is not None:
        c = constant_value(node.input(index))
        values = None if c is None else c.reshape(-1).tolist()
    return values
