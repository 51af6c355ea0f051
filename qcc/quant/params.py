"""Scales and zero points, and quantizing arrays, with onnxruntime's conventions.

* asymmetric: the range is widened to include 0, ``scale = (rmax - rmin) / (qmax - qmin)``,
  ``zp = round(qmin - rmin / scale)``;
* symmetric: ``scale = max|x| / ((qmax - qmin) / 2)``, ``zp`` the middle of the range (0 for
  signed types); signed symmetric types use the restricted range ``[-127, 127]`` so that the
  negation of every value is representable (the TFLite spec and onnxruntime's weights);
* ``reduce_range``: 7-bit weights (``[-64, 64]``), onnxruntime's workaround for the u8s8
  16-bit pair-sum saturation of AVX2 CPUs without VNNI (see ARITHMETIC.md);
* an all-zero range gets ``scale = 1``.

Quantizing divides in float32 (``rint(f32(x / scale)) + zp``, ties to even), exactly as
onnxruntime's QuantizeLinear does; bias is int32 with ``scale = f32(x_scale * w_scale[c])``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qcc.errors import PassError
from qcc.quant.scheme import Granularity, QDType, QuantScheme


@dataclasses.dataclass(frozen=True)
class QParams:
    """Quantization parameters of one tensor (per tensor: 0-d arrays; per channel: 1-d)."""

    dtype: QDType
    scale: np.ndarray  # float32
    zero_point: np.ndarray  # of the quantized type
    axis: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.scale.ndim == 1

    def same_as(self, other: QParams) -> bool:
        return (
            self.dtype == other.dtype
            and self.axis == other.axis
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )

    def describe(self) -> str:
        if self.per_channel:
            return f"{self.dtype.value} per-channel(axis={self.axis}) x{self.scale.size}"
        return f"{self.dtype.value} scale={float(self.scale):.6g} zp={int(self.zero_point)}"


def qrange(dtype: QDType, symmetric: bool, reduce_range: bool = False) -> tuple[int, int]:
    lo, hi = dtype.qrange
    if reduce_range and dtype.bits == 8:
        return (-64, 64) if dtype.signed else (0, 127)
    if symmetric and dtype.signed:
        return lo + 1, hi  # [-127, 127]
    return lo, hi


def compute_qparams(
    lo: np.ndarray | float,
    hi: np.ndarray | float,
    dtype: QDType,
    *,
    symmetric: bool,
    reduce_range: bool = False,
    axis: int | None = None,
) -> QParams:
    """Parameters for values in ``[lo, hi]`` (arrays for per-channel)."""
    lo = np.minimum(np.asarray(lo, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), 0.0)
    qmin, qmax = qrange(dtype, symmetric, reduce_range)
    if symmetric:
        amax = np.maximum(np.abs(lo), np.abs(hi))
        scale = amax / ((qmax - qmin) / 2.0)
        zp = np.full(
            scale.shape, (qmin + qmax + 1) // 2 if not dtype.signed else 0, dtype=np.float64
        )
    else:
        scale = (hi - lo) / float(qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zp = np.clip(np.rint(qmin - lo / safe), qmin, qmax)
    scale32 = scale.astype(np.float32)
    # a zero range, or one so small that its scale is subnormal (a dead filter whose weights
    # are ~1e-40: LiteRT keeps such a convolution out of XNNPACK), gets scale 1: every value
    # quantizes to the zero point, which is what the range says anyway
    tiny = ~(scale32 >= np.finfo(np.float32).tiny) | ~np.isfinite(scale32)
    scale32 = np.where(tiny, np.float32(1.0), scale32).astype(np.float32)
    zp = np.where(tiny, 0 if dtype.signed else (0 if not symmetric else zp), zp)
    npdt = np.dtype(dtype.value)
    return QParams(dtype, scale32, zp.astype(npdt), axis)


def quantize(x: np.ndarray, qp: QParams, *, symmetric_clip: bool = False) -> np.ndarray:
    """``sat(rint(f32(x / scale)) + zp)``; per-channel along ``qp.axis``. ``symmetric_clip``
    clips signed values to ``[-127, 127]`` (weights)."""
    x = np.asarray(x, dtype=np.float32)
    scale, zp = qp.scale, qp.zero_point.astype(np.int64)
    if qp.per_channel:
        shape = [1] * x.ndim
        shape[qp.axis % x.ndim] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    q = np.rint(np.divide(x, scale, dtype=np.float32)).astype(np.int64) + zp
    lo, hi = qp.dtype.qrange
    if symmetric_clip and qp.dtype.signed:
        lo = -hi
    return np.clip(q, lo, hi).astype(np.dtype(qp.dtype.value))


def dequantize(q: np.ndarray, qp: QParams) -> np.ndarray:
    """``f32(f32(q - zp) * scale)``."""
    scale, zp = qp.scale, qp.zero_point.astype(np.int64)
    if qp.per_channel:
        shape = [1] * q.ndim
        shape[qp.axis % q.ndim] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q.astype(np.int64) - zp).astype(np.float32) * scale).astype(np.float32)


# The int32 bias is kept within +-2**30 so that the accumulated products (at most 255*128 per
# term) have another 2**30 of headroom before the int32 accumulator wraps.
BIAS_LIMIT = 2**30


def widen_for_int32_bias(
    lo: np.ndarray,
    hi: np.ndarray,
    bias: np.ndarray,
    x_scale: float,
    dtype: QDType,
    *,
    symmetric: bool,
    reduce_range: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Widen a weight range so that ``bias / (x_scale * w_scale)`` fits in ``+-BIAS_LIMIT``.

    A channel whose weights are tiny next to its bias would otherwise get an int32 bias beyond
    the accumulator's range; onnxruntime then wraps around (its int32 adds do not saturate) and
    that channel's output is garbage. Returns the new ``(lo, hi)`` and how many channels (or 1
    for a per-tensor range) were widened.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    need = np.abs(np.asarray(bias, dtype=np.float64)) / (float(x_scale) * BIAS_LIMIT)
    if lo.ndim == 0:
        need = need.max(initial=0.0)
    elif need.shape != lo.shape:
        return lo, hi, 0
    qmin, qmax = qrange(dtype, symmetric, reduce_range)
    if symmetric:
        half = (qmax - qmin) / 2.0
        amax = np.maximum(np.abs(np.minimum(lo, 0)), np.maximum(hi, 0))
        widen = amax < need * half
        amax = np.where(widen, need * half, amax)
        return np.where(widen, -amax, lo), np.where(widen, amax, hi), int(np.sum(widen))
    span = np.maximum(hi, 0) - np.minimum(lo, 0)
    widen = span < need * (qmax - qmin)
    extra = np.where(widen, need * (qmax - qmin) - span, 0.0)
    return lo - extra / 2, hi + extra / 2, int(np.sum(widen))


def quantize_bias(
    bias: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """int32 bias and its scale ``f32(x_scale * w_scale[c])`` (what onnxruntime requires)."""
    bscale = (np.float32(x_scale) * w_scale.astype(np.float32)).astype(np.float32)
    bscale = np.broadcast_to(bscale, bias.shape).astype(np.float32)
    safe = np.where(bscale > 0, bscale, np.float32(1.0))
    q = np.rint(bias.astype(np.float64) / safe.astype(np.float64))
    q = np.clip(q, -(2**31), 2**31 - 1).astype(np.int32)
    return q, bscale


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact)."""
    ref = np.asarray(ref, dtype=np.float64)
    noise = np.sum((ref - np.asarray(got, dtype=np.float64)) ** 2)
    return energy_db(float(np.sum(ref**2)), float(noise))


