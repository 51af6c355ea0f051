"""MLAS's float32 algorithms, reproduced bit for bit in numpy.

onnxruntime's CPU provider computes several float ops with MLAS kernels written in x86 assembly:
rational or polynomial approximations evaluated with float32 fused multiply-adds. Matching
onnxruntime therefore needs the same operation sequence with every FMA rounded once, which
:func:`fma` emulates exactly. The routines below follow these onnxruntime sources (the x86-64
kernels an AVX2 / AVX512F CPU dispatches to, as of onnxruntime 1.31):

- :func:`logistic`: ``core/mlas/lib/logistic.cpp`` and ``x86_64/LogisticKernelFma3.S``
- :func:`tanh`: ``core/mlas/lib/tanh.cpp`` and ``x86_64/TanhKernelFma3.S``
- :func:`erf`: ``core/mlas/lib/erf.cpp`` and ``x86_64/ErfKernelFma3.S``
- :func:`exp`: ``core/mlas/lib/compute.cpp`` (constants) and ``x86_64/TransKernelAvx512F.S``
- :func:`softmax`, :func:`log_softmax`: ``compute.cpp`` ``MlasComputeSoftmaxThreaded`` with the
  AVX512F ``MlasComputeSumExpF32KernelAvx512F`` (16 lane accumulators, then a fixed reduction
  tree) and the output kernels (multiply by ``1/sum``; ``x - max - logf(sum)``)

Each was measured against onnxruntime 1.31.1 on an AVX512 CPU with 0 mismatching bits over
millions of inputs (``tests/interp/test_float_ops.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

F32 = np.float32


def fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a*b + c`` with a single rounding, as ``vfmadd*ps`` computes it.

    The float32 product is exact in float64; the float64 sum is then rounded to odd (a TwoSum
    gives its exact error, and an inexact even result moves one float64 ulp toward the exact
    value), and rounding a round-to-odd float64 to float32 is correctly rounded because float64
    carries more than ``2*24 + 2`` bits.
    """
    a64 = np.asarray(a, np.float64)
    b64 = np.asarray(b, np.float64)
    c64 = np.asarray(c, np.float64)
    p = a64 * b64
    with np.errstate(invalid="ignore", over="ignore"):
        s = p + c64
        bb = s - p
        err = (p - (s - bb)) + (c64 - bb)
    s = np.asarray(s, np.float64)
    bits = s.view(np.int64)
    inexact_even = (err != 0) & ((bits & 1) == 0) & np.isfinite(s)
    if np.any(inexact_even):
        step = np.where((err > 0) == (s > 0), 1, -1)
        bits = np.where(inexact_even, bits + step, bits)
        s = bits.view(np.float64)
    with np.errstate(over="ignore"):
        return s.astype(F32)


def _f(v: float) -> np.float32:
    return F32(v)


# -- logistic (Sigmoid) ------------------------------------------------------------------------

_LOG_LO, _LOG_HI = _f(-18.0), _f(18.0)
_LOG_ALPHA = [
    _f(v)
    for v in (
        4.37031012579801e-11,
        1.15627324459942e-07,
        6.08574864600143e-05,
        8.51377133304701e-03,
        2.48287947061529e-01,
    )
]
_LOG_BETA = [
    _f(v)
    for v in (
        6.10247389755681e-13,
        5.76102136993427e-09,
        6.29106785017040e-06,
        1.70198817374094e-03,
        1.16817656904453e-01,
        9.93151921023180e-01,
    )
]


def _vmaxps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x86 ``maxps a, b``: ``a > b ? a : b`` (the second operand when either is NaN)."""
    return np.where(a > b, a, b)


def _vminps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x86 ``minps a, b``: ``a < b ? a : b`` (the second operand when either is NaN)."""
    return np.where(a < b, a, b)


