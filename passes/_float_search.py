"""The accuracy target of ``quantize``: which op groups to keep in float so the model output
reaches an SQNR target against FP32.

Simulation. The search does not quantize the graph once per candidate. It builds one float
model from the graph as ``quantize`` is about to rewrite it, with every quantization
``quantize`` would insert spliced in behind a switch: each activation edge the placement
quantizes reads ``Where(flag, DQ(Q(x)), x)`` with the very scale and zero point
``quantize`` computed, each weight and bias reads ``Where(flag, dequantized, float)`` with the
very integers ``quantize`` writes. A flag is a graph input, so one onnxruntime session
evaluates any choice of quantized and float op groups; all flags off is the FP32 model. The
simulation computes convolutions in float on dequantized operands where onnxruntime
accumulates integers exactly; the two differ by float rounding, far below one quantization
step.

Units and groups. An op *group* is what can be returned to float: a quantized op with its
fusion group and the Relu/Clip absorbed into its output quantizer (a MaxPool, Reshape, ...
that shares its neighbours' parameters is not a group: it follows them). The error has two
kinds of source, the *units* the search ranks: the quantizer of a tensor (a set of tensors
that share one scale through shared-parameter ops) and the quantized weights of one op. A
tensor's quantizer disappears only when every op reading or writing it in integer is float,
so a unit names the groups that own it, and reverting a unit reverts all of them. This is
what makes a bad tensor between two convolutions fixable (reverting either convolution alone
keeps the other's quantizer on it).

Search. Measure the model output SQNR (the worst float graph output, signal and noise
energies summed over the samples) with everything quantized; if below the target, rank the
units by their SQNR alone (everything else float), worst first; then greedily revert the
owners of each unit in that order, keeping a step only when the measured SQNR of the whole
model improves, until the target or ``max-float`` groups is reached. The ranking is lazy:
blocks of neighbouring units are measured together and opened only when they are the worst
left (noise from independent sources adds up, so a block is no better than its members),
which measures a few dozen units instead of every one on large models. Everything
is in graph order with ties broken by position, so the result is deterministic.
``quantize`` then places quantizers with those groups excluded, with its usual guarantees
(no quantized Conv/MatMul/Gemm left in float, no quantizer between two float ops).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Callable, Iterator

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import EncodeError
from onnx import helper, numpy_helper

from qcc.errors import PassError
from qcc.frontend import lower_model
from qcc.ir import Node, Value, fusion_group
from qcc.quant.capability import Kind
from qcc.quant.params import QParams, compute_qparams, energy_db
from qcc.quant.params import quantize as quantize_array
from qcc.quant.scheme import QDType

_PREFIX = "qcc.search."
_MIN_GAIN_DB = 0.01  # a step must improve the output SQNR by at least this much
# a source whose SQNR alone is this far above the model's carries under 0.25% of the noise:
# removing it cannot gain _MIN_GAIN_DB, so the ranking stops there
_NEGLIGIBLE_DB = 26.0


@dataclasses.dataclass(frozen=True)
class Toggle:
    """One switch of the simulation: on when any of its owner groups is still quantized (an
    empty owner set: always on); with ``every``, only while all of them are (the saturation
    cut of a tensor holds only while all its consumers are integer)."""

    unit: int
    owners: frozenset[int]
    every: bool = False


def op_groups(q) -> tuple[list[list[Node]], dict[Node, int]]:
    """The op groups of a classified quantizer, in graph order, and each member's group."""
    groups: list[list[Node]] = []
    group_of: dict[Node, int] = {}
    for node in q.g:
        kind = q.kind.get(node, Kind.FLOAT)
        if kind in (Kind.FLOAT, Kind.SHARED) or node in group_of:
            continue
        members = [node]
        fg = fusion_group(node)
        if fg is not None:
            members += [m for m in fg.nodes if m is not node and q.kind.get(m) is not Kind.FLOAT]
        for m in list(members):
            for out in m.outputs:
                if q.internal(out):
                    members += [c for c in out.consumers() if c not in members]
        gid = len(groups)
        groups.append(members)
        for m in members:
            group_of.setdefault(m, gid)
    return groups, group_of


def describe_group(nodes: list[Node]) -> str:
    return " + ".join(n.describe() for n in nodes)


