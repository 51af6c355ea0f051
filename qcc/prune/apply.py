"""Remove channel groups from a graph, optionally re-fitting the layers that read them.

Given the :class:`~qcc.prune.deps.ChannelGraph` of a graph and the set of elements to remove,
every place the analysis recorded is rewritten: output rows of the producing layers' weights
and biases, input columns of the consuming layers' weights, depthwise weights and their
``group``, per-channel constants of element-wise ops and BatchNormalization, Split sizes and
explicit Reshape dimensions; the shapes of every tensor on the way are updated. New constants
replace old ones (constants are never changed in place).

Least-squares recovery. A consumer computes ``y = W x + b`` from the channel vector ``x`` at
each position. With ``x`` split into kept channels ``K`` and removed ones ``P`` and the second
moments ``G`` of ``[x, 1]`` on the calibration data, the removed channels are predicted from
the kept ones by least squares, ``x_P ~ M x_K + m0`` with ``M = C_PK (C_KK + l I)^-1`` and
``m0 = mu_P - M mu_K`` (``C`` the covariances, ``mu`` the means, ``l`` a small ridge that
shrinks ``M`` but not the mean). Substituting gives ``W_K' = W_K + W_P M`` and ``b' = b + W_P
m0``: for 1x1 convolutions, Gemm and MatMul this is exactly the least-squares fit of the
layer's outputs on the calibration set; for a ``k x k`` convolution it is applied at each
kernel tap (cross-tap correlations are not modelled, and ``m0`` is also added where the kernel
reads zero padding). A ConvTranspose is fitted the same way per tap, through the origin
(``m0 = 0``): a constant input reaches each output pixel through a different set of taps, which
no bias can express. Grouped convolutions are sliced but not re-fitted. The output error
(relative mean square, per position) before and after the fit is reported for every re-fitted
layer.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qcc.ir import Graph, Node, Value, constant_value, derived_origin
from qcc.prune.deps import ChannelGraph, Consumer
from qcc.prune.stats import Moments


@dataclasses.dataclass
class Refit:
    """The relative output error of one consumer without and with least-squares recovery."""

    node: Node
    removed: int
    error_before: float
    error_after: float


@dataclasses.dataclass
class ApplyResult:
    refits: list[Refit] = dataclasses.field(default_factory=list)
    not_refitted: list[str] = dataclasses.field(default_factory=list)


def weight_matrix(node: Node, kind: str, w: np.ndarray) -> np.ndarray:
    """``w`` as ``[outputs, inputs, taps]`` for a consumer of ``kind``."""
    if kind == "conv":
        return w.reshape(w.shape[0], w.shape[1], -1)
    if kind == "convtranspose":  # [inputs, outputs, k...]
        return np.swapaxes(w, 0, 1).reshape(w.shape[1], w.shape[0], -1)
    if kind == "gemm" and node.attr("transB", 0):
        return w[:, :, None]
    return w.T[:, :, None]  # gemm (B is [K, N]) and matmul


def _from_matrix(node: Node, kind: str, wt: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "conv":
        return wt.reshape(shape)
    if kind == "convtranspose":
        return np.swapaxes(wt.reshape((shape[1], shape[0], *shape[2:])), 0, 1)
    if kind == "gemm" and node.attr("transB", 0):
        return wt[:, :, 0]
    return wt[:, :, 0].T


def refit_solution(
    mom: Moments, keep: np.ndarray, damping: float, intercept: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(M, m0, G_PP, R)``: the predictor ``x_P ~ M x_K + m0`` of removed channels from kept
    ones, the second moment of the removed channels, and the residual second moment after
    prediction.

    ``M = C_PK (C_KK + l I)^-1`` and ``m0 = mu_P - M mu_K`` with ``C`` the covariances: the
    ridge ``l`` (``damping`` times the mean variance of the kept channels) shrinks ``M``, never
    the mean. Without ``intercept`` the fit goes through the origin (``m0 = 0``, ``mu = 0``:
    ``C`` are then second moments)."""
    g = mom.mean_gram()
    n = mom.n
    kept, gone = np.flatnonzero(keep), np.flatnonzero(~keep)
    mu = g[-1, :-1] if intercept else np.zeros(n)
    c_kk = g[np.ix_(kept, kept)] - np.outer(mu[kept], mu[kept])
    c_kp = g[np.ix_(kept, gone)] - np.outer(mu[kept], mu[gone])
    scale = float(np.trace(c_kk)) / len(kept) if len(kept) else 0.0
    ridge = damping * scale + 1e-12 * max(scale, 1e-30)
    mat = np.linalg.solve(c_kk + ridge * np.eye(len(kept)), c_kp).T
    m0 = mu[gone] - mat @ mu[kept]
    # the residual x_P - M x_K - m0 as coef^T [x_K, x_P, 1]
    coef = np.concatenate([-mat.T, np.eye(len(gone)), -m0[None, :]], axis=0)
    order = np.concatenate([kept, gone, [n]])
    resid = coef.T @ g[np.ix_(order, order)] @ coef
    return mat, m0, g[np.ix_(gone, gone)], resid


