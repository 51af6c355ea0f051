"""HistogramObserver.update against a frozen copy of its straightforward algorithm.

The observer takes shortcuts for speed (min and max from the tail, the tail gathered eight
values at a time, the bulk read off the sorted sample, reused scratch arrays). None of them
may change a result: ``counts``, ``exp``, ``min`` and ``max`` (to the bit, the sign of a zero
included) must equal those of the reference below, which is the observer as it was before
the shortcuts, on inputs chosen to break them.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcc.quant.observers import HistogramObserver

_F32_MAX = float(np.finfo(np.float32).max)


def _ref_stride(n: int, cap: int, period: int) -> int:
    if cap <= 0 or n <= 16 * cap:
        return 1
    s = max(2, -(-n // cap))
    while any(s % d == 0 for d in range(2, math.isqrt(s) + 1)) or period % s == 0:
        s += 1
    return s


class _Reference:
    """The histogram observer's update, binning and range growth, value by value as written
    before it was optimized (do not optimize this copy)."""

    def __init__(self, bins: int, values: int) -> None:
        self.bins, self.values = bins, values
        self.exp: int | None = None
        self.counts = np.zeros(2 * bins, dtype=np.int64)
        self.min, self.max = math.inf, -math.inf

    def _grow_to(self, exp: int) -> None:
        if self.exp is None:
            self.exp = exp
            return
        while self.exp < exp:
            idx = np.arange(-self.bins, self.bins)
            new = np.zeros_like(self.counts)
            np.add.at(new, (idx // 2) + self.bins, self.counts)
            self.counts = new
            self.exp += 1

    def _min_exp(self) -> int:
        e = -126
        while math.ldexp(self.bins, -e) > _F32_MAX:
            e += 1
        return e

    def update(self, x: np.ndarray, samples: int = 1) -> None:
        x = np.asarray(x, dtype=np.float32)
        period = int(x.shape[-1]) if x.ndim else 1
        x = x.reshape(-1)
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            x = x[np.isfinite(x)]
            if x.size == 0:
                return
            lo, hi = float(x.min()), float(x.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        amax = max(abs(lo), abs(hi))
        exp = max(math.frexp(amax)[1] if amax > 0 else -126, self._min_exp())
        self._grow_to(max(exp, self.exp if self.exp is not None else exp))
        stride = _ref_stride(x.size, self.values * samples, period)
        if stride == 1:
            self._bin(x, 1)
            return
        sample = x[stride // 2 :: stride]
        k = int(sample.size * 0.01 / 2)
        t_lo, t_hi = np.partition(sample, [k, sample.size - 1 - k])[[k, sample.size - 1 - k]]
        if lo < t_lo and hi > t_hi:
            tail = x[(x < t_lo) | (x > t_hi)]
        elif hi > t_hi:
            tail = x[x > t_hi]
        elif lo < t_lo:
            tail = x[x < t_lo]
        else:
            tail = x[:0]
        self._bin(tail, 1)
        self._bin(sample[(sample >= t_lo) & (sample <= t_hi)], stride)

    def _bin(self, x: np.ndarray, weight: int) -> None:
        if x.size == 0:
            return
        scaled = x * np.float32(math.ldexp(self.bins, -self.exp))
        scaled[(scaled == 0) & (x < 0)] = -1.0  # an underflow to -0.0: floor(x * B / R) is -1
        np.floor(scaled, out=scaled)
        idx = scaled.astype(np.intp)
        idx += self.bins
        counts = np.bincount(idx, minlength=2 * self.bins)
        self.counts += counts if weight == 1 else weight * counts


def _bits(v: float) -> bytes:
    return struct.pack("<d", v)


def _assert_same(batches, bins: int = 2048, values: int = 0, label: str = "") -> None:
    fast, ref = HistogramObserver(bins, values), _Reference(bins, values)
    for i, (x, samples) in enumerate(batches):
        fast.update(x, samples)
        ref.update(x, samples)
        where = f"{label} batch {i} ({np.asarray(x).dtype}, shape {np.shape(x)}, {samples=})"
        assert fast.exp == ref.exp, where
        assert np.array_equal(fast.counts, ref.counts), where
        assert _bits(fast.min) == _bits(ref.min) and _bits(fast.max) == _bits(ref.max), (
            f"{where}: min/max {fast.min!r}, {fast.max!r} against {ref.min!r}, {ref.max!r}"
        )


def _adversarial(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Batches of ``n`` values (about: some lengths are made odd on purpose)."""
    g = rng.standard_normal(n).astype(np.float32)
    relu = np.maximum(g, 0)
    signed_zeros = relu.copy()
    signed_zeros[rng.random(n) < 0.3] = -0.0
    few = rng.integers(-3, 4, n).astype(np.float32) * 0.5  # many values equal t_lo / t_hi
    edge = g.copy()
    edge[rng.integers(0, n, 3)] = 4.0  # the maximum exactly a power of two
    edge[rng.integers(0, n, 3)] = -8.0
    nan = g.copy()
    nan[rng.integers(0, n, 5)] = np.nan
    inf = g.copy()
    inf[rng.integers(0, n, 2)] = np.inf
    inf[rng.integers(0, n, 2)] = -np.inf
    nan_everywhere = g.copy()
    nan_everywhere[::7] = np.nan  # in the strided sample too
    tiny = (g * np.float32(1e-39)).astype(np.float32)  # subnormals
    tiny_mix = np.where(rng.random(n) < 0.5, tiny, np.float32(0.0)).astype(np.float32)
    neg_tiny = -np.abs(tiny)  # floor(x * scale) of a tiny negative: -1, or -0.0 if it underflows
    return {
        "normal": g,
        "positive": np.abs(g) + np.float32(0.25),
        "negative": -np.abs(g) - np.float32(1.0),
        "relu": relu,
        "signed zeros": signed_zeros,
        "negative relu": -relu,
        "negative signed zeros": -signed_zeros,
        "all zero": np.zeros(n, np.float32),
        "all negative zero": np.full(n, -0.0, np.float32),
        "constant": np.full(n, 3.0, np.float32),
        "few values": few,
        "power of two edge": edge,
        "nan": nan,
        "inf": inf,
        "nan everywhere": nan_everywhere,
        "all nan": np.full(n, np.nan, np.float32),
        "tiny": tiny,
        "tiny and zeros": tiny_mix,
        "negative tiny": neg_tiny,
        "huge": g * np.float32(1e37),
        "float32 max": np.concatenate([g[:-2], [_F32_MAX, -_F32_MAX]]).astype(np.float32),
        "one outlier": np.concatenate([g[:-1] * 0.01, [100.0]]).astype(np.float32),
        "odd length": g[: n - 5],
    }