class Simulation:
    """The switchable float model of a placement, and the SQNR of any choice of groups."""

    def __init__(self, q, samples: int) -> None:
        self.q = q
        self.tensors = q.tensors()
        self.qparams: dict[Value, QParams] = q.params(self.tensors)
        # the parameters of the tensors whose range params() cut for their saturating
        # consumers, as they are once one of those consumers is float
        self.uncut: dict[Value, QParams] = {}
        cut = list(q.cut_tensors)
        if cut:
            q.saturation_cut_enabled = False
            try:
                full = q.params(self.tensors)
            finally:
                q.saturation_cut_enabled = True
                q.cut_tensors = cut
            self.uncut = {v: full[v] for v in cut}
        self.groups, self.group_of = op_groups(q)
        self.toggles: list[Toggle] = []
        self.units: list[str] = []  # what each unit is, for the report
        self._toggle_index: dict[Toggle, int] = {}
        self._build()
        data = q.ctx.session.calibration
        self.feeds = [data.get(i) for i in range(samples)]
        off = np.zeros(len(self.toggles), dtype=bool)
        self.outputs = [o.name for o in self.proto.graph.output if self._is_float_output(o)]
        self.reference = [self._run(f, off) for f in self.feeds]

    # ---------------------------------------------------------------- model building
    def _toggle(self, unit: int, owners: frozenset[int], every: bool = False) -> int:
        t = Toggle(unit, owners, every)
        if t not in self._toggle_index:
            self._toggle_index[t] = len(self.toggles)
            self.toggles.append(t)
        return self._toggle_index[t]

    def _build(self) -> None:
        q = self.q
        g = q.g
        try:
            self.proto = lower_model(q.ctx.model)
        except EncodeError:
            raise PassError("target-sqnr cannot simulate a model above 2 GB") from None
        gp = self.proto.graph
        nodes = list(g)
        if len(nodes) != len(gp.node):
            raise PassError("target-sqnr: the lowered model does not match the graph")
        taken = {v for n in gp.node for v in (*n.input, *n.output)}
        taken |= {t.name for t in gp.initializer} | {i.name for i in gp.input}
        counter = iter(range(1 << 62))

        def fresh(hint: str) -> str:
            while True:
                name = f"{_PREFIX}{hint}.{next(counter)}"
                if name not in taken:
                    taken.add(name)
                    return name

        inits: list[onnx.TensorProto] = []

        def const(arr: np.ndarray, hint: str) -> str:
            name = fresh(hint)
            inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            return name

        flags = fresh("flags")
        prologue: list[onnx.NodeProto] = []
        before: dict[int, list[onnx.NodeProto]] = {}  # node index -> nodes to emit before it
        after: dict[int, list[onnx.NodeProto]] = {}  # node index -> nodes to emit after it
        index = {n: i for i, n in enumerate(nodes)}
        flag_names: dict[int, str] = {}

        def flag(t: int) -> str:
            if t not in flag_names:
                out = fresh("flag")
                idx = const(np.array(t, np.int64), "index")
                prologue.append(helper.make_node("Gather", [flags, idx], [out]))
                flag_names[t] = out
            return flag_names[t]

        def switch(
            cond: str,
            then: list[onnx.NodeProto],
            then_out: list[str],
            other: list[onnx.NodeProto],
            other_out: list[str],
            outs: list[str],
        ) -> onnx.NodeProto:
            # an If runs only the branch taken and passes tensors through without copying:
            # much faster than Where with a scalar condition, and exact
            def branch(nodes: list[onnx.NodeProto], names: list[str]) -> onnx.GraphProto:
                values = [
                    helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names
                ]
                return helper.make_graph(nodes, fresh("branch"), [], values)

            return helper.make_node(
                "If",
                [cond],
                outs,
                then_branch=branch(then, then_out),
                else_branch=branch(other, other_out),
            )

        def quantizer(cond: str, src: str, scale: str, zp: str, out: str) -> onnx.NodeProto:
            qn, dqn, same = fresh("q"), fresh("dq"), fresh("float")
            return switch(
                cond,
                [
                    helper.make_node("QuantizeLinear", [src, scale, zp], [qn]),
                    helper.make_node("DequantizeLinear", [qn, scale, zp], [dqn]),
                ],
                [dqn],
                [helper.make_node("Identity", [src], [same])],
                [same],
                [out],
            )

        # linear ops' weights and integer ops' constant operands: node index -> (toggle,
        # inputs when quantized, inputs when float)
        wrap: dict[int, tuple[int, dict[int, str], dict[int, str]]] = {}

        def emit_after(v: Value, *made: onnx.NodeProto) -> None:
            p = v.producer
            if p is not None and p in index:
                after.setdefault(index[p], []).extend(made)
            else:
                prologue.extend(made)

        # units: one per parameter class (tensors sharing one QParams), one per group's
        # weights and constant operands
        class_unit: dict[int, int] = {}
        weight_unit: dict[int, int] = {}

        def unit_of_class(qp: QParams, v: Value) -> int:
            if id(qp) not in class_unit:
                class_unit[id(qp)] = len(self.units)
                self.units.append(f"quantizer of {v.name!r}")
            return class_unit[id(qp)]

        def unit_of_weights(gid: int) -> int:
            if gid not in weight_unit:
                weight_unit[gid] = len(self.units)
                self.units.append(f"weights of {self.groups[gid][0].describe()}")
            return weight_unit[gid]

        class_owners: dict[int, set[int]] = {}
        for v in self.tensors:
            qp = self.qparams[v]
            owners = class_owners.setdefault(id(qp), set())
            p = v.producer
            if q.quantized(p) and q.kind[p] is not Kind.SHARED and not q.internal(v):
                owners.add(self.group_of[p])
            for c in v.consumers():
                if q.quantized(c) and q.kind[c] is not Kind.SHARED:
                    owners.add(self.group_of[c])

        rename: dict[str, str] = {}  # graph outputs whose producer now writes a float copy
        replaced: dict[tuple[int, int], str] = {}  # (node index, input index) -> new input
        has_subgraphs = any(n.subgraphs() for n in nodes)
        for v in self.tensors:
            qp = self.qparams[v]
            if v.const is not None and not v.is_graph_input:
                self._constant_operand(v, qp, index, wrap, const, unit_of_weights)
                continue
            producer_q = q.quantized(v.producer) and not q.internal(v)
            shared = v.producer is not None and q.kind.get(v.producer) is Kind.SHARED
            cls = frozenset(class_owners[id(qp)])
            edges = []
            for use in v.uses:
                c = use.node
                if not producer_q and not q.quantized(c):
                    continue
                if c not in index:  # read inside a subgraph: left float in the simulation
                    continue
                if shared or q.kind.get(c) is Kind.SHARED:
                    owners = cls
                else:
                    owners = frozenset(
                        ([self.group_of[v.producer]] if producer_q else [])
                        + ([self.group_of[c]] if q.quantized(c) else [])
                    )
                edges.append((use, owners))
            to_output = v.is_graph_output and producer_q and not has_subgraphs
            if not edges and not to_output:
                continue
            unit = unit_of_class(qp, v)
            src = v.name
            if to_output:
                src = rename[v.name] = fresh("float")
            scale = const(np.asarray(qp.scale, np.float32), "scale")
            zp = const(np.asarray(qp.zero_point), "zero_point")
            if to_output:
                owners = cls if shared else frozenset([self.group_of[v.producer]])
                t = flag(self._toggle(unit, owners))
                emit_after(v, quantizer(t, src, scale, zp, v.name))
            uncut = self.uncut.get(v)
            if uncut is not None:  # cut only while every consumer is integer
                consumers = frozenset(self.group_of[c] for c in v.consumers() if q.quantized(c))
                every = flag(self._toggle(unit, consumers, every=True))
                full_scale = const(np.asarray(uncut.scale, np.float32), "scale")
                full_zp = const(np.asarray(uncut.zero_point), "zero_point")
            for use, owners in edges:
                out = fresh("edge")
                k = index[use.node]
                t = flag(self._toggle(unit, owners))
                if uncut is None:
                    before.setdefault(k, []).append(quantizer(t, src, scale, zp, out))
                else:
                    cut_out, full_out = fresh("cut"), fresh("full")
                    choose = switch(
                        every,
                        [quantizer(t, src, scale, zp, cut_out)],
                        [cut_out],
                        [quantizer(t, src, full_scale, full_zp, full_out)],
                        [full_out],
                        [out],
                    )
                    before.setdefault(k, []).append(choose)
                replaced[(k, use.index)] = out

        # weights and biases of linear ops
        opset = g.opset_imports.get("", 0)
        originals = q.plan.float_bias
        for node in nodes:
            if q.kind.get(node) is not Kind.LINEAR:
                continue
            gid = self.group_of[node]
            t = self._toggle(unit_of_weights(gid), frozenset([gid]))
            _, on, off = wrap.setdefault(index[node], (t, {}, {}))
            for i, (ints, scale, zero, axis) in q.weight_arrays(node, self.qparams, opset).items():
                deq = _dequantize(ints, scale, zero, axis)
                on[i] = const(deq, "dequantized")
                if i == 2 and node in originals:  # bias correction: float ops keep the original
                    orig = originals[node]
                    off[i] = const(orig if orig is not None else np.zeros_like(deq), "bias")

        new_nodes: list[onnx.NodeProto] = []
        for k, np_ in enumerate(gp.node):
            new_nodes += before.get(k, [])
            n = onnx.NodeProto()
            n.CopyFrom(np_)
            for j, name in enumerate(n.input):
                if (k, j) in replaced:
                    n.input[j] = replaced[(k, j)]
                elif name in rename:
                    n.input[j] = rename[name]
            for j, name in enumerate(n.output):
                if name in rename:
                    n.output[j] = rename[name]
            if k in wrap:
                t, on, off = wrap[k]
                n = self._wrapped(n, flag(t), on, off, switch, fresh)
            new_nodes.append(n)
            new_nodes += after.get(k, [])
        del gp.node[:]
        gp.node.extend(prologue + new_nodes)  # the prologue last: emitting adds flags to it
        gp.initializer.extend(inits)
        gp.input.append(
            helper.make_tensor_value_info(flags, onnx.TensorProto.BOOL, [len(self.toggles)])
        )
        self.flags_name = flags
        if len(self.toggles) == 0:
            self.session = None
            return
        so = ort.SessionOptions()
        so.log_severity_level = 3
        try:
            data = self.proto.SerializeToString()
        except EncodeError:
            raise PassError("target-sqnr cannot simulate a model above 2 GB") from None
        self.session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])

    def _constant_operand(self, v, qp, index, wrap, const, unit_of) -> None:
        """A constant operand of an integer op (Add's bias), quantized at compile time as
        ``quantize`` does (uint8 even for int8 activations)."""
        q = self.q
        if qp.dtype is QDType.INT8:
            c = v.const.astype(np.float64)
            qp = compute_qparams(c.min(), c.max(), QDType.UINT8, symmetric=False)
        deq = _dequantize(quantize_array(v.const, qp), qp.scale, qp.zero_point, None)
        for use in v.uses:
            c = use.node
            gid = self.group_of.get(c)
            if not q.quantized(c) or c not in index or gid is None:
                continue
            t = self._toggle(unit_of(gid), frozenset([gid]))
            wrap.setdefault(index[c], (t, {}, {}))[1][use.index] = const(deq, "dequantized")

    @staticmethod
    def _wrapped(n: onnx.NodeProto, cond: str, on: dict, off: dict, switch, fresh):
        """``n`` as an If: its copy with quantized weights when ``cond``, its float copy else
        (only the branch taken runs)."""
        copies = []
        for subst in (on, off):
            c = onnx.NodeProto()
            c.CopyFrom(n)
            c.name = ""
            for j, name in subst.items():
                c.input[j] = name
            del c.output[:]
            c.output.extend(fresh("out") for _ in n.output)
            copies.append(c)
        a, b = copies
        return switch(cond, [a], list(a.output), [b], list(b.output), list(n.output))

    @staticmethod
    def _is_float_output(o: onnx.ValueInfoProto) -> bool:
        return o.type.tensor_type.elem_type in (
            onnx.TensorProto.FLOAT,
            onnx.TensorProto.FLOAT16,
            onnx.TensorProto.DOUBLE,
        )

    # ---------------------------------------------------------------- evaluation
    def _run(self, feed: dict[str, np.ndarray], flags: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.outputs, {**feed, self.flags_name: flags})

    def flags_for(self, reverted: set[int]) -> np.ndarray:
        return np.array(
            [
                not t.owners or (not t.owners & reverted if t.every else bool(t.owners - reverted))
                for t in self.toggles
            ],
            dtype=bool,
        )

    def sqnr(self, flags: np.ndarray) -> float:
        """The worst graph output's SQNR (dB) against FP32 over the samples."""
        energy = np.zeros((len(self.outputs), 2))
        for feed, ref in zip(self.feeds, self.reference, strict=True):
            for k, (r, got) in enumerate(zip(ref, self._run(feed, flags), strict=True)):
                energy[k] += _energies(r, got)
        return min((energy_db(s, e) for s, e in energy), default=float("inf"))

    def measure(self, proto: onnx.ModelProto) -> float:
        """The output SQNR of a real (quantized) model on the same samples."""
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(
            proto.SerializeToString(), so, providers=["CPUExecutionProvider"]
        )
        energy = np.zeros((len(self.outputs), 2))
        for feed, ref in zip(self.feeds, self.reference, strict=True):
            for k, (r, got) in enumerate(zip(ref, sess.run(self.outputs, feed), strict=True)):
                energy[k] += _energies(r, got)
        return min((energy_db(s, e) for s, e in energy), default=float("inf"))