def apply_pruning(
    graph: Graph,
    cg: ChannelGraph,
    removed: np.ndarray,
    *,
    moments: dict[Value, Moments] | None = None,
    damping: float = 1e-3,
) -> ApplyResult:
    """Remove the elements flagged in ``removed`` (bool per element of ``cg``) from ``graph``.

    With ``moments`` (per consumer input), consumers are re-fitted by least squares.
    """
    result = ApplyResult()

    def keep_of(ids: np.ndarray) -> np.ndarray:
        return ~removed[ids]

    for v, m in cg.maps.items():  # first: replacement values inherit the new shapes
        if v.shape is not None and m.axis < len(v.shape):
            dims = list(v.shape)
            dims[m.axis] = int(keep_of(m.ids).sum())
            v.shape = tuple(dims)
    out_keep: dict[Node, np.ndarray] = {}
    for s in cg.sources:
        out_keep[s.node] = keep_of(s.ids)
    for d in cg.depthwise:
        out_keep[d.node] = keep_of(d.out_ids)
    consumers: dict[Node, Consumer] = {c.node: c for c in cg.consumers}
    touched = set(out_keep) | set(consumers)
    for node in [n for n in graph if n in touched]:
        c = consumers.get(node)
        in_keep = keep_of(c.ids) if c is not None else None
        ok = out_keep.get(node)
        if (in_keep is None or in_keep.all()) and (ok is None or ok.all()):
            continue
        mom = moments.get(c.value) if (moments is not None and c is not None) else None
        _rewrite_linear(graph, node, c, in_keep, ok, mom, damping, result, moments is not None)
    for cs in cg.consts:
        keep = keep_of(cs.ids)
        if keep.all():
            continue
        v = cs.node.input(cs.index)
        arr = constant_value(v)
        new = graph.add_constant(np.take(arr, np.flatnonzero(keep), axis=cs.axis), v.name)
        cs.node.replace_input(cs.index, new)
        graph.remove_unused_constants([v])
    for sp in cg.splits:
        sizes = [int(keep_of(ids).sum()) for ids in sp.outputs]
        if sp.node.attr("split") is not None:
            sp.node.set_attr("split", sizes)
        else:
            old = sp.node.input(1)
            sp.node.replace_input(1, graph.add_constant(np.array(sizes, np.int64), old.name))
            graph.remove_unused_constants([old])
    for rs in cg.reshapes:
        old = rs.node.input(1)
        shape = np.array(constant_value(old), dtype=np.int64).copy()
        shape[rs.index] = int(keep_of(rs.ids).sum())
        rs.node.replace_input(1, graph.add_constant(shape, old.name))
        graph.remove_unused_constants([old])
    return result