@pytest.mark.parametrize("values", [0, 40, 4096])
@pytest.mark.parametrize("bins", [4, 256, 2048])
def test_every_adversarial_batch_alone(bins, values):
    rng = np.random.default_rng(bins + values)
    for name, x in _adversarial(rng, 20_011).items():
        _assert_same([(x, 1)], bins, values, name)


@pytest.mark.parametrize("values", [0, 40])
def test_adversarial_batches_in_sequence(values):
    # one observer over all of them: ranges grow, zeros and tiny values meet larger ones
    rng = np.random.default_rng(7)
    batches = [(x, 1) for x in _adversarial(rng, 9001).values()]
    _assert_same(batches, 2048, values)
    _assert_same(batches[::-1], 2048, values)


def test_inputs_of_other_dtypes_and_layouts():
    rng = np.random.default_rng(3)
    g = rng.standard_normal((4, 16, 30, 34)).astype(np.float32)
    batches = [
        (g, 4),  # a batch of 4 samples
        (g, 1),
        (g.transpose(0, 2, 3, 1), 4),  # non-contiguous
        (g[:, ::2, :, 1:], 4),  # strided slices, odd last dimension
        (g.reshape(-1)[::3], 1),  # a 1-D strided view
        (np.asfortranarray(g[0]), 1),
        (rng.integers(-1000, 1000, (3, 5000)), 1),  # int64
        (rng.integers(0, 255, (40, 500)).astype(np.uint8), 1),
        (np.arange(2**25, 2**25 + 30_000, dtype=np.int64), 1),  # rounds in float32
        (rng.standard_normal(30_000) * 1e40, 1),  # float64 beyond float32: +-inf
        (rng.standard_normal(30_000), 1),  # float64
        (np.float32(2.5), 1),  # a scalar
        (np.zeros((0, 8), np.float32), 1),  # empty
    ]
    for values in (0, 10, 100):
        _assert_same(batches, 2048, values)
        _assert_same(batches[::-1], 256, values)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 6000),
    values=st.sampled_from([0, 5, 20, 60]),
    scale=st.sampled_from([1e-40, 1e-30, 1e-3, 1.0, 1e3, 1e30]),
    zero_frac=st.floats(0, 1),
    neg_zero=st.booleans(),
    nonfinite=st.sampled_from([None, np.nan, np.inf, -np.inf]),
    seed=st.integers(0, 10_000),
)
def test_random_batches(n, values, scale, zero_frac, neg_zero, nonfinite, seed):
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(3):
        x = (rng.standard_normal(n) * scale).astype(np.float32)
        x[rng.random(n) < zero_frac] = -0.0 if neg_zero else 0.0
        if nonfinite is not None:
            x[rng.integers(0, n, 1 + n // 500)] = nonfinite
        batches.append((x, 1))
    _assert_same(batches, 2048, values)
