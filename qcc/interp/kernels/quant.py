"""Integer and Q/DQ kernels of the interpreter, with onnxruntime's CPU arithmetic.

Every formula here is the one ``../shared/ARITHMETIC.md`` measured against onnxruntime 1.31.1
(MLAS, x86-64) with 0 mismatching elements; the tests in ``tests/interp`` check them again with
hypothesis. Conventions:

- ``f32(.)`` rounding is numpy float32 arithmetic; ``rint`` is ``np.rint`` (half to even).
- Integer accumulation is exact: operands are centred (``x - zx``) in float64, and a float64 GEMM
  is exact while ``|acc| < 2**53``, which int8 products over any realistic K satisfy. That lets
  BLAS do the work; the sum is converted back to int64 afterwards.
- Requantization ``y = sat(rint(f32(f32(acc) * scale)) + zy)`` with
  ``scale = f32(f32(sx * sw[c]) / sy)``.
- ``fma`` is a float32 fused multiply-add, emulated exactly (:func:`qcc.interp.kernels.mlas.fma`).

QDQ models reach these kernels through the ``ort-x86`` profile, which rewrites DQ -> op -> Q
units into the QLinear ops below exactly where onnxruntime does.
"""

from __future__ import annotations

import math

import numpy as np

from qcc.interp.kernels.float_ops import _conv_pads
from qcc.interp.kernels.mlas import fma as fma_f32
from qcc.interp.registry import MS_DOMAIN, InterpError, kernel

F32 = np.float32

_RANGES = {
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint16): (0, 65535),
    np.dtype(np.int16): (-32768, 32767),
    np.dtype(np.int32): (-(2**31), 2**31 - 1),
}

_ONNX_INT_TYPES = {2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32}


def qrange(dtype: np.dtype) -> tuple[int, int]:
    """The representable range of an integer tensor type."""
    try:
        return _RANGES[np.dtype(dtype)]
    except KeyError:
        raise InterpError(f"unsupported quantized type {np.dtype(dtype)}") from None


def _f32(x: object) -> np.ndarray:
    return np.asarray(x, dtype=F32)


def _zp(zp: np.ndarray | None, default: type = np.uint8) -> np.ndarray:
    return np.zeros((), dtype=default) if zp is None else np.asarray(zp)