def search_float(q, target: float, *, max_float: int, samples: int) -> Callable | None:
    """Choose the groups to keep in float (``q.forced_float``) for the accuracy target; notes
    and statistics go to ``q.result``. Returns a function measuring a lowered model's output
    SQNR on the same samples, or None when nothing was measured."""
    q.classify()
    sim = Simulation(q, samples)
    res = q.result
    if sim.session is None or not sim.outputs:
        res.note(f"accuracy target {target:g} dB: nothing quantized to measure")
        return None
    everything = set()
    current = sim.sqnr(sim.flags_for(everything))
    res.stats["target:sqnr-dB-all-quantized"] = round(current, 2)
    head = (
        f"accuracy target {target:g} dB (simulated on {samples} calibration samples): "
        f"{current:.2f} dB with everything quantized"
    )
    if current >= target:
        res.note(head + "; nothing kept in float")
        res.stats["target:float-groups"] = 0
        return sim.measure
    owners_of: dict[int, frozenset[int]] = {}
    for t in sim.toggles:
        owners_of[t.unit] = owners_of.get(t.unit, frozenset()) | t.owners
    res.note(head + f"; {len(sim.units)} error sources")
    evaluations = 0

    def alone(units: list[int]) -> float:
        nonlocal evaluations
        evaluations += 1
        wanted = set(units)
        return sim.sqnr(np.array([t.unit in wanted for t in sim.toggles], dtype=bool))

    reverted: set[int] = set()
    trials = 0
    for s_alone, u in _worst_first(len(sim.units), alone):
        if current >= target or trials >= 4 * max(max_float, 1):
            break
        if s_alone - current > _NEGLIGIBLE_DB:  # this and every later source are negligible
            break
        new = owners_of.get(u, frozenset()) - reverted
        if not new or len(reverted) + len(new) > max_float:
            continue
        trials += 1
        s = sim.sqnr(sim.flags_for(reverted | new))
        if s < current + _MIN_GAIN_DB:
            continue
        groups = " and ".join(describe_group(sim.groups[g]) for g in sorted(new))
        res.note(
            f"to float: {groups} ({sim.units[u]}, {s_alone:.2f} dB alone): "
            f"{current:.2f} -> {s:.2f} dB"
        )
        reverted |= new
        current = s
    res.note(f"{evaluations} simulated runs to rank error sources, {trials} to try steps")
    for gid in sorted(reverted):
        q.forced_float.update(sim.groups[gid])
    res.stats["target:float-groups"] = len(reverted)
    res.stats["target:sqnr-dB-simulated"] = round(current, 2)
    if current >= target:
        res.note(f"target reached: {current:.2f} dB with {len(reverted)} op groups in float")
    else:
        res.note(
            f"target not reached: {current:.2f} dB with {len(reverted)} op groups in float "
            f"(max-float = {max_float})"
        )
    return sim.measure


