"""Observers against closed-form cases, and exact merging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcc.quant.observers import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageObserver,
    sample_stride,
    strided_sample,
)
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


@pytest.mark.parametrize("bins", [128, 2048])
def test_tiny_negative_values_keep_their_bin_when_the_range_grows_past_the_bin_count(bins):
    # beyond R = bins, x * bins / R of a negative subnormal underflows to -0.0; it still
    # belongs in bin -1, where it lands when binned at a narrower range and then re-binned
    tiny = -np.array([1e-45, 3e-42, 1e-39], np.float32)
    wide = np.array([-3.0, 5e4, 1e9], np.float32)
    one = HistogramObserver(bins)
    for x in (tiny, wide):  # binned narrow, then the range grows
        one.update(x)
    other = HistogramObserver(bins)
    for x in (wide, tiny):  # binned at the wide range directly
        other.update(x)
    merged = HistogramObserver(bins)
    merged.update(tiny)
    late = HistogramObserver(bins)
    late.update(wide)
    merged.merge(late)
    for h in (other, merged):
        assert h.exp == one.exp and np.array_equal(h.counts, one.counts)
    assert one.counts[bins - 1] == 4  # the three tiny values and -3.0 at this range


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


def test_sample_stride_is_one_or_a_prime_that_fits_the_budget():
    # sampling pays off only well above the budget: 16x
    assert sample_stride(10**6, 0) == 1 and sample_stride(16000, 1000) == 1
    assert sample_stride(16001, 1000) == 17
    assert sample_stride(3 * 320 * 320, 4096) == 79  # ceil(75) = 75 -> 79
    assert sample_stride(64 * 160 * 160, 4096) == 401  # prime
    # never a divisor of the last dimension: a [T, 76] sequence sampled at stride 19 would
    # only ever see 4 of its 76 channels
    assert sample_stride(40 * 76, 169) == 19
    assert sample_stride(40 * 76, 169, period=76) == 23
    for n, cap in [(10**6, 4096), (123457, 1000), (2**20, 2**10)]:
        s = sample_stride(n, cap)
        assert all(s % d for d in range(2, s)) and len(strided_sample(np.zeros(n), s)) <= cap


def test_a_sampled_histogram_counts_the_tail_exactly_and_estimates_the_bulk():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 40, 40)).astype(np.float32)
    x[0, 3, 17, 5] = 40.0  # an outlier the stride skips
    h = HistogramObserver(values=500)
    h.update(x)
    stride = sample_stride(x.size, 500)
    assert stride == 29 and h.R == 64.0 and (h.min, h.max) == (float(x.min()), 40.0)
    sample = strided_sample(x, stride)
    assert 40.0 not in sample
    k = int(0.005 * sample.size)  # the sample's 0.5th and 99.5th percentiles
    t_lo, t_hi = np.sort(sample)[[k, sample.size - 1 - k]]
    flat = x.reshape(-1)
    tail = flat[(flat < t_lo) | (flat > t_hi)]
    assert 40.0 in tail and 100 < len(tail) < 200  # about 1% of 12800
    expected = np.zeros(2 * h.bins, np.int64)
    bulk = sample[(sample >= t_lo) & (sample <= t_hi)]
    for vals, w in ((tail, 1), (bulk, stride)):
        np.add.at(expected, np.floor(vals * (h.bins / 64.0)).astype(np.int64) + h.bins, w)
    assert np.array_equal(h.counts, expected)
    assert abs(int(h.counts.sum()) - x.size) < 0.02 * x.size  # the bulk estimate
    # the tail decides the percentile: it sees the outlier, as the exact histogram does
    exact = HistogramObserver()
    exact.update(x)
    for p in (99.9, 99.99, 100.0):
        assert h.percentile_range(p, False) == exact.percentile_range(p, False)


def test_a_batch_of_n_samples_gets_n_times_the_budget():
    x = np.random.default_rng(1).standard_normal((4, 3, 50, 50)).astype(np.float32)
    h = HistogramObserver(values=200)
    assert h.stride(x.size, 1, 50) == 151  # ceil(30000 / 200) = 150 -> 151
    assert h.stride(x.size, 4, 50) == 41  # ceil(30000 / 800) = 38 -> 41
    assert h.stride(x.size, 10, 50) == 1  # 30000 <= 16 * 2000: every value
    h.update(x, samples=10)
    assert h.counts.sum() == x.size


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 5000), min_size=2, max_size=5), seed=st.integers(0, 999))
def test_sampled_histograms_still_merge_exactly(sizes, seed):
    rng = np.random.default_rng(seed)
    batches = [rng.standard_normal(n).astype(np.float32) * (i + 1) for i, n in enumerate(sizes)]
    a, b, whole = (HistogramObserver(256, values=100) for _ in range(3))
    for x in batches[:1]:
        a.update(x)
    for x in batches[1:]:
        b.update(x)
    for x in batches:
        whole.update(x)
    a.merge(b)
    assert a.exp == whole.exp and np.array_equal(a.counts, whole.counts)
    assert (a.min, a.max, a.values) == (whole.min, whole.max, 100)


def test_a_sampled_histogram_keeps_the_short_negative_tail_of_an_asymmetric_tensor():
    # HardSwish output: a long positive tail and a short negative one (min -0.375); the
    # lower percentile lies far inside the magnitude bulk, and is still decided exactly
    z = 3.0 * np.random.default_rng(2).standard_normal((4, 16, 30, 30)).astype(np.float32)
    x = z * np.clip(z + 3.0, 0.0, 6.0) / 6.0
    sampled, exact = HistogramObserver(values=200), HistogramObserver()
    for part in x:
        sampled.update(part)
        exact.update(part)
    assert sampled.stride(x[0].size, 1, 30) > 1
    for p in (99.9, 99.99, 99.999):
        assert sampled.percentile_range(p, False) == exact.percentile_range(p, False)


def test_an_all_zero_batch_is_binned_not_an_error():
    # a tensor that is zero on its first batch (a masked or padded input) used to get the
    # range 2**-126, whose bin scale B / R overflows float32: every index was garbage and
    # bincount raised
    h = HistogramObserver()
    h.update(np.zeros((2, 8), np.float32))
    assert h.counts.sum() == 16 and h.counts[h.bins] == 16
    assert h.percentile_range(99.99, False) == (0.0, 0.0)
    h.update(np.array([-1.5, 3.0], np.float32))  # the range grows from there as usual
    whole = HistogramObserver()
    whole.update(np.concatenate([np.zeros(16, np.float32), np.array([-1.5, 3.0], np.float32)]))
    assert h.exp == whole.exp and np.array_equal(h.counts, whole.counts)
    tiny = HistogramObserver()
    tiny.update(np.array([1e-38, -1e-38, 0.0], np.float32))
    assert tiny.counts.sum() == 3
