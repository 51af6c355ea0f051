"""Observers against closed-form cases, and exact merging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcc.quant.observers import HistogramObserver, MinMaxObserver, MovingAverageObserver
from qcc.quant.scheme import QDType


def test_minmax_per_tensor_and_per_channel():
    x = np.array([[[-1.0, 2.0]], [[3.0, -4.0]], [[0.5, 0.25]]], np.float32)  # [3, 1, 2]
    o = MinMaxObserver()
    o.update(x)
    o.update(x * 0.5)
    assert (float(o.lo), float(o.hi)) == (-4.0, 3.0)
    c = MinMaxObserver(axis=0)
    c.update(x)
    assert c.lo.tolist() == [-1.0, -4.0, 0.25] and c.hi.tolist() == [2.0, 3.0, 0.5]


def test_moving_average():
    o = MovingAverageObserver(momentum=0.5)
    o.update(np.array([0.0, 4.0], np.float32))
    o.update(np.array([-2.0, 2.0], np.float32))
    assert (float(o.lo), float(o.hi)) == (-1.0, 3.0)
    with pytest.raises(TypeError):
        o.merge(MovingAverageObserver())


def test_histogram_bins_are_exact():
    h = HistogramObserver(bins=4)
    h.update(np.array([0.0, 0.3, 0.6, -0.6, 0.99], np.float32))
    # R = 1 (the smallest power of two above 0.99), 4 bins of width 0.25 on each side
    assert h.R == 1.0
    # bins -4..3 hold: -0.6 -> -3; 0.0 -> 0; 0.3 -> 1; 0.6 -> 2; 0.99 -> 3
    assert h.counts.tolist() == [0, 1, 0, 0, 1, 1, 1, 1]
    h.update(np.array([1.5], np.float32))  # doubles the range: adjacent bins merge
    assert h.R == 2.0
    # bin i moves to floor(i / 2): -3 -> -2; 0, 1 -> 0; 2, 3 -> 1; and 1.5 lands in 3
    assert h.counts.tolist() == [0, 0, 1, 0, 2, 2, 0, 1]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 200), min_size=2, max_size=6),
    scales=st.lists(st.floats(1e-3, 1e3), min_size=6, max_size=6),
    seed=st.integers(0, 10_000),
)
def test_histogram_merge_equals_one_observer_fed_everything(sizes, scales, seed):
    rng = np.random.default_rng(seed)
    batches = [
        (rng.standard_normal(n) * scales[i] + scales[-1 - i]).astype(np.float32)
        for i, n in enumerate(sizes)
    ]
    split = len(batches) // 2
    a, b, whole = HistogramObserver(256), HistogramObserver(256), HistogramObserver(256)
    for x in batches[:split]:
        a.update(x)
    for x in batches[split:]:
        b.update(x)
    for x in batches[::-1]:  # another order, too
        whole.update(x)
    a.merge(b)
    assert a.exp == whole.exp and np.array_equal(a.counts, whole.counts)
    assert (a.min, a.max) == (whole.min, whole.max)


def test_percentile_clips_the_tail():
    x = np.concatenate([np.linspace(-1, 1, 100_000), [50.0]]).astype(np.float32)
    h = HistogramObserver()
    h.update(x)
    lo, hi = h.percentile_range(99.9, symmetric=False)
    assert -1.05 < lo <= -0.99 and 0.99 <= hi < 1.05
    assert h.percentile_range(100.0, symmetric=False)[1] == pytest.approx(50.0)


def test_entropy_cuts_outliers_and_mse_weighs_them():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(200_000), [80.0, -80.0]]).astype(np.float32)
    h = HistogramObserver()
    h.update(x)
    lo, hi = h.entropy_range(QDType.INT8, True)
    assert 2.5 < hi < 40 and lo == -hi
    # MSE keeps what costs less squared error: two outliers at 80 outweigh the rounding of the
    # bulk here, so the range stays wide, but never wider than the data
    lo, hi = h.mse_range(QDType.UINT8, False)
    assert lo == -hi and 10 < hi <= 80
    bulk = HistogramObserver()
    bulk.update(x[:-2])
    assert bulk.mse_range(QDType.UINT8, False)[1] < 5
    relu = HistogramObserver()
    relu.update(np.maximum(x, 0))
    lo, hi = relu.entropy_range(QDType.UINT8, False)
    assert lo == 0.0 and 2.5 < hi < 40


def test_entropy_keeps_the_full_range_of_sparse_tensors():
    rng = np.random.default_rng(1)
    h = HistogramObserver()
    h.update(rng.standard_normal(800).astype(np.float32) * 3)  # a pooled tensor: few values
    lo, hi = h.entropy_range(QDType.INT8, True)
    assert (lo, hi) == (h.min, h.max)
