"""``prune-channels``: remove output channels of Conv/ConvTranspose/Gemm/MatMul from the graph.

Algebra. A layer ``y = W x + b`` whose output channel ``c`` is removed loses row ``c`` of
``W`` and ``b``; every op on the way to the next layers that mix channels keeps working on
fewer channels (activations, pooling, Resize, BatchNormalization and per-channel constants,
which are sliced, Concat, Split, Flatten/Reshape); the layers that read the channel lose the
matching input column(s) of their weights. The result computes exactly what the original
computes with channel ``c`` replaced by zero, so removing a channel whose values are all zero
(after the activation) changes nothing; in general the change is the contribution the channel
made to the next layers, which least-squares recovery (``recovery = least-squares``) fits back
into the kept channels' weights and the biases from the calibration data
(:mod:`qcc.prune.apply`). The model becomes smaller and faster in every runtime: no zeros are
left for a runtime to skip.

Which channels go together comes from the channel dependency analysis
(:mod:`qcc.prune.deps`): channels added in a residual ``Add``, multiplied in a
squeeze-excite ``Mul``, carried through a depthwise convolution, or at the same index of every
group of a grouped convolution, form one group and are removed together or not at all. A
*layer* is the set of groups produced by the same producing layers (a residual stream is one
layer). ``ratio`` is the fraction of each layer's groups to remove (``scope = layer``), or of
all prunable groups, ranked across layers (``scope = global``); a layer always keeps at least
one group.

Importance (``criterion``): ``l1``/``l2`` norm of the producing layers' output rows
(depthwise rows included); ``output-error``: the mean squared change each channel alone causes
in the outputs of the layers that read it (ConvTranspose included), on the calibration data,
relative to their output energy. The same ranking with or without recovery: a channel's
error after the least-squares fit (``||W_c||^2 / [G^-1]_cc``) assumes every other channel stays
to predict it, so channels that predict each other looked free and went together.

Does not fire on a group that is *blocked* (it reaches a graph output or input, an operator
the analysis does not understand, a Softmax over channels, a Shape, a tensor joined with
unmapped channels of the same size), or that would change the weights of a node the recipe
did not select (``on``/``exclude`` protect layers: ``exclude name("/head/*")``). Layers
without constant weights are left alone. Subgraphs are not pruned.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from qcc.errors import PassError
from qcc.ir import Graph, Node, Value, constant_value
from qcc.pipeline import DataUse, PassContext, PassResult, register_pass

if TYPE_CHECKING:  # qcc.prune is imported when the pass runs: every compile loads this module
    from qcc.prune.deps import ChannelGraph, Group
    from qcc.prune.stats import Moments

LINEAR_KINDS = ("conv", "convtranspose", "gemm", "matmul")  # consumers that mix channels


class Scope(enum.Enum):
    LAYER = "layer"
    GLOBAL = "global"


class Criterion(enum.Enum):
    L1 = "l1"
    L2 = "l2"
    OUTPUT_ERROR = "output-error"


class Recovery(enum.Enum):
    NONE = "none"
    LEAST_SQUARES = "least-squares"


def _data_use(options: Mapping[str, Any]) -> DataUse:
    if options.get("criterion") is Criterion.OUTPUT_ERROR:
        return DataUse.REQUIRED
    if options.get("recovery") is Recovery.LEAST_SQUARES:
        return DataUse.REQUIRED
    return DataUse.OPTIONAL  # sample shapes give the MAC count of dynamic-shape models


@register_pass("prune-channels", selectable=True, overridable=True, calibration=_data_use)
def prune_channels(
    graph: Graph,
    ctx: PassContext,
    *,
    ratio: float = 0.25,
    scope: Scope = Scope.LAYER,
    criterion: Criterion = Criterion.L2,
    recovery: Recovery = Recovery.NONE,
    multiple: int = 1,
    max_ratio: float = 0.9,
    max_rows: int = 4096,
    damping: float = 1e-3,
) -> PassResult:
    """Remove the least important output channels of Conv/ConvTranspose/Gemm/MatMul layers.

    Coupled channels (residual adds, concats, depthwise and grouped convolutions, flatten into
    a Gemm ...) are removed together; the model gets smaller and faster in every runtime. With
    ``on``/``exclude``, only the selected layers' weights may change (exclude the first conv or
    a head to protect it); ``where`` clauses set per-layer ratios (a layer takes the options of
    its first producing node). The report lists channels before and after per layer and the
    parameters, MACs and bytes of the model before and after.

    Options:
        ratio: fraction of channels to remove, in [0, 1): of each layer (scope layer) or of
            all prunable channels (scope global).
        scope: layer (every layer loses the same fraction) or global (channels ranked across
            layers, by importance relative to their layer).
        criterion: l1 or l2 (norm of the output weights), or output-error (the change of the
            next layers' outputs on the calibration data; needs calibration data).
        recovery: none, or least-squares (re-fit the layers reading removed channels on the
            calibration data; needs calibration data).
        multiple: keep a multiple of this many channel groups per layer (SIMD-friendly
            widths): the multiple nearest to what the ratio keeps, never more than the layer
            has (a layer of at most this many groups is left whole).
        max-ratio: with scope global, the largest fraction any one layer may lose.
        max-rows: positions per tensor and batch used for the statistics (subsampled).
        damping: ridge added to the least-squares fit, relative to the mean channel variance.
    """
    if not 0.0 <= ratio < 1.0:
        raise PassError(f"ratio must be in [0, 1), got {ratio}: a layer must keep a channel")
    if not 0.0 < max_ratio < 1.0:
        raise PassError(f"max-ratio must be in (0, 1), got {max_ratio}")
    if multiple < 1 or max_rows < 1 or damping < 0:
        raise PassError("multiple and max-rows must be at least 1, damping at least 0")
    for _, opts in ctx.overrides:
        r = opts.get("ratio", ratio)
        if not 0.0 <= r < 1.0:
            raise PassError(f"where-clause ratio must be in [0, 1), got {r}")
    result = PassResult()
    needs_data = criterion is Criterion.OUTPUT_ERROR or recovery is Recovery.LEAST_SQUARES
    data = ctx.session.calibration
    if needs_data and data is None:
        raise PassError(
            f"criterion {criterion.value} / recovery {recovery.value} need calibration data: "
            "give --calib PATH or a calibration { data ... } block"
        )
    from qcc.prune.apply import apply_pruning
    from qcc.prune.cost import model_cost
    from qcc.prune.deps import ChannelGraph
    from qcc.prune.stats import capture_moments

    shapes = None
    if data is not None:
        shapes = {k: v.shape for k, v in data.get(0).items()}
    before = model_cost(ctx.model, shapes)

    cg = ChannelGraph(graph)
    groups = cg.groups()
    order = {n: i for i, n in enumerate(graph)}
    layers: dict[tuple[Node, ...], list[Group]] = {}
    blocked = 0
    for grp in groups.values():
        if grp.blocked or not grp.sources:
            blocked += 1
            continue
        if not all(ctx.selected(n) for n in grp.nodes):
            continue
        key = tuple(sorted(grp.sources, key=order.__getitem__))
        layers.setdefault(key, []).append(grp)
    if not layers:
        if ctx.selection is not None:
            raise PassError(
                "no channel group can be pruned among the selected nodes (every group is "
                "blocked or changes a node outside the selection)"
            )
        result.note("no prunable channel group")
        return result
    layers = dict(sorted(layers.items(), key=lambda kv: order[kv[0][0]]))

    moments: dict[Value, Moments] = {}
    if needs_data:
        wanted = _wanted_values(cg, layers)
        moments = capture_moments(ctx.model, ctx.session, wanted, max_rows=max_rows)
    score = _scores(cg, criterion, moments)
    group_score = {g.root: float(score[g.elements].sum()) for grps in layers.values() for g in grps}

    chosen: set[int] = set()
    if scope is Scope.LAYER:
        for key, grps in layers.items():
            r = ctx.options_for(key[0], {"ratio": ratio})["ratio"]
            n = len(grps)
            k = _count(n, r, multiple)
            ranked = sorted(grps, key=lambda g: (group_score[g.root], g.root))
            chosen.update(g.root for g in ranked[:k])
    else:
        cands = []
        for grps in layers.values():
            mean = np.mean([group_score[g.root] for g in grps]) or 1.0
            norm = 1.0 if criterion is Criterion.OUTPUT_ERROR else mean
            cands += [(group_score[g.root] / norm, g.root, id(grps)) for g in grps]
        cap = {id(grps): _count(len(grps), max_ratio, 1) for grps in layers.values()}
        total = math.floor(ratio * len(cands) + 1e-9)
        taken: dict[int, int] = {}
        for _, root, lid in sorted(cands):
            if len(chosen) >= total:
                break
            if taken.get(lid, 0) < cap[lid]:
                chosen.add(root)
                taken[lid] = taken.get(lid, 0) + 1

    roots = cg.roots()
    removed = np.isin(roots, np.fromiter(chosen, dtype=np.int64, count=len(chosen)))
    _keep_every_tensor_nonempty(cg, removed, roots)
    if not removed.any():
        result.note("the ratio removes no channel group")
        return result

    channels_before = {key: _channels(cg, key) for key in layers}
    applied = apply_pruning(
        graph,
        cg,
        removed,
        moments=moments if recovery is Recovery.LEAST_SQUARES else None,
        damping=damping,
    )
    after = model_cost(ctx.model, shapes)

    result.changed = True
    total_before = sum(channels_before.values())
    gone_groups = {int(r) for r in np.unique(roots[removed])}
    for key, grps in layers.items():
        n_gone = sum(1 for g in grps if g.root in gone_groups)
        kept_channels = _channels(cg, key, removed)
        name = key[0].name or key[0].describe()
        more = f" (+{len(key) - 1} coupled)" if len(key) > 1 else ""
        result.note(
            f"{name}{more}: {channels_before[key]} -> {kept_channels} channels "
            f"({n_gone}/{len(grps)} groups)"
        )
    total_after = sum(_channels(cg, key, removed) for key in layers)
    result.stats.update(
        {
            "layers": len(layers),
            "groups-removed": len(gone_groups),
            "groups-blocked": blocked,
            "channels-before": total_before,
            "channels-after": total_after,
            "params-before": before.params,
            "params-after": after.params,
            "bytes-before": before.bytes,
            "bytes-after": after.bytes,
        }
    )
    if before.macs is not None and after.macs is not None:
        result.stats["macs-before"] = before.macs
        result.stats["macs-after"] = after.macs
    if applied.refits:
        sig = [r.error_before for r in applied.refits]
        fit = [r.error_after for r in applied.refits]
        result.stats["refitted-layers"] = len(applied.refits)
        result.stats["rel-error-before-fit"] = round(float(np.mean(sig)), 6)
        result.stats["rel-error-after-fit"] = round(float(np.mean(fit)), 6)
        for r in applied.refits:
            result.note(
                f"refit {r.node.name or r.node.describe()}: {r.removed} inputs removed, "
                f"relative output error {r.error_before:.4g} -> {r.error_after:.4g}"
            )
    for text in applied.not_refitted:
        result.note(f"not re-fitted: {text}")
    ctx.log.info("prune-channels: %s", result.stats)
    return result


def _count(n: int, ratio: float, multiple: int) -> int:
    """How many of ``n`` groups to remove: ``floor(ratio * n)``, keeping at least one; with
    ``multiple``, the kept count is the multiple nearest to ``n - floor(ratio * n)`` (halves
    round up; at least one multiple, at most ``n``), so the layers as a whole still lose about
    ``ratio`` of their channels."""
    k = min(math.floor(ratio * n + 1e-9), n - 1)
    keep = n - k
    if multiple > 1:
        keep = min(n, max(multiple, math.floor(keep / multiple + 0.5) * multiple))
    return max(0, n - keep)


def _channels(cg: ChannelGraph, key: tuple[Node, ...], removed: np.ndarray | None = None) -> int:
    """Output channels of the layer's first producing node (after removal, if given)."""
    src = next(s for s in cg.sources if s.node is key[0])
    return len(src.ids) if removed is None else int((~removed[src.ids]).sum())


def _wanted_values(
    cg: ChannelGraph, layers: dict[tuple[Node, ...], list[Group]]
) -> list[tuple[Value, int]]:
    live = np.zeros(cg.size, dtype=bool)
    for grps in layers.values():
        for g in grps:
            live[g.elements] = True
    out: dict[Value, int] = {}
    for c in cg.consumers:
        if c.kind in LINEAR_KINDS and live[c.ids].any():
            out.setdefault(c.value, cg.maps[c.value].axis)
    return list(out.items())


def _scores(cg: ChannelGraph, criterion: Criterion, moments: dict[Value, Moments]) -> np.ndarray:
    """Importance of every element. ``output-error``: the mean squared change of the next
    layers' outputs when the channel alone is zeroed, relative to their output energy, with or
    without recovery (what recovery can win back is not credited: see docs/pruning.md)."""
    from qcc.prune.apply import weight_matrix

    score = np.zeros(cg.size)
    if criterion is not Criterion.OUTPUT_ERROR:
        p = 1 if criterion is Criterion.L1 else 2
        for s in cg.sources:
            np.add.at(score, s.ids, _row_norms(s.node, p))
        for d in cg.depthwise:
            w = np.asarray(constant_value(d.node.input(1)), np.float64)
            np.add.at(score, d.out_ids, _norm(w.reshape(w.shape[0], -1), p))
        return score
    for c in cg.consumers:
        if c.kind not in LINEAR_KINDS:
            continue
        w = np.asarray(constant_value(c.node.input(1)), np.float64)
        wt = weight_matrix(c.node, c.kind, w)
        col = np.einsum("oit,oit->i", wt, wt)
        mom = moments.get(c.value)
        if mom is None or mom.n != len(c.ids):
            energy, signal = np.ones(len(c.ids)), float(col.sum())
        else:
            x = mom.mean_gram()[:-1, :-1]
            signal = float(np.einsum("oit,ij,ojt->", wt, x, wt))
            energy = np.diag(x)
        np.add.at(score, c.ids, col * energy / max(signal, 1e-30))
    return score


def _row_norms(node: Node, p: int) -> np.ndarray:
    w = np.asarray(constant_value(node.input(1)), np.float64)
    if node.op_type == "Conv":
        rows = w.reshape(w.shape[0], -1)
    elif node.op_type == "ConvTranspose":
        rows = np.moveaxis(w, 1, 0).reshape(w.shape[1], -1)
    elif node.op_type == "Gemm" and node.attr("transB", 0):
        rows = w
    else:
        rows = w.T
    return _norm(rows, p)


def _norm(rows: np.ndarray, p: int) -> np.ndarray:
    return np.abs(rows).sum(axis=1) if p == 1 else np.sqrt((rows**2).sum(axis=1))


def _keep_every_tensor_nonempty(cg: ChannelGraph, removed: np.ndarray, roots: np.ndarray) -> None:
    """A Split output or Concat part whose every channel would go keeps its first group."""
    for m in cg.maps.values():
        if len(m.ids) and removed[m.ids].all():
            removed[roots == roots[m.ids[0]]] = False