def logistic(x: np.ndarray) -> np.ndarray:
    """``MlasComputeLogistic``: clamp to [-18, 18], odd degree-9 polynomial over even degree-10
    polynomial (FMA Horner in x²), ``p/q + 0.5``, then ``max(0, .)``."""
    x = np.asarray(x, F32)
    v = _vminps(np.full_like(x, _LOG_HI), _vmaxps(np.full_like(x, _LOG_LO), x))
    x2 = v * v
    p = fma(x2, _LOG_ALPHA[0], _LOG_ALPHA[1])
    for c in _LOG_ALPHA[2:]:
        p = fma(x2, p, c)
    q = fma(x2, _LOG_BETA[0], _LOG_BETA[1])
    for c in _LOG_BETA[2:]:
        q = fma(x2, q, c)
    p = v * p
    with np.errstate(invalid="ignore", divide="ignore"):
        r = p / q + F32(0.5)
    return _vmaxps(np.zeros_like(r), r)


# -- tanh ---------------------------------------------------------------------------------------

_TANH_LO, _TANH_HI = _f(-9.0), _f(9.0)
_TANH_ALPHA = [
    _f(v)
    for v in (
        -2.76076847742355e-16,
        2.00018790482477e-13,
        -8.60467152213735e-11,
        5.12229709037114e-08,
        1.48572235717979e-05,
        6.37261928875436e-04,
        4.89352455891786e-03,
    )
]
_TANH_BETA = [
    _f(v)
    for v in (
        1.19825839466702e-06,
        1.18534705686654e-04,
        2.26843463243900e-03,
        4.89352518554385e-03,
    )
]


def tanh(x: np.ndarray) -> np.ndarray:
    """``MlasComputeTanh``: clamp to [-9, 9], odd degree-13 over even degree-6 polynomial."""
    x = np.asarray(x, F32)
    v = _vminps(np.full_like(x, _TANH_HI), _vmaxps(np.full_like(x, _TANH_LO), x))
    x2 = v * v
    p = fma(x2, _TANH_ALPHA[0], _TANH_ALPHA[1])
    for c in _TANH_ALPHA[2:]:
        p = fma(x2, p, c)
    q = fma(x2, _TANH_BETA[0], _TANH_BETA[1])
    for c in _TANH_BETA[2:]:
        q = fma(x2, q, c)
    p = v * p
    with np.errstate(invalid="ignore", divide="ignore"):
        return p / q


# -- exp ----------------------------------------------------------------------------------------

_EXP_LO = _f(-103.9720840454)
_EXP_HI = _f(88.7762626647950)
_EXP_SUM_LO = _f(-88.3762626647949)
_EXP_BIAS = _f(12582912.0)  # MLAS_ROUNDING_BIAS_MAGIC, 1.5 * 2^23
_EXP_LOG2R = _f(1.44269504088896341)
_EXP_LOG2_HI = _f(-6.93145752e-1)
_EXP_LOG2_LO = _f(-1.42860677e-6)
_EXP_POLY = [
    F32(float.fromhex(h))
    for h in (
        "0x1.694000p-10",
        "0x1.125edcp-7",
        "0x1.555b5ap-5",
        "0x1.555450p-3",
        "0x1.fffff6p-2",
        "0x1.000000p+0",
    )
]