def _worst_first(n: int, alone: Callable[[list[int]], float]) -> Iterator[tuple[float, int]]:
    """Units ``0..n-1`` by their SQNR alone (``alone([u])``), worst first, measuring as few
    as the caller consumes.

    Quantization noise from independent sources adds up, so a block of units quantized
    together has an SQNR no higher than any of its members: blocks of about sqrt(n)
    neighbouring units are measured first, and a block is opened (its members measured one
    by one) only when it is the worst item left. A unit is yielded when no unopened block is
    worse, so the first few units cost about sqrt(n) runs each instead of n in all.
    """
    size = max(1, math.isqrt(n))
    heap: list[tuple[float, int, tuple[int, ...]]] = []
    for start in range(0, n, size):
        block = tuple(range(start, min(n, start + size)))
        s = alone(list(block))
        if s != float("inf"):
            heapq.heappush(heap, (s, block[0], block))
    while heap:
        s, first, block = heapq.heappop(heap)
        if len(block) == 1:  # a unit measured alone: nothing left is worse
            yield s, first
            continue
        for u in block:
            su = alone([u])
            if su != float("inf"):
                heapq.heappush(heap, (su, u, (u,)))


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int | None):
    """``f32(f32(q - zp) * scale)``, per channel along ``axis`` when ``scale`` is 1-d."""
    scale = np.asarray(scale, np.float32)
    zero = np.asarray(zero).astype(np.int64)
    if scale.ndim == 1:
        shape = [1] * q.ndim
        shape[axis % q.ndim] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((q.astype(np.int64) - zero).astype(np.float32) * scale).astype(np.float32)


def _energies(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    r = np.asarray(ref, dtype=np.float64)
    return np.array([np.sum(r**2), np.sum((r - np.asarray(got, dtype=np.float64)) ** 2)])
