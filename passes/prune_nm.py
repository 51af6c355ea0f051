"""``prune-nm``: N:M semi-structured sparsity along the input-channel axis.

Algebra. For each prunable weight, every run of ``m`` consecutive input channels (the axis the
layer sums over with its input's channels: 1 for Conv, 0 for ConvTranspose, K for Gemm and
MatMul; see :mod:`qcc.prune.weights`) at a fixed output channel and kernel tap keeps its ``n``
largest-magnitude weights and zeroes the others (ties: the earlier channel is kept). This is the
2:4 pattern NVIDIA's sparse tensor cores run at up to twice the speed (TensorRT, ``ASP``), and
what other N:M kernels expect. Biases are kept; nothing else changes.

Does not fire on a weight whose input-channel count per group is not a multiple of ``m``
(depthwise convolutions have 1), that is read along different axes by different nodes, that
is not a constant float tensor, or that a non-selected node reads. Like every unstructured
pattern it does not shrink the file or speed up onnxruntime on CPU.
"""

from __future__ import annotations

import numpy as np

from qcc.errors import PassError
from qcc.ir import Graph
from qcc.pipeline import PassContext, PassResult, register_pass
from qcc.prune.weights import prunable_weights, replace_weight


@register_pass("prune-nm", selectable=True)
def prune_nm(graph: Graph, ctx: PassContext, *, n: int = 2, m: int = 4) -> PassResult:
    """Keep the n largest of every m consecutive input-channel weights (2:4 sparsity).

    With ``on``/``exclude``, only the selected layers are pruned. The report lists each layer
    and the layers skipped because their input channels are not a multiple of m.

    Options:
        n: weights kept in each group (1 <= n < m).
        m: group length along the input-channel axis.
    """
    if m < 2 or not 1 <= n < m:
        raise PassError(f"N:M needs 1 <= n < m and m >= 2, got n={n}, m={m}")
    weights = prunable_weights(graph, ctx.selected)
    if not weights and ctx.selection is not None:
        raise PassError("the selection holds no Conv/ConvTranspose/Gemm/MatMul weights")
    result = PassResult()
    pruned = 0
    for w in weights:
        arr = w.array
        axis = w.in_axis
        if axis < 0 or arr.shape[axis] % m:
            size = "mixed" if axis < 0 else arr.shape[axis]
            result.note(f"{w.name}: skipped, {size} input channels is not a multiple of {m}")
            result.stats["skipped"] = result.stats.get("skipped", 0) + 1
            continue
        moved = np.moveaxis(arr, axis, -1)
        groups = moved.reshape(-1, m)
        order = np.argsort(-np.abs(groups), axis=1, kind="stable")
        keep = np.zeros(groups.shape, dtype=bool)
        np.put_along_axis(keep, order[:, :n], True, axis=1)
        new = np.moveaxis(np.where(keep, groups, 0).reshape(moved.shape), -1, axis)
        replace_weight(graph, w, new.astype(arr.dtype))
        pruned += 1
        result.note(f"{w.name}: {n}:{m}, sparsity {float(np.mean(new == 0)):.3f}")
    if pruned:
        result.count("layers", pruned)
    return result