def energy_db(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)`` of summed energies: inf when the noise is 0, -inf when the
    signal is."""
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))


def quantize_weight(
    w: np.ndarray,
    scheme: QuantScheme,
    axis: int,
    *,
    bias: np.ndarray | None = None,
    x_scale: float | None = None,
    on_widen=None,
) -> tuple[np.ndarray, QParams]:
    """The integers and parameters of a constant weight under ``scheme`` (per channel along
    ``axis`` when the scheme says so, range from the weight's min and max): what ``quantize``
    writes and what ``correct-bias`` corrects for. With ``bias`` and ``x_scale`` the range is
    widened where the int32 bias would not fit (:func:`widen_for_int32_bias`);
    ``on_widen(n)`` hears how many channels were."""
    from qcc.quant.observers import MinMaxObserver

    per_channel = scheme.granularity is Granularity.PER_CHANNEL
    obs = MinMaxObserver(axis if per_channel else None)
    obs.update(w)
    lo, hi = obs.lo, obs.hi
    if bias is not None and x_scale is not None:
        lo, hi, widened = widen_for_int32_bias(
            lo,
            hi,
            np.asarray(bias).reshape(-1),
            x_scale,
            scheme.dtype,
            symmetric=scheme.symmetric,
            reduce_range=scheme.reduce_range,
        )
        if widened and on_widen is not None:
            on_widen(widened)
    wq = compute_qparams(
        lo,
        hi,
        scheme.dtype,
        symmetric=scheme.symmetric,
        reduce_range=scheme.reduce_range,
        axis=axis if per_channel else None,
    )
    q = quantize(w, wq, symmetric_clip=scheme.symmetric)
    # onnxruntime requires every per-channel weight zero point to be equal (they are 0 for
    # symmetric weights; its kernels do not support asymmetric per-channel weights)
    zp = np.asarray(wq.zero_point)
    if wq.per_channel and zp.size and np.any(zp != zp.flat[0]):
        raise PassError(
            "per-channel weights must be symmetric for onnxruntime (all zero points equal): "
            "use a symmetric weight scheme"
        )
    return q, wq