def _scalef(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """AVX512 ``vscalefps``: ``p * 2^floor(m)`` rounded once to float32."""
    finite = np.isfinite(m)
    mi = np.where(finite, np.clip(np.nan_to_num(m), -400, 400), 0).astype(np.int32)
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.ldexp(p.astype(np.float64), mi).astype(F32)
    if not np.all(finite):
        with np.errstate(over="ignore", invalid="ignore"):
            r = np.where(finite, r, p * np.exp2(m.astype(np.float64)).astype(F32))
    return r


def _exp_reduced(v: np.ndarray, *, n_tail_fma: int) -> np.ndarray:
    biased = fma(v, _EXP_LOG2R, _EXP_BIAS)
    m = biased - _EXP_BIAS
    v = fma(m, _EXP_LOG2_HI, v)
    v = fma(m, _EXP_LOG2_LO, v)
    p = np.full_like(v, _EXP_POLY[0])
    for c in _EXP_POLY[1:]:
        p = fma(p, v, c)
    for _ in range(n_tail_fma):
        p = fma(p, v, _EXP_POLY[-1])
    return _scalef(p, m)


def exp(x: np.ndarray) -> np.ndarray:
    """``MlasComputeExp`` (AVX512F): clamp below at -103.97, ``m = round(x/ln2)`` by the
    rounding-bias trick, two-step Cody-Waite reduction, degree-6 FMA polynomial, ``vscalefps``."""
    x = np.asarray(x, F32)
    v = _vmaxps(np.full_like(x, _EXP_LO), x)
    # the assembly has no upper clamp, but exp(+inf) is +inf in onnxruntime 1.31 (not the NaN
    # that inf - inf in the range reduction would give): clamping changes nothing else, as every
    # x above 88.776 overflows to +inf either way
    v = np.where(v > _EXP_HI, _EXP_HI, v)
    return _exp_reduced(v, n_tail_fma=1)


def _sum_exp_rows(x2d: np.ndarray, neg_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``MlasComputeSumExpF32KernelAvx512F`` on each row: the exps and their float32 sum."""
    n, d = x2d.shape
    with np.errstate(invalid="ignore", over="ignore"):
        v = x2d + neg_max[:, None]
    v = _vmaxps(np.full_like(v, _EXP_SUM_LO), v)
    e = _exp_reduced(v, n_tail_fma=1)
    pad = (-d) % 16
    ep = np.concatenate([e, np.zeros((n, pad), F32)], axis=1) if pad else e
    chunks = ep.reshape(n, -1, 16)
    acc = np.zeros((n, 16), F32)
    for k in range(chunks.shape[1]):
        acc = acc + chunks[:, k, :]
    a = acc[:, :8] + acc[:, 8:]
    s = ((a[:, 0] + a[:, 1]) + (a[:, 2] + a[:, 3])) + ((a[:, 4] + a[:, 5]) + (a[:, 6] + a[:, 7]))
    return e, s


def softmax(x2d: np.ndarray) -> np.ndarray:
    """``MlasComputeSoftmax`` over the last axis of a 2-D float32 array."""
    x2d = np.asarray(x2d, F32)
    if x2d.size == 0:
        return x2d.copy()
    neg_max = -np.max(x2d, axis=1)
    e, s = _sum_exp_rows(x2d, neg_max)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = F32(1.0) / s
        return e * scale[:, None]


_libm_logf = None


def logf(x: np.ndarray) -> np.ndarray:
    """The C library's ``logf`` (what ``std::log(float)`` calls), element by element."""
    global _libm_logf
    if _libm_logf is None:
        _libm_logf = _libm_fn("logf", 1)
    return np.asarray(_libm_logf(np.asarray(x, F32)), dtype=F32)


def log_softmax(x2d: np.ndarray) -> np.ndarray:
    """``MlasComputeSoftmax(LogSoftmax=true)``: ``(x + (-max)) - logf(sum(exp))`` per row."""
    x2d = np.asarray(x2d, F32)
    if x2d.size == 0:
        return x2d.copy()
    neg_max = -np.max(x2d, axis=1)
    _, s = _sum_exp_rows(x2d, neg_max)
    lg = logf(s)
    with np.errstate(invalid="ignore", over="ignore"):
        return (x2d + neg_max[:, None]) - lg[:, None]


# -- erf ----------------------------------------------------------------------------------------

_ERF_UPPER = _f(3.925)  # 3.725 in older onnxruntime; 1.31 saturates at 3.925
_ERF_SPLIT = _f(0.921875)
_ERF_SMALL = [
    _f(v)
    for v in (
        -5.99104969e-4,
        4.99339588e-3,
        -2.67667342e-2,
        1.12818025e-1,
        -3.76124859e-1,
        1.28379151e-1,
    )
]
_ERF_BIG = [
    _f(v)
    for v in (
        1.72948930e-5,
        -3.83208680e-4,
        3.88393435e-3,
        -2.42545605e-2,
        1.06777847e-1,
        6.34846687e-1,
        1.28717512e-1,
    )
]
_ERF_EXP_LO = _f(-88.3762626647949)
_ERF_EXP_LOG2R = _f(1.44269504088896341)
_ERF_EXP_HI = _f(-6.93145752e-1)
_ERF_EXP_LO2 = _f(-1.42860677e-6)
_ERF_EXP_P = [
    _f(v)
    for v in (1.38319808e-3, 8.37550033e-3, 4.16689515e-2, 1.66664466e-1, 4.99999851e-1, 1.0, 1.0)
]
_ERF_EXP_C = _f(1.25829120e7)


def erf(x: np.ndarray) -> np.ndarray:
    """``MlasComputeErf`` (``ErfKernelFma3.S``): for |x| < 0.921875 an odd polynomial in x²,
    above it ``1 - exp(-poly(|x|))`` with |x| capped at 3.925; the sign is OR-ed back in."""
    x = np.asarray(x, F32)
    bits = x.view(np.uint32)
    sign = bits & np.uint32(0x80000000)
    a = (bits & np.uint32(0x7FFFFFFF)).view(F32)
    a = _vminps(np.full_like(a, _ERF_UPPER), a)  # a NaN stays NaN
    s = a * a
    p = np.full_like(a, _ERF_SMALL[0])
    for c in _ERF_SMALL[1:]:
        p = fma(p, s, c)
    p = fma(p, a, a)
    big = a >= _ERF_SPLIT
    small = np.where(big, F32(0), p)
    ab = np.where(big, a, F32(0))
    r = np.full_like(a, _ERF_BIG[0])
    for c in _ERF_BIG[1:]:
        r = fma(r, ab, c)
    r = fma(r, ab, ab)
    r = (r.view(np.uint32) ^ np.uint32(0x80000000)).view(F32)
    r = _vmaxps(r, np.full_like(r, _ERF_EXP_LO))
    v = fma(r, _ERF_EXP_LOG2R, _ERF_EXP_C) - _ERF_EXP_C
    f = fma(v, _ERF_EXP_HI, r)
    f = fma(v, _ERF_EXP_LO2, f)
    y = np.full_like(a, _ERF_EXP_P[0])
    for c in _ERF_EXP_P[1:]:
        y = fma(y, f, c)
    scale = ((v.astype(np.int32) + 127) << 23).view(F32)
    y = F32(1.0) - y * scale
    out = y.view(np.uint32) | small.view(np.uint32) | sign
    return out.view(F32)


# -- the C library ------------------------------------------------------------------------------

_LIBM: ctypes.CDLL | None = None


def _libm_fn(name: str, nargs: int):
    global _LIBM
    if _LIBM is None:
        _LIBM = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    fn = getattr(_LIBM, name)
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float] * nargs
    return np.frompyfunc(fn, nargs, 1)


_libm_powf = None


def powf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The C library's ``powf`` element by element (``std::pow(float, float)``).

    glibc's ``powf`` is not correctly rounded, so neither numpy's power nor a float64 power
    rounded to float32 reproduces it; calling it is exact and costs about 1 µs per element.
    """
    global _libm_powf
    if _libm_powf is None:
        _libm_powf = _libm_fn("powf", 2)
    x, y = np.broadcast_arrays(np.asarray(x, F32), np.asarray(y, F32))
    if x.size == 0:
        return np.empty(x.shape, F32)
    return np.asarray(_libm_powf(x, y), dtype=F32).reshape(x.shape)
