"""``prune-magnitude``: unstructured pruning, the smallest weights set to zero.

Algebra. For each prunable weight ``W`` (Conv, ConvTranspose, Gemm, MatMul; biases are kept)
the ``k = floor(sparsity * size)`` entries of smallest ``|w|`` become 0 (scope ``layer``), or
the ``floor(sparsity * total)`` smallest across every selected weight (scope ``global``, one
threshold for all). Ties are broken by position, so the output is deterministic. Nothing else
changes: the model computes ``W' x + b`` with the zeroed ``W'``.

Zeros make the model compress better and let sparse kernels skip work, but no general runtime
skips them (onnxruntime does not): the model is as large and as slow as before. For a model
that really shrinks, use ``prune-channels``. Zeros survive INT8 quantization exactly
(symmetric weights have zero point 0).

Does not fire on weights that are not constant float tensors, on weights read by a node that
is not selected, or inside subgraphs. The report gives the achieved sparsity of each layer.
"""

from __future__ import annotations

import enum

import numpy as np

from qcc.errors import PassError
from qcc.ir import Graph
from qcc.pipeline import PassContext, PassResult, register_pass
from qcc.prune.weights import prunable_weights, replace_weight


class Scope(enum.Enum):
    LAYER = "layer"
    GLOBAL = "global"


@register_pass("prune-magnitude", selectable=True, overridable=True)
def prune_magnitude(
    graph: Graph, ctx: PassContext, *, sparsity: float = 0.5, scope: Scope = Scope.LAYER
) -> PassResult:
    """Set the smallest-magnitude weights of Conv/ConvTranspose/Gemm/MatMul layers to zero.

    With ``on``/``exclude``, only the selected layers are pruned; ``where`` clauses give
    layers their own sparsity (scope layer). The report lists the achieved sparsity per layer.

    Options:
        sparsity: fraction of weights to zero, in [0, 1).
        scope: layer (each weight reaches the sparsity) or global (one magnitude threshold
            across all selected weights, which reaches the sparsity overall).
    """
    targets = [sparsity] + [o["sparsity"] for _, o in ctx.overrides if "sparsity" in o]
    for s in targets:
        if not 0.0 <= s < 1.0:
            raise PassError(f"sparsity must be in [0, 1), got {s}")
    weights = prunable_weights(graph, ctx.selected)
    if not weights:
        if ctx.selection is not None:
            raise PassError("the selection holds no Conv/ConvTranspose/Gemm/MatMul weights")
        result = PassResult()
        result.note("no prunable weights")
        return result
    result = PassResult()
    masks: list[np.ndarray] = []
    if scope is Scope.LAYER:
        for w in weights:
            s = ctx.options_for(w.nodes[0], {"sparsity": sparsity})["sparsity"]
            mags = np.abs(w.array).reshape(-1)
            masks.append(_smallest(mags, int(np.floor(s * mags.size + 1e-9))))
    else:
        mags = np.concatenate([np.abs(w.array).reshape(-1) for w in weights])
        flat = _smallest(mags, int(np.floor(sparsity * mags.size + 1e-9)))
        offsets = np.cumsum([0] + [w.array.size for w in weights])
        masks = [flat[offsets[i] : offsets[i + 1]] for i in range(len(weights))]
    total = zeros = 0
    for w, mask in zip(weights, masks, strict=True):
        arr = w.array
        new = np.where(mask.reshape(arr.shape), np.zeros((), arr.dtype), arr)
        achieved = float(np.mean(new == 0))
        total += new.size
        zeros += int(np.sum(new == 0))
        if mask.any():
            replace_weight(graph, w, new)
            result.changed = True
        result.note(f"{w.name}: sparsity {achieved:.3f} ({new.size} weights)")
    result.stats.update(
        {
            "layers": len(weights),
            "weights": total,
            "zeros": zeros,
            "sparsity": round(zeros / total, 4),
        }
    )
    return result


def _smallest(mags: np.ndarray, k: int) -> np.ndarray:
    """A mask of the ``k`` smallest entries (ties: the earlier position goes first)."""
    mask = np.zeros(mags.size, dtype=bool)
    if k > 0:
        mask[np.argsort(mags, kind="stable")[:k]] = True
    return mask
