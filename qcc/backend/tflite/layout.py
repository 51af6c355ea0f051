"""Layout algebra of the NCHW -> NHWC lowering: permutations, and when a reshape is free.

Every lowered activation keeps its logical (ONNX) shape plus a permutation ``perm``: the
physical tensor in the .tflite is ``logical.transpose(perm)``, i.e. physical axis ``j`` holds
logical axis ``perm[j]``. Rank-4 activations start as NHWC (``perm = (0, 2, 3, 1)``); an ONNX
Transpose only changes ``perm`` (no op is written); an op that needs a particular physical
order gets a TRANSPOSE only when the permutations disagree on the axes that are not of size 1
(when they agree, a RESHAPE moves the unit axes and no data moves).

A Reshape (Flatten, Squeeze, Unsqueeze) is free when the input's physical order keeps every
group of merged or split axes together and in logical order; the output then gets the
permutation that lists those groups in the same physical order. Only a reshape that really
mixes axes across the permutation (flattening ``[N, C, H, W]`` from NHWC with ``H*W > 1``)
needs the input transposed back to logical order first.
"""

from __future__ import annotations

from collections.abc import Sequence

NHWC = (0, 2, 3, 1)


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def preferred(rank: int) -> tuple[int, ...]:
    """The physical order a fresh activation of ``rank`` gets: NHWC for rank 4, else logical."""
    return NHWC if rank == 4 else identity(rank)


def physical(shape: Sequence[int], perm: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(shape[p]) for p in perm)


def transpose_param(src: Sequence[int], dst: Sequence[int]) -> tuple[int, ...]:
    """The TRANSPOSE ``perm`` input that takes physical order ``src`` to physical order ``dst``."""
    return tuple(list(src).index(a) for a in dst)


def nonunit_order(shape: Sequence[int], perm: Sequence[int]) -> tuple[int, ...]:
    """The logical axes of size != 1 in physical order."""
    return tuple(a for a in perm if shape[a] != 1)


def same_data_order(shape: Sequence[int], a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether physical orders ``a`` and ``b`` hold the elements in the same memory order."""
    return nonunit_order(shape, a) == nonunit_order(shape, b)


def _groups(
    in_shape: Sequence[int], out_shape: Sequence[int]
) -> list[tuple[list[int], list[int]]] | None:
    """Split a reshape into groups (input axes, output axes) of equal element count."""
    ins = [a for a, d in enumerate(in_shape) if d != 1]
    outs = [a for a, d in enumerate(out_shape) if d != 1]
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(ins) and j < len(outs):
        gi, pi = [ins[i]], in_shape[ins[i]]
        go, po = [outs[j]], out_shape[outs[j]]
        i, j = i + 1, j + 1
        while pi != po:
            if pi < po:
                if i == len(ins):
                    return None
                gi.append(ins[i])
                pi *= in_shape[ins[i]]
                i += 1
            else:
                if j == len(outs):
                    return None
                go.append(outs[j])
                po *= out_shape[outs[j]]
                j += 1
        groups.append((gi, go))
    if i < len(ins) or j < len(outs):
        return None
    return groups


def reshape_perm(
    in_shape: Sequence[int],
    in_perm: Sequence[int],
    out_shape: Sequence[int],
) -> tuple[int, ...] | None:
    """The output permutation that makes a reshape free, or None when data must move first."""
    if 0 in in_shape or 0 in out_shape:
        return None
    groups = _groups(in_shape, out_shape)
    if groups is None:
        return None
    seq = list(nonunit_order(in_shape, in_perm))
    desired: list[int] = []
    pos = 0
    by_first = {g[0][0]: g for g in groups}
    while pos < len(seq):
        g = by_first.get(seq[pos])
        if g is None or seq[pos : pos + len(g[0])] != g[0]:
            return None
        desired.extend(g[1])
        pos += len(g[0])
    pref = list(preferred(len(out_shape)))
    if [a for a in pref if out_shape[a] != 1] == desired:
        return tuple(pref)
    it = iter(desired)
    return tuple(next(it) if out_shape[a] != 1 else a for a in pref)


def remove_axes(perm: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    """The permutation left when logical ``axes`` are dropped (and the others renumbered)."""
    drop = set(axes)
    keep = [a for a in range(len(perm)) if a not in drop]
    renum = {a: i for i, a in enumerate(keep)}
    return tuple(renum[a] for a in perm if a not in drop)
