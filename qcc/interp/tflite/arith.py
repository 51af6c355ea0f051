"""Integer arithmetic of LiteRT's kernels: fixed-point multipliers, roundings, activation ranges.

Three families of requantization, named after where they run (``../shared/ARITHMETIC.md``):

- ``xnnpack``: float32, ``y = sat(rint(f32(f32(acc) * scale)) + zp)``, the scale computed in
  float32 (``f32(f32(sx * sw) / sy)``); activation bounds quantized with ``lrintf``.
- ``gemmlowp`` (TFLite reference kernels and most optimized ones):
  ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << l, M), r)``, both roundings
  half away from zero; ``M, shift = QuantizeMultiplier(double multiplier)``.
- ``ruy`` (TFLite's optimized CONV_2D / FULLY_CONNECTED through ruy on x86): the same
  multiplier, two roundings both half up: ``((x << l) * M + 2^30) >> 31`` then
  ``(r + 2^(k-1)) >> k``.

All integer work is done in int64 numpy arrays, exactly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math

import numpy as np

F32 = np.float32
I64 = np.int64

QRANGE = {
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int16): (-32768, 32767),
    np.dtype(np.int32): (-(2**31), 2**31 - 1),
}


def round_half_away(x: np.ndarray) -> np.ndarray:
    """``std::round``: half away from zero."""
    x = np.asarray(x)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_multiplier(d: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: ``d = M * 2^(shift - 31)``, ``M`` in ``[2^30, 2^31)``."""
    if d == 0.0:
        return 0, 0
    q, shift = math.frexp(d)
    m = int(round_half_away(np.float64(q * (1 << 31))))
    if m == 1 << 31:
        m //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return (1 << 31) - 1, 30
    return m, shift


def quantize_multipliers(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize_multiplier` per element of a float64 array."""
    pairs = [quantize_multiplier(float(v)) for v in np.ravel(d)]
    m = np.array([p[0] for p in pairs], I64).reshape(np.shape(d))
    s = np.array([p[1] for p in pairs], I64).reshape(np.shape(d))
    return m, s


def srdhm(a: np.ndarray, b: np.ndarray | int, bits: int = 32) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 values (held in int64); with
    ``bits=16`` the int16 version (TFLite's HARD_SWISH)."""
    a = np.asarray(a, I64)
    b = np.asarray(b, I64)
    ab = a * b
    half = 1 << (bits - 2)
    nudge = np.where(ab >= 0, half, 1 - half)
    t = ab + nudge
    q = np.abs(t) >> (bits - 1)
    r = np.where(t < 0, -q, q)  # C division truncates toward zero
    lo = -(1 << (bits - 1))
    return np.where((a == lo) & (b == lo), -lo - 1, r)


def rdbpot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2^exponent`` rounded half away from zero."""
    x = np.asarray(x, I64)
    e = np.asarray(exponent, I64)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > thr)


def mbqm(x: np.ndarray, m: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier`` (gemmlowp, two roundings half away)."""
    shift = np.asarray(shift, I64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = wrap32(np.asarray(x, I64) * (np.int64(1) << left))
    return rdbpot(srdhm(x, m), right)


def mbqm_ruy(x: np.ndarray, m: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """ruy's x86 requantization: ``((x << l) * M + 2^30) >> 31``, then ``(r + 2^(k-1)) >> k``."""
    shift = np.asarray(shift, I64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.asarray(x, I64) * (np.int64(1) << left)
    r = (x * np.asarray(m, I64) + (1 << 30)) >> 31
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
    return (r + half) >> right


def wrap32(v: np.ndarray) -> np.ndarray:
    """Two's-complement int32 wrap-around of int64 values."""
    v = np.asarray(v, I64)
    if v.size and v.min() >= -(2**31) and v.max() < 2**31:
        return v
    return ((v + 2**31) % 2**32) - 2**31


# --------------------------------------------------------------------------- activation ranges

_ACT_FLOAT = {
    "NONE": (-math.inf, math.inf),
    "RELU": (0.0, math.inf),
    "RELU_N1_TO_1": (-1.0, 1.0),
    "RELU6": (0.0, 6.0),
}


def _act_bounds(act: str, dtype: np.dtype) -> tuple[int, int, float, float]:
    """The integer range of ``dtype`` and the float bounds of fused activation ``act``."""
    if act not in _ACT_FLOAT:
        raise ValueError(f"fused activation {act} is not supported")
    return (*QRANGE[np.dtype(dtype)], *_ACT_FLOAT[act])


def act_range_tflite(act: str, scale: float, zp: int, dtype: np.dtype) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized``: ``zp + (int)round(f32(v / scale))``."""
    lo, hi, a, b = _act_bounds(act, dtype)

    def q(v: float) -> int:
        return zp + int(round_half_away(np.float64(F32(F32(v) / F32(scale)))))

    if act == "NONE":
        return lo, hi
    amin = max(lo, q(a))
    amax = hi if math.isinf(b) else min(hi, q(b))
    return amin, amax


def act_range_xnnpack(act: str, scale: float, zp: int, dtype: np.dtype) -> tuple[int, int]:
    """XNNPACK ``xnn_qs8_quantize``: ``lrintf(clamp(f32(f32(v / scale) + zp)))``."""
    lo, hi, a, b = _act_bounds(act, dtype)

    def q(v: float) -> int:
        with np.errstate(over="ignore"):
            f = F32(F32(F32(v) / F32(scale)) + F32(zp))
        f = min(max(float(f), lo), hi)
        return int(np.rint(f))

    return q(a), q(b)


# --------------------------------------------------------------------------- C library


@functools.cache
def _libm():
    return ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")


@functools.cache
def libm_f(name: str):
    """The C library's float function ``name`` (``expf``, ``tanhf``) as a numpy ufunc."""
    fn = getattr(_libm(), name)
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float]
    return np.frompyfunc(fn, 1, 1)


def libm(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, F32)
    if x.size == 0:
        return x.copy()
    return np.asarray(libm_f(name)(x), F32).reshape(x.shape)