def _rewrite_linear(
    graph: Graph,
    node: Node,
    consumer: Consumer | None,
    in_keep: np.ndarray | None,
    out_keep: np.ndarray | None,
    mom: Moments | None,
    damping: float,
    result: ApplyResult,
    refit: bool,
) -> None:
    op = node.op_type
    w_val = node.input(1)
    w = np.asarray(constant_value(w_val), dtype=np.float64)
    dtype = constant_value(w_val).dtype
    b_val = node.input(2) if op != "MatMul" else None
    b = constant_value(b_val) if b_val is not None else None
    b = None if b is None else np.asarray(b, dtype=np.float64)
    delta_b: np.ndarray | None = None  # bias change in original output indexing
    kind = consumer.kind if consumer is not None else None

    # 1. input channels (re-fit first, on the full weights)
    if in_keep is not None and not in_keep.all():
        if kind in ("conv", "convtranspose", "gemm", "matmul") and refit:
            if mom is None or mom.n != len(in_keep):
                result.not_refitted.append(f"{node.describe()}: no statistics for its input")
            else:
                full = weight_matrix(node, kind, w)
                gone = np.flatnonzero(~in_keep)
                w_p = full[:, gone, :]
                h = np.einsum("oit,ojt->ij", full, full)
                h_pp = h[np.ix_(gone, gone)]
                # a constant input of a transposed convolution reaches each output through
                # a different set of taps: not a bias, so its fit has no intercept
                icpt = kind != "convtranspose"
                mat, m0, g_pp, resid = refit_solution(mom, in_keep, damping, icpt)
                wt = full.copy()
                wt[:, in_keep, :] += np.einsum("opt,pk->okt", w_p, mat)
                if icpt:
                    delta_b = np.einsum("opt,p->o", w_p, m0)
                g_all = mom.mean_gram()[:-1, :-1]
                signal = float(np.sum(h * g_all))
                before = float(np.sum(h_pp * g_pp))
                after = float(np.sum(h_pp * resid))
                denom = max(signal, 1e-30)
                result.refits.append(
                    Refit(node, len(gone), before / denom, max(after, 0.0) / denom)
                )
                w = _from_matrix(node, kind, wt, w.shape)
        elif refit and kind == "grouped":
            result.not_refitted.append(
                f"{node.describe()}: {kind} layers are sliced, not re-fitted"
            )
        if kind in ("conv", "grouped"):
            g = int(node.attr("group", 1))
            local = in_keep.reshape(g, -1)[0] if kind == "grouped" else in_keep
            w = w[:, local]
        elif kind == "convtranspose":
            w = w[in_keep]
        elif kind == "gemm" and node.attr("transB", 0):
            w = w[:, in_keep]
        else:  # gemm without transB, matmul
            w = w[in_keep]

    # 2. output channels
    n_out = _out_channels(node, w)
    if delta_b is not None:
        b = _bias_vector(node, b, n_out) + delta_b
    if out_keep is not None and not out_keep.all():
        keep = np.flatnonzero(out_keep)
        if op == "Conv":
            w = w[keep]
            if int(node.attr("group", 1)) > 1 and w.shape[1] == 1 and kind is None:
                node.set_attr("group", int(len(keep) // max(1, _multiplier(node, out_keep))))
        elif op == "ConvTranspose":
            w = w[:, keep]
        elif op == "Gemm":
            w = w[keep] if node.attr("transB", 0) else w[:, keep]
        else:
            w = w[:, keep]
        if b is not None:
            b = _slice_bias(node, b, keep, n_out)

    origin_name = w_val.name
    new_w = graph.add_constant(w.astype(dtype), origin_name)
    node.replace_input(1, new_w)
    old = [w_val]
    if b is not None and op != "MatMul":
        new_b = graph.add_constant(b.astype(dtype), b_val.name if b_val is not None else "bias")
        if b_val is None:
            while len(node.inputs) < 2:
                node.append_input(None)
            node.append_input(new_b)
        else:
            node.replace_input(2, new_b)
            old.append(b_val)
    elif b is not None:  # MatMul: the fitted bias goes into an Add after it
        _add_bias_after(graph, node, b.astype(dtype))
    graph.remove_unused_constants(old)


def _multiplier(node: Node, out_keep: np.ndarray) -> int:
    w = constant_value(node.input(1))
    g = int(node.attr("group", 1))
    return int(w.shape[0] // g)


def _out_channels(node: Node, w: np.ndarray) -> int:
    if node.op_type == "Conv":
        return int(w.shape[0])
    if node.op_type == "ConvTranspose":
        return int(w.shape[1]) * int(node.attr("group", 1))
    if node.op_type == "Gemm":
        return int(w.shape[0] if node.attr("transB", 0) else w.shape[1])
    return int(w.shape[1])


def _bias_vector(node: Node, b: np.ndarray | None, n: int) -> np.ndarray:
    """The bias as a length-``n`` vector (Gemm's C broadcast; beta applied and reset)."""
    if b is None:
        return np.zeros(n)
    if node.op_type == "Gemm":
        beta = float(node.attr("beta", 1.0))
        node.attrs.pop("beta", None)
        return np.broadcast_to(beta * b.reshape(-1) if b.size > 1 else beta * b.reshape(1), (n,))
    return b.reshape(-1)


def _slice_bias(node: Node, b: np.ndarray, keep: np.ndarray, n: int) -> np.ndarray:
    if node.op_type == "Gemm":
        if b.size == 1:
            return b
        if b.ndim == 2:
            return b[:, keep]
    return b.reshape(-1)[keep] if b.size == n else b


def _add_bias_after(graph: Graph, node: Node, bias: np.ndarray) -> None:
    """Put ``y + bias`` behind MatMul ``node`` (which has no bias input)."""
    y = node.output
    mm = Node("MatMul", list(node.inputs), name=node.name, origin=derived_origin(node))
    c = graph.add_constant(bias, f"{node.name or 'matmul'}_bias")
    add = Node(
        "Add",
        [mm.output, c],
        name=graph.names.fresh_node(f"{node.name or 'matmul'}/refit_bias"),
        origin=derived_origin(node),
    )
    graph.insert_before(node, mm, add)
    mm.output.shape, mm.output.dtype = y.shape, y.dtype
    graph.replace_value(y, add.output, keep_name=True)
    graph.remove(node)