def _axis_shape(param: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """Reshape a per-axis (1-D) parameter so that it broadcasts along ``axis``."""
    p = np.asarray(param)
    if p.ndim == 0 or (p.size == 1 and p.ndim <= 1):
        return p.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = p.size
    return p.reshape(shape)


def saturate_rint(f: np.ndarray, zp: np.ndarray | int, dtype: np.dtype) -> np.ndarray:
    """``sat(rint(f) + zp)`` in the integer ``dtype``; ``f`` is float32 or float64."""
    lo, hi = qrange(dtype)
    r = np.rint(f).astype(np.float64) + np.asarray(zp, dtype=np.float64)
    r = np.clip(r, lo, hi)
    if r.dtype.kind == "f":
        r = np.where(np.isnan(r), 0.0, r)
    return r.astype(dtype)


def requantize(acc: np.ndarray, scale: np.ndarray, zp: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MLAS requantization: ``sat(rint(f32(f32(acc) * scale)) + zp)``."""
    f = acc.astype(F32) * _f32(scale)
    return saturate_rint(f, zp, dtype)


# --------------------------------------------------------------------------- Q / DQ


def _q_dtype(zp: np.ndarray | None, output_dtype: int) -> np.dtype:
    if zp is not None:
        return np.asarray(zp).dtype
    if output_dtype:
        try:
            return np.dtype(_ONNX_INT_TYPES[output_dtype])
        except KeyError:
            raise InterpError(f"unsupported QuantizeLinear output_dtype {output_dtype}") from None
    return np.dtype(np.uint8)


def _block_check(block_size: int) -> None:
    if block_size:
        raise InterpError("blocked quantization (block_size > 0) is not supported")


@kernel("QuantizeLinear", since=10)
def quantize_linear(
    x: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
    *,
    axis: int = 1,
    saturate: int = 1,
    block_size: int = 0,
    output_dtype: int = 0,
    precision: int = 0,
) -> np.ndarray:
    """``sat(rint(f32(x / s)) + zp)``: a float32 division, as MLAS does (not ``x * (1/s)``)."""
    _block_check(block_size)
    dtype = _q_dtype(y_zero_point, output_dtype)
    x = np.asarray(x)
    if x.dtype != F32:
        raise InterpError(f"QuantizeLinear of {x.dtype} input is not supported")
    s = _axis_shape(_f32(y_scale), x.ndim, axis)
    zp = _axis_shape(_zp(y_zero_point, dtype.type), x.ndim, axis)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return saturate_rint(x / s, zp, dtype)


@kernel("DequantizeLinear", since=10)
def dequantize_linear(
    x: np.ndarray,
    x_scale: np.ndarray,
    x_zero_point: np.ndarray | None = None,
    *,
    axis: int = 1,
    block_size: int = 0,
    output_dtype: int = 0,
) -> np.ndarray:
    """``f32(f32(q - zp) * s)``."""
    _block_check(block_size)
    x = np.asarray(x)
    s = _axis_shape(_f32(x_scale), x.ndim, axis)
    zp = _axis_shape(_zp(x_zero_point, x.dtype.type), x.ndim, axis)
    return (x.astype(np.int64) - zp.astype(np.int64)).astype(F32) * s


# --------------------------------------------------------------------------- convolution


def _pads_for(
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    strides: list[int],
    dilations: list[int],
    pads: list[int] | None,
    auto_pad: str,
) -> list[int]:
    """ONNX ``pads`` (begins then ends) after resolving ``auto_pad``."""
    begin, end, _ = _conv_pads(spatial, kernel, strides, dilations, pads, auto_pad)
    return [*begin, *end]


def _taps(kernel: tuple[int, ...], out: list[int], strides: list[int], dilations: list[int]):
    """``(tap index, tap offsets, slices of the padded input that tap reads)`` per kernel tap."""
    for k, offs in enumerate(np.ndindex(*kernel)):
        yield (
            k,
            offs,
            tuple(
                slice(o * d, o * d + (n - 1) * st + 1, st)
                for o, n, st, d in zip(offs, out, strides, dilations, strict=True)
            ),
        )


def im2col(
    x: np.ndarray,
    kernel: tuple[int, ...],
    strides: list[int],
    dilations: list[int],
    pads: list[int],
    fill: float = 0.0,
) -> np.ndarray:
    """``[N, C, prod(kernel), *out_spatial]`` windows of ``x`` (``[N, C, *spatial]``)."""
    n = len(kernel)
    pad_width = [(0, 0), (0, 0)] + [(pads[i], pads[i + n]) for i in range(n)]
    xp = np.pad(x, pad_width, constant_values=fill) if any(pads) else x
    out = [
        (xp.shape[2 + i] - ((kernel[i] - 1) * dilations[i] + 1)) // strides[i] + 1 for i in range(n)
    ]
    if any(o <= 0 for o in out):
        raise InterpError(f"kernel {kernel} does not fit the padded input {xp.shape[2:]}")
    cols = np.empty((x.shape[0], x.shape[1], math.prod(kernel), *out), dtype=x.dtype)
    for k, _, idx in _taps(kernel, out, strides, dilations):
        cols[:, :, k] = xp[(slice(None), slice(None), *idx)]
    return cols


def conv_accumulate(
    x: np.ndarray,
    w: np.ndarray,
    *,
    group: int,
    strides: list[int],
    dilations: list[int],
    pads: list[int],
) -> np.ndarray:
    """Exact ``sum (x)(w)`` of a convolution of already centred float64 operands.

    The GEMM runs in float32 when every partial sum stays below 2**24 in magnitude (then each
    is an exactly representable integer, whatever order BLAS adds in), else in float64.
    """
    n, c = x.shape[:2]
    m = w.shape[0]
    kernel = tuple(w.shape[2:])
    if c != w.shape[1] * group or m % group:
        raise InterpError(
            f"input has {c} channels, weight {tuple(w.shape)} with group {group} does not fit"
        )
    terms = w.shape[1] * math.prod(kernel)
    prod_max = float(np.abs(x).max(initial=0)) * float(np.abs(w).max(initial=0))
    # operands are small integers, exact in float32; chunk the reduction so that every
    # partial sum of a float32 GEMM stays below 2**24, where float32 integers are exact
    chunk = terms if prod_max * terms < 2**24 else max(1, int((2**24 - 1) // max(prod_max, 1)))
    x, w = x.astype(np.float32), w.astype(np.float32)
    if w.shape[1] == 1 and m == group and chunk >= terms:  # depthwise, no im2col
        return _depthwise(x, w, strides, dilations, pads)
    cols = im2col(x, kernel, strides, dilations, pads)
    out_sp = cols.shape[3:]
    p = math.prod(out_sp)
    cg = c // group
    k = math.prod(kernel)
    cols = cols.reshape(n, group, cg * k, p)
    wg = w.reshape(group, m // group, cg * k)[None]
    if chunk >= cg * k:
        acc = np.matmul(wg, cols).astype(np.float64)
    else:
        acc = np.zeros((n, group, m // group, p), dtype=np.float64)
        for s in range(0, cg * k, chunk):
            acc += np.matmul(wg[..., s : s + chunk], cols[:, :, s : s + chunk, :])
    return acc.reshape(n, m, *out_sp)


def _depthwise(x, w, strides, dilations, pads) -> np.ndarray:
    kernel = tuple(w.shape[2:])
    nsp = len(kernel)
    pad_width = [(0, 0), (0, 0)] + [(pads[i], pads[i + nsp]) for i in range(nsp)]
    xp = np.pad(x, pad_width) if any(pads) else x
    out = [
        (xp.shape[2 + i] - ((kernel[i] - 1) * dilations[i] + 1)) // strides[i] + 1
        for i in range(nsp)
    ]
    acc = np.zeros((x.shape[0], x.shape[1], *out), dtype=x.dtype)
    wsh = (1, -1) + (1,) * nsp
    for _, offs, idx in _taps(kernel, out, strides, dilations):
        acc += xp[(slice(None), slice(None), *idx)] * w[(slice(None), 0, *offs)].reshape(wsh)
    return acc.astype(np.float64)


def _conv_geometry(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    auto_pad: str,
    dilations: list[int] | None,
    kernel_shape: list[int] | None,
    pads: list[int] | None,
    strides: list[int] | None,
) -> tuple[list[int], list[int], list[int]]:
    nsp = len(x_shape) - 2
    kernel = tuple(kernel_shape) if kernel_shape else tuple(w_shape[2:])
    strides = list(strides) if strides else [1] * nsp
    dilations = list(dilations) if dilations else [1] * nsp
    full = _pads_for(tuple(x_shape[2:]), kernel, strides, dilations, pads, auto_pad)
    return strides, dilations, full


def _centred(q: np.ndarray, zp: np.ndarray | None, axis_len: int | None = None) -> np.ndarray:
    z = _zp(zp).astype(np.float64)
    if z.ndim == 1 and z.size > 1 and axis_len is not None:
        z = z.reshape((-1,) + (1,) * (axis_len - 1))
    elif z.size == 1:
        z = z.reshape(())
    # |q - z| <= 510: exact in float32, which halves the memory traffic of the GEMMs
    return (np.asarray(q).astype(np.float32) - z.astype(np.float32)).astype(np.float32)


def _to_int(acc: np.ndarray) -> np.ndarray:
    return np.rint(acc).astype(np.int64)


def wrap_int32(v: np.ndarray) -> np.ndarray:
    """Two's-complement int32 wrap-around: MLAS adds the bias to the int32 accumulator with
    SIMD integer adds, so a sum beyond the int32 range wraps (measured on ppocrv4_det, where a
    bias near -2**31 is reachable)."""
    return ((np.asarray(v, dtype=np.int64) + 2**31) % 2**32) - 2**31


@kernel("ConvInteger", since=10)
def conv_integer(
    x: np.ndarray,
    w: np.ndarray,
    x_zero_point: np.ndarray | None = None,
    w_zero_point: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: list[int] | None = None,
    group: int = 1,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    """int32 ``sum (x - zx)(w - zw)``; padding contributes 0."""
    st, dl, pd = _conv_geometry(x.shape, w.shape, auto_pad, dilations, kernel_shape, pads, strides)
    acc = conv_accumulate(
        _centred(x, x_zero_point),
        _centred(w, w_zero_point, w.ndim),
        group=group,
        strides=st,
        dilations=dl,
        pads=pd,
    )
    return _to_int(acc).astype(np.int32)


def _channel(scale: np.ndarray, ndim: int) -> np.ndarray:
    s = _f32(scale)
    return s.reshape((1, -1) + (1,) * (ndim - 2)) if s.size > 1 else s.reshape(())


@kernel("QLinearConv", since=10)
def qlinear_conv(
    x: np.ndarray,
    x_scale: np.ndarray,
    x_zero_point: np.ndarray,
    w: np.ndarray,
    w_scale: np.ndarray,
    w_zero_point: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray,
    B: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: list[int] | None = None,
    group: int = 1,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
    channels_last: int = 0,
) -> np.ndarray:
    """``acc = sum (x-zx)(w-zw) + B``;
    ``y = sat(rint(f32(f32(acc) * f32(f32(sx*sw[c])/sy))) + zy)``."""
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    st, dl, pd = _conv_geometry(x.shape, w.shape, auto_pad, dilations, kernel_shape, pads, strides)
    acc = _to_int(
        conv_accumulate(
            _centred(x, x_zero_point),
            _centred(w, w_zero_point, w.ndim),
            group=group,
            strides=st,
            dilations=dl,
            pads=pd,
        )
    )
    if B is not None:
        acc = wrap_int32(
            acc + np.asarray(B, dtype=np.int64).reshape((1, -1) + (1,) * (acc.ndim - 2))
        )
    scale = (_f32(x_scale) * _f32(w_scale)) / _f32(y_scale)
    y = requantize(
        acc, _channel(scale, acc.ndim), _zp(y_zero_point), np.asarray(y_zero_point).dtype
    )
    return np.moveaxis(y, 1, -1) if channels_last else y


# --------------------------------------------------------------------------- matmul / gemm


def _matmul_acc(a: np.ndarray, za: np.ndarray | None, b: np.ndarray, zb: np.ndarray | None):
    a64 = np.asarray(a).astype(np.float64)
    b64 = np.asarray(b).astype(np.float64)
    za64 = _zp(za).astype(np.float64)
    zb64 = _zp(zb).astype(np.float64)
    if za64.size > 1:  # per-row zero point of A (MatMulInteger allows it)
        za64 = za64.reshape(-1, 1)
    a64 = a64 - za64
    b64 = b64 - (zb64 if zb64.size > 1 else zb64.reshape(()))
    return _to_int(np.matmul(a64, b64))


@kernel("MatMulInteger", since=10)
def matmul_integer(
    A: np.ndarray,
    B: np.ndarray,
    a_zero_point: np.ndarray | None = None,
    b_zero_point: np.ndarray | None = None,
) -> np.ndarray:
    """int32 ``sum (a - za)(b - zb)`` with numpy matmul broadcasting."""
    return _matmul_acc(A, a_zero_point, B, b_zero_point).astype(np.int32)


@kernel("QLinearMatMul", since=10)
def qlinear_matmul(
    a: np.ndarray,
    a_scale: np.ndarray,
    a_zero_point: np.ndarray,
    b: np.ndarray,
    b_scale: np.ndarray,
    b_zero_point: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray,
) -> np.ndarray:
    """Requantized ``sum (a-za)(b-zb)``; a per-column ``b_scale`` scales the last axis."""
    acc = _matmul_acc(a, a_zero_point, b, b_zero_point)
    scale = (_f32(a_scale) * _f32(b_scale)) / _f32(y_scale)
    scale = scale.reshape(-1) if scale.size > 1 else scale.reshape(())
    return requantize(acc, scale, _zp(y_zero_point), np.asarray(y_zero_point).dtype)


@kernel("MatMulIntegerToFloat", domain=MS_DOMAIN, since=1)
def matmul_integer_to_float(
    A: np.ndarray,
    B: np.ndarray,
    a_scale: np.ndarray,
    b_scale: np.ndarray,
    a_zero_point: np.ndarray | None = None,
    b_zero_point: np.ndarray | None = None,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """``f32(f32(acc) * f32(sa*sb)) (+ bias)``: MLAS's scale-bias output processor."""
    acc = _matmul_acc(A, a_zero_point, B, b_zero_point)
    scale = _f32(a_scale) * _f32(b_scale)
    scale = scale.reshape(-1) if scale.size > 1 else scale.reshape(())
    y = acc.astype(F32) * scale
    if bias is not None:
        y = y + _f32(bias)
    return y


@kernel("QGemm", domain=MS_DOMAIN, since=1)
def qgemm(
    A: np.ndarray,
    a_scale: np.ndarray,
    a_zero_point: np.ndarray,
    B: np.ndarray,
    b_scale: np.ndarray,
    b_zero_point: np.ndarray,
    C: np.ndarray | None = None,
    y_scale: np.ndarray | None = None,
    y_zero_point: np.ndarray | None = None,
    *,
    alpha: float = 1.0,
    transA: int = 0,
    transB: int = 0,
) -> np.ndarray:
    """``acc = sum (a-za)(b-zb) + C``; quantized output with
    ``scale = f32(f32(f32(alpha*sa)*sb[c]) / sy)``; float output
    ``f32(f32(acc) * f32(f32(alpha*sa)*sb[c]))``."""
    a = np.asarray(A).T if transA else np.asarray(A)
    b = np.asarray(B).T if transB else np.asarray(B)
    zb = _zp(b_zero_point)
    acc = _matmul_acc(a, a_zero_point, b, zb)
    if C is not None:
        acc = wrap_int32(acc + np.asarray(C, dtype=np.int64))
    s = (F32(alpha) * _f32(a_scale)) * _f32(b_scale)
    s = s.reshape(-1) if s.size > 1 else s.reshape(())
    if y_scale is None:
        return acc.astype(F32) * s
    return requantize(acc, s / _f32(y_scale), _zp(y_zero_point), np.asarray(y_zero_point).dtype)


# --------------------------------------------------------------------------- element-wise


def _binary_order(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> bool:
    """Whether MLAS treats A as the broadcast (scalar-per-span) operand, swapping the roles."""
    if math.prod(a_shape) == 1 and math.prod(b_shape) != 1:
        return True
    rank = max(len(a_shape), len(b_shape))
    a = (1,) * (rank - len(a_shape)) + tuple(a_shape)
    b = (1,) * (rank - len(b_shape)) + tuple(b_shape)
    for da, db in zip(reversed(a), reversed(b), strict=True):
        if da == db == 1:
            continue
        return da == 1 and db != 1
    return False


@kernel("QLinearAdd", domain=MS_DOMAIN, since=1)
def qlinear_add(
    A: np.ndarray,
    A_scale: np.ndarray,
    A_zero_point: np.ndarray | None,
    B: np.ndarray,
    B_scale: np.ndarray,
    B_zero_point: np.ndarray | None = None,
    C_scale: np.ndarray | None = None,
    C_zero_point: np.ndarray | None = None,
) -> np.ndarray:
    """MLAS QLinearAdd (Linux x86): ``rX = f32(sX/sC)``,
    ``fixed = f32(zC - fma(rX, zX, f32(rY*zY)))``, ``y = sat(rint(fma(X, rX, fma(Y, rY, fixed))))``,
    with A and B swapped when A is the broadcast operand."""
    dtype = np.asarray(A).dtype
    za, zb, zc = (_zp(z, dtype.type) for z in (A_zero_point, B_zero_point, C_zero_point))
    sc = _f32(C_scale)
    x, sx, zx, y, sy, zy = A, A_scale, za, B, B_scale, zb
    if _binary_order(np.shape(A), np.shape(B)):
        x, sx, zx, y, sy, zy = B, B_scale, zb, A, A_scale, za
    rx = _f32(sx) / sc
    ry = _f32(sy) / sc
    fixed = _f32(zc.astype(F32) - fma_f32(rx, zx.astype(F32), ry * zy.astype(F32)))
    xv = np.asarray(x).astype(F32)
    yv = np.asarray(y).astype(F32)
    out = fma_f32(xv, rx, fma_f32(yv, ry, fixed))
    return saturate_rint(out, 0, dtype)


@kernel("QLinearMul", domain=MS_DOMAIN, since=1)
def qlinear_mul(
    A: np.ndarray,
    A_scale: np.ndarray,
    A_zero_point: np.ndarray | None,
    B: np.ndarray,
    B_scale: np.ndarray,
    B_zero_point: np.ndarray | None = None,
    C_scale: np.ndarray | None = None,
    C_zero_point: np.ndarray | None = None,
) -> np.ndarray:
    """``r = f32(f32(sA*sB)/sC)``; ``y = sat(rint(f32(f32(f32(p)*r) + f32(zC))))``."""
    dtype = np.asarray(A).dtype
    za, zb, zc = (_zp(z, dtype.type) for z in (A_zero_point, B_zero_point, C_zero_point))
    r = (_f32(A_scale) * _f32(B_scale)) / _f32(C_scale)
    p = (np.asarray(A).astype(np.int64) - za.astype(np.int64)) * (
        np.asarray(B).astype(np.int64) - zb.astype(np.int64)
    )
    f = p.astype(F32) * r + zc.astype(F32)
    return saturate_rint(f, 0, dtype)


# --------------------------------------------------------------------------- table ops


def _lookup(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    idx = x.astype(np.int64) - qrange(x.dtype)[0]
    return table[idx]


def _table(
    fn,
    x_dtype: np.dtype,
    x_scale: np.ndarray,
    x_zp: np.ndarray | None,
    y_scale: np.ndarray,
    y_zp: np.ndarray | None,
) -> np.ndarray:
    lo, hi = qrange(x_dtype)
    q = np.arange(lo, hi + 1, dtype=np.int64)
    v = dequantize_linear(q.astype(x_dtype), x_scale, _zp(x_zp, np.dtype(x_dtype).type))
    return quantize_linear(_f32(fn(v)), y_scale, _zp(y_zp, np.dtype(x_dtype).type))


def _mlas_logistic(v: np.ndarray) -> np.ndarray:
    from qcc.interp.kernels import mlas

    return mlas.logistic(v)


@kernel("QLinearSigmoid", domain=MS_DOMAIN, since=1)
def qlinear_sigmoid(
    X: np.ndarray,
    X_scale: np.ndarray,
    X_zero_point: np.ndarray | None,
    Y_scale: np.ndarray,
    Y_zero_point: np.ndarray | None = None,
) -> np.ndarray:
    """256-entry table of ``QuantizeLinear(MlasLogistic(DequantizeLinear(i)))``."""
    X = np.asarray(X)
    return _lookup(X, _table(_mlas_logistic, X.dtype, X_scale, X_zero_point, Y_scale, Y_zero_point))


@kernel("QLinearLeakyRelu", domain=MS_DOMAIN, since=1)
def qlinear_leaky_relu(
    X: np.ndarray,
    X_scale: np.ndarray,
    X_zero_point: np.ndarray | None,
    Y_scale: np.ndarray,
    Y_zero_point: np.ndarray | None = None,
    *,
    alpha: float = 0.01,
) -> np.ndarray:
    """256-entry table of ``v >= 0 ? v : f32(alpha*v)``."""
    X = np.asarray(X)
    a = F32(alpha)

    def leaky(v: np.ndarray) -> np.ndarray:
        return np.where(v >= 0, v, a * v).astype(F32)

    return _lookup(X, _table(leaky, X.dtype, X_scale, X_zero_point, Y_scale, Y_zero_point))


@kernel("QLinearConcat", domain=MS_DOMAIN, since=1)
def qlinear_concat(Y_scale: np.ndarray, Y_zero_point: np.ndarray, *inputs, axis: int) -> np.ndarray:
    """Inputs with the output's (scale, zp) are copied, others go through a requantizing table."""
    if len(inputs) % 3:
        raise InterpError("QLinearConcat takes (tensor, scale, zero point) triples")
    parts = []
    ys, yz = _f32(Y_scale), np.asarray(Y_zero_point)
    for i in range(0, len(inputs), 3):
        x, s, z = np.asarray(inputs[i]), _f32(inputs[i + 1]), np.asarray(inputs[i + 2])
        if s.reshape(()) == ys.reshape(()) and z.reshape(()) == yz.reshape(()):
            parts.append(x)
        else:
            parts.append(_lookup(x, _table(lambda v: v, x.dtype, s, z, ys, yz)))
    return np.concatenate(parts, axis=axis)


# exact=False: its row sum is float32 in an order the compiler chose (8 lanes matched rows of
# 60; a 6625-wide row still differed in 1 of 1.59M elements), so verify reports it apart.
@kernel("QLinearSoftmax", domain=MS_DOMAIN, since=1, exact=False)
def qlinear_softmax(
    X: np.ndarray,
    X_scale: np.ndarray,
    x_zero_point: np.ndarray | None,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
    *,
    axis: int = -1,
    opset: int = 13,
) -> np.ndarray:
    """onnxruntime ``qlinear_softmax.cc``: a float exp table, sequential float32 row sums,
    ``y = sat(rint(f32(f32(vt * floor(1/sy)) / sum)) + zy)``."""
    X = np.asarray(X)
    signed = X.dtype == np.int8
    ax = axis % X.ndim
    if opset < 13:
        d = math.prod(X.shape[ax:])
        x2 = X.reshape(-1, d)
    else:
        d = X.shape[ax]
        x2 = np.moveaxis(X, ax, -1).reshape(-1, d)
    sx = float(_f32(X_scale).reshape(()))
    bit_shift = math.log(float(np.finfo(F32).max) / d)
    bit_shift = max(0.0, bit_shift - 5) / sx
    # the C library's exp, as onnxruntime calls it (numpy's SIMD exp can differ in the last bit)
    vals = np.array([math.exp((i - 255 + bit_shift) * sx) for i in range(256)]).astype(F32)
    table = np.empty(256, dtype=F32)
    idx = ((np.arange(256) - 128) if signed else np.arange(256)).astype(np.int64) % 256
    table[idx] = vals
    ysc = F32(math.floor(F32(1.0) / _f32(y_scale).reshape(())))
    zy = int(_zp(y_zero_point, X.dtype.type).reshape(()))
    xi = x2.astype(np.int64)
    xmax = xi.max(axis=1, keepdims=True)
    if signed:
        vx = (127 - xmax + xi) % 256
        vt = table[vx]
    else:
        vt = table[255 - xmax + xi]
    # The row sum as the compiled loop does it: 8 float32 lanes (the tail fills the first lanes
    # of a last, zero-padded step), then the lanes added in order. A plain sequential sum missed
    # 2 of 115,200 elements on ppocrv4_rec; this order matched all of them and every random
    # case tried. The lane count is inferred from that measurement, not read in source.
    padded = np.concatenate([vt, np.zeros((vt.shape[0], (-d) % 8), F32)], axis=1)
    steps = padded.reshape(vt.shape[0], -1, 8)
    lanes = np.zeros((vt.shape[0], 8), dtype=F32)
    for k in range(steps.shape[1]):
        lanes = lanes + steps[:, k]
    vsum = np.zeros((vt.shape[0], 1), dtype=F32)
    for j in range(8):
        vsum = vsum + lanes[:, j : j + 1]
    q = np.rint((vt * ysc) / vsum).astype(np.int64) + zy
    lo, hi = qrange(X.dtype)
    y = np.clip(q, lo, hi).astype(X.dtype)
    if opset < 13:
        return y.reshape(X.shape)
    moved = list(np.moveaxis(X, ax, -1).shape)
    return np.moveaxis(y.reshape(moved), -1, ax)


# --------------------------------------------------------------------------- pooling


@kernel("QLinearGlobalAveragePool", domain=MS_DOMAIN, since=1)
def qlinear_global_average_pool(
    X: np.ndarray,
    x_scale: np.ndarray,
    x_zero_point: np.ndarray | None,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
    *,
    channels_last: int = 0,
) -> np.ndarray:
    """``acc = sum x - zx*N``; ``scale = f32(sx / f32(sy * f32(N)))``; requantize as Conv."""
    X = np.asarray(X)
    x = np.moveaxis(X, -1, 1) if channels_last else X
    axes = tuple(range(2, x.ndim))
    n = math.prod(x.shape[2:])
    zx = int(_zp(x_zero_point, X.dtype.type).reshape(()))
    acc = x.astype(np.int64).sum(axis=axes, keepdims=True) - zx * n
    scale = _f32(x_scale) / (_f32(y_scale) * F32(n))
    y = requantize(acc, scale, _zp(y_zero_point, X.dtype.type), X.dtype)
    return np.moveaxis(y, 1, -1) if channels_last else y


@kernel("QLinearAveragePool", domain=MS_DOMAIN, since=1)
def qlinear_average_pool(
    X: np.ndarray,
    x_scale: np.ndarray,
    x_zero_point: np.ndarray | None,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    channels_last: int = 0,
    count_include_pad: int = 0,
    kernel_shape: list[int],
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    """Dequantize, float32 window sums (rows, then columns), divide by the count, requantize
    with ``sat(rint(f32(f32(avg / sy) + zy)))``; a window covering the whole unpadded input takes
    the global-average path."""
    X = np.asarray(X)
    x = np.moveaxis(X, -1, 1) if channels_last else X
    nsp = x.ndim - 2
    kernel = tuple(kernel_shape)
    strides = list(strides) if strides else [1] * nsp
    full = _pads_for(tuple(x.shape[2:]), kernel, strides, [1] * nsp, pads, auto_pad)
    if ceil_mode:
        raise InterpError("QLinearAveragePool with ceil_mode=1 is not supported")
    if kernel == tuple(x.shape[2:]) and not any(full):
        y = qlinear_global_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point)
        return np.moveaxis(y, 1, -1) if channels_last else y
    zx = _zp(x_zero_point, X.dtype.type).astype(np.int64)
    deq = (x.astype(np.int64) - zx).astype(F32) * _f32(x_scale)
    cols = im2col(deq, kernel, strides, [1] * nsp, full, fill=0.0)
    # Window sums in float32, in the order MLAS walks the window: row by row, column by column.
    s = np.zeros(cols.shape[:2] + cols.shape[3:], dtype=F32)
    for k in range(cols.shape[2]):
        s = s + cols[:, :, k]
    if count_include_pad:
        count = np.full(cols.shape[3:], math.prod(kernel), dtype=F32)
    else:
        ones = np.ones((1, 1, *x.shape[2:]), dtype=F32)
        count = im2col(ones, kernel, strides, [1] * nsp, full, fill=0.0).sum(axis=2)[0, 0]
    avg = s / count.astype(F32)
    zy = _zp(y_zero_point, X.dtype.type).astype(F32)
    y = saturate_rint((avg / _f32(y_scale)) + zy, 0, X.dtype)
    return np.moveaxis(y, 1, -1) if channels_last else y
