"""Kernels of the TFLite interpreter: LiteRT's builtin operators in numpy, bit for bit.

Each operator has the arithmetic of where LiteRT runs it (:mod:`qcc.interp.tflite.registry`):
inside the XNNPACK delegate (``xnnpack``), in TFLite's optimized builtin kernels (``builtin``)
or in the reference kernels (``ref``). The formulas are those of ``../shared/ARITHMETIC.md``
and, where it is silent, what the tests in ``tests/interp/tflite`` measured against
ai-edge-litert 2.3.0; :mod:`qcc.interp.tflite.arith` holds the fixed-point primitives.

Integer sums are exact at BLAS speed with the trick of :mod:`qcc.interp.kernels.quant`:
operands centred in float32 (small integers), partial sums kept below 2**24.
"""

from __future__ import annotations

import math

import numpy as np

from qcc.interp.kernels.quant import conv_accumulate, im2col
from qcc.interp.registry import InterpError
from qcc.interp.tflite.arith import (
    F32,
    I64,
    QRANGE,
    act_range_tflite,
    act_range_xnnpack,
    libm,
    mbqm,
    mbqm_ruy,
    quantize_multiplier,
    quantize_multipliers,
    rdbpot,
    round_half_away,
    srdhm,
    wrap32,
)
from qcc.interp.tflite.registry import Call, exact_if_integer, tkernel

REF = ("ref",)


def _is_q(t) -> bool:
    return t is not None and t.dtype.kind in "iu" and t.quant is not None


def _act_range(c: Call, t=None) -> tuple[int, int]:
    t = t or c.out
    act = c.op.activation
    q = t.q
    if c.arith == "xnnpack":
        return act_range_xnnpack(act, q.s, q.zp, t.dtype)
    return act_range_tflite(act, q.s, q.zp, t.dtype)


def _float_act(c: Call, y: np.ndarray) -> np.ndarray:
    act = c.op.activation
    if act == "NONE":
        return y
    if act == "RELU":
        return np.maximum(y, F32(0))
    if act == "RELU6":
        return np.minimum(np.maximum(y, F32(0)), F32(6))
    if act == "RELU_N1_TO_1":
        return np.minimum(np.maximum(y, F32(-1)), F32(1))
    if act == "TANH":
        return np.tanh(y).astype(F32)
    raise InterpError(f"fused activation {act} is not supported")


def _finish(c: Call, v: np.ndarray, t=None) -> np.ndarray:
    """Add nothing; clamp an integer result to the output range and fused activation."""
    t = t or c.out
    lo, hi = _act_range(c, t)
    return np.clip(v, lo, hi).astype(t.dtype)


def _requant_f32(acc: np.ndarray, scale: np.ndarray, c: Call) -> np.ndarray:
    """XNNPACK's fp32 requantization: ``rint(f32(f32(acc) * scale)) + zp``, clamped."""
    f = np.asarray(acc, I64).astype(F32) * np.asarray(scale, F32)
    return _finish(c, np.rint(f).astype(I64) + c.out.q.zp)


def _per_channel(t, n: int) -> np.ndarray:
    s = t.q.scale
    return np.repeat(s, n) if s.size == 1 else s


# --------------------------------------------------------------------------- convolution


def _same_pads(in_sz: int, k: int, stride: int, dil: int, padding: str) -> tuple[int, int, int]:
    ke = (k - 1) * dil + 1
    if padding == "SAME":
        out = -(-in_sz // stride)
        total = max(0, (out - 1) * stride + ke - in_sz)
        return total // 2, total - total // 2, out
    out = (in_sz - ke) // stride + 1
    return 0, 0, out


def _conv_acc(c: Call, x: np.ndarray, w_ochw: np.ndarray, group: int) -> np.ndarray:
    """Exact ``sum (x - zx) * w`` of an NHWC input and ``[O, C/group, KH, KW]`` weights."""
    strides, dils, (pt, pb, pl, pr), _ = _geometry(c, x.shape, *w_ochw.shape[2:])
    zx = c.ins[0].q.zp if _is_q(c.ins[0]) else 0
    xc = np.moveaxis(x, 3, 1).astype(F32) - F32(zx)
    acc = conv_accumulate(
        xc, w_ochw, group=group, strides=list(strides), dilations=list(dils), pads=[pt, pl, pb, pr]
    )
    return np.moveaxis(acc, 1, 3)


def _geometry(c: Call, x_shape, kh: int, kw: int):
    o = c.opts
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = o.get("dilation_h_factor", 1) or 1, o.get("dilation_w_factor", 1) or 1
    pt, pb, oh = _same_pads(x_shape[1], kh, sh, dh, o.get("padding", "VALID"))
    pl, pr, ow = _same_pads(x_shape[2], kw, sw, dw, o.get("padding", "VALID"))
    if oh <= 0 or ow <= 0:
        raise InterpError(f"kernel {kh}x{kw} does not fit input {list(x_shape)}")
    return (sh, sw), (dh, dw), (pt, pb, pl, pr), (oh, ow)


def _taps_nhwc(xp: np.ndarray, kh, kw, strides, dils, out):
    """``(i, j, view)`` per kernel tap: the padded NHWC input each tap reads."""
    (sh, sw), (dh, dw), (oh, ow) = strides, dils, out
    for i in range(kh):
        for j in range(kw):
            yield (
                i,
                j,
                xp[
                    :,
                    i * dh : i * dh + (oh - 1) * sh + 1 : sh,
                    j * dw : j * dw + (ow - 1) * sw + 1 : sw,
                ],
            )


def _centred_nhwc(c: Call, x: np.ndarray, pads) -> np.ndarray:
    zx = c.ins[0].q.zp if _is_q(c.ins[0]) else 0
    xc = x.astype(F32)
    if zx:
        xc -= F32(zx)
    pt, pb, pl, pr = pads
    if pt or pb or pl or pr:  # padding reads the zero point: 0 once centred
        xc = np.pad(xc, [(0, 0), (pt, pb), (pl, pr), (0, 0)])
    return xc


def _conv_nhwc(c: Call, x: np.ndarray, w_flat: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Exact int64 ``sum (x - zx) * w`` in NHWC; ``w_flat`` is ``[KH*KW*C, O]`` centred float32.

    im2col as ``[N, OH, OW, KH*KW*C]`` (a 1x1 stride-1 convolution reads the input as is), then
    one GEMM whose partial sums stay below 2**24 in float32, or float64 when they could not.
    """
    strides, dils, pads, out = _geometry(c, x.shape, kh, kw)
    xc = _centred_nhwc(c, x, pads)
    n, cin = x.shape[0], x.shape[3]
    if kh == kw == 1 and strides == (1, 1):
        cols = xc
    else:
        cols = np.empty((n, *out, kh * kw * cin), F32)
        for i, j, v in _taps_nhwc(xc, kh, kw, strides, dils, out):
            k = (i * kw + j) * cin
            cols[..., k : k + cin] = v
    terms = cols.shape[-1]
    shape = (*cols.shape[:-1], w_flat.shape[1])
    cols = cols.reshape(-1, terms)  # one 2-D GEMM, not one per image row
    bound = float(np.abs(cols).max(initial=0)) * float(np.abs(w_flat).max(initial=0)) * terms
    dt = F32 if bound < 2**24 else np.float64
    acc = cols.astype(dt, copy=False) @ w_flat.astype(dt, copy=False)
    return np.rint(acc).astype(I64).reshape(shape)


def _dw_nhwc(c: Call, x: np.ndarray, w: np.ndarray, mult: int) -> np.ndarray:
    """Exact depthwise sum in NHWC; ``w`` is ``[KH, KW, C*M]`` centred float32."""
    kh, kw = w.shape[:2]
    strides, dils, pads, out = _geometry(c, x.shape, kh, kw)
    xc = _centred_nhwc(c, x, pads)
    if mult > 1:
        xc = np.repeat(xc, mult, axis=3)
    bound = float(np.abs(xc).max(initial=0)) * float(np.abs(w).max(initial=0)) * kh * kw
    dt = F32 if bound < 2**24 else np.float64
    acc = np.zeros((x.shape[0], *out, w.shape[2]), dt)
    for i, j, v in _taps_nhwc(xc, kh, kw, strides, dils, out):
        acc += v * w[i, j].astype(dt)
    return np.rint(acc).astype(I64)


def _weights(c: Call, key: str, make) -> np.ndarray:
    """``make()``, cached across runs when the weights are a constant tensor."""
    if c.ins[1] is None or not c.ins[1].is_constant:
        return make()
    if key not in c.cache:
        c.cache[key] = make()
    return c.cache[key]


def _requant_conv(c: Call, acc: np.ndarray, channels: int, kind: str) -> np.ndarray:
    """Bias added; requantized per output channel with the arithmetic of ``c.arith``."""
    x_t, w_t, y_t = c.ins[0], c.ins[1], c.out
    sx = F32(x_t.q.s)
    sw = _per_channel(w_t, channels).astype(F32)
    sy = F32(y_t.q.s)
    bias = c.ins[2] if len(c.ins) > 2 else None
    if bias is not None and bias.data is not None:
        acc = acc + bias.data.astype(I64)
    acc = wrap32(acc)
    if c.arith == "xnnpack":
        scale = (sx * sw) / sy
        return _requant_f32(acc, scale, c)
    if c.arith == "ref" and kind == "fc":
        real = np.float64(sx) * sw.astype(np.float64) / np.float64(sy)
        v = round_half_away(acc.astype(np.float64) * real).astype(I64)
        return _finish(c, v + y_t.q.zp)
    real = np.float64(sx) * sw.astype(np.float64) / np.float64(sy)
    m, s = quantize_multipliers(real)
    ruy = c.arith == "builtin" and kind in ("conv", "fc")
    v = mbqm_ruy(acc, m, s) if ruy else mbqm(acc, m, s)
    return _finish(c, v + y_t.q.zp)


def _float_bias(c: Call, y: np.ndarray) -> np.ndarray:
    bias = c.ins[2] if len(c.ins) > 2 else None
    if bias is not None and bias.data is not None:
        y = (y + bias.data.astype(np.float64)).astype(F32)
    return _float_act(c, y.astype(F32))


@tkernel("CONV_2D", exact=exact_if_integer)
def conv_2d(c: Call, x, w, b=None):
    w = np.asarray(w)
    group = x.shape[3] // w.shape[3]
    if x.dtype.kind == "f":
        wt = np.moveaxis(w.astype(np.float64), 3, 1)
        acc = _conv_acc_float(c, x, wt, group)
        return _float_bias(c, acc)
    if group == 1:
        wf = _weights(c, "wf", lambda: _centre_w(c, w).reshape(w.shape[0], -1).T.copy())
        acc = _conv_nhwc(c, x, wf, w.shape[1], w.shape[2])
        return _requant_conv(c, acc, w.shape[0], "conv")
    wc = _weights(c, "w", lambda: np.moveaxis(_centre_w(c, w), 3, 1))
    acc = _conv_acc(c, x, wc, group)
    return _requant_conv(c, np.rint(acc).astype(I64), w.shape[0], "conv")


def _centre_w(c: Call, w: np.ndarray) -> np.ndarray:
    q = c.ins[1].quant
    zp = 0 if q is None else q.zero_point
    if np.size(zp) > 1:
        zp = np.asarray(zp).reshape((-1,) + (1,) * (w.ndim - 1))
        if c.op.op == "DEPTHWISE_CONV_2D":
            zp = np.asarray(q.zero_point).reshape((1,) * (w.ndim - 1) + (-1,))
    return (w.astype(F32) - np.asarray(zp, F32)).astype(F32)


def _conv_acc_float(c: Call, x: np.ndarray, w_ochw: np.ndarray, group: int) -> np.ndarray:
    """A float64 convolution (one rounding at the end): close to LiteRT, not its order."""
    kh, kw = w_ochw.shape[2:]
    strides, dils, (pt, pb, pl, pr), _ = _geometry(c, x.shape, kh, kw)
    xc = np.moveaxis(x, 3, 1).astype(np.float64)
    cols = im2col(xc, (kh, kw), list(strides), list(dils), [pt, pl, pb, pr])
    n, cin = xc.shape[:2]
    osp = cols.shape[3:]
    cg = cin // group
    m = w_ochw.shape[0]
    cols = cols.reshape(n, group, cg * kh * kw, -1)
    wg = w_ochw.reshape(group, m // group, cg * kh * kw)[None]
    acc = np.matmul(wg, cols).reshape(n, m, *osp)
    return np.moveaxis(acc, 1, 3)


@tkernel("DEPTHWISE_CONV_2D", exact=exact_if_integer)
def depthwise_conv_2d(c: Call, x, w, b=None):
    w = np.asarray(w)  # [1, KH, KW, C*M]
    cin = x.shape[3]
    if x.dtype.kind == "f":
        wt = np.moveaxis(w.astype(np.float64), 3, 0)  # [C*M, 1, KH, KW]
        return _float_bias(c, _conv_acc_float(c, x, wt, cin))
    wc = _weights(c, "wd", lambda: _centre_w(c, w)[0])
    acc = _dw_nhwc(c, x, wc, w.shape[3] // cin)
    return _requant_conv(c, acc, w.shape[3], "dw")


@tkernel("FULLY_CONNECTED", exact=exact_if_integer)
def fully_connected(c: Call, x, w, b=None):
    w = np.asarray(w)
    k = w.shape[1]
    x2 = x.reshape(-1, k)
    if c.opts.get("keep_num_dims"):
        oshape = (*x.shape[:-1], w.shape[0])
    else:
        oshape = (x2.shape[0], w.shape[0])
    if x.dtype.kind == "f":
        y = x2.astype(np.float64) @ w.astype(np.float64).T
        return _float_bias(c, y).reshape(oshape)
    wc = _weights(c, "w", lambda: _centre_w(c, w))
    zx = c.ins[0].q.zp
    acc = _matmul_exact(x2.astype(F32) - F32(zx), wc.T)
    return _requant_conv(c, acc, w.shape[0], "fc").reshape(oshape)


def _matmul_exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact int64 ``a @ b`` of small-integer float32 operands (chunked below 2**24)."""
    k = a.shape[-1]
    pm = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0))
    chunk = k if pm * k < 2**24 else max(1, int((2**24 - 1) // max(pm, 1)))
    if chunk >= k:
        return np.rint(np.matmul(a, b)).astype(I64)
    acc = np.zeros((*a.shape[:-1], b.shape[-1]), np.float64)
    for s in range(0, k, chunk):
        acc += np.matmul(a[..., s : s + chunk], b[..., s : s + chunk, :])
    return np.rint(acc).astype(I64)


@tkernel("BATCH_MATMUL", exact=exact_if_integer)
def batch_matmul(c: Call, a, b):
    if c.opts.get("adj_x"):
        a = np.swapaxes(a, -1, -2)
    if c.opts.get("adj_y"):
        b = np.swapaxes(b, -1, -2)
    if a.dtype.kind == "f":
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(F32)
    za, zb = c.ins[0].q.zp, c.ins[1].q.zp
    acc = _matmul_exact(a.astype(F32) - F32(za), b.astype(F32) - F32(zb))
    y_t = c.out
    if c.arith == "xnnpack":
        scale = F32(F32(F32(c.ins[0].q.s) * F32(c.ins[1].q.s)) / F32(y_t.q.s))
        return _requant_f32(acc, scale, c)
    real = np.float64(F32(c.ins[0].q.s)) * np.float64(F32(c.ins[1].q.s)) / np.float64(y_t.q.s)
    m, s = quantize_multiplier(float(real))
    v = mbqm(acc, m, s)
    return _finish(c, v + y_t.q.zp)


@tkernel("TRANSPOSE_CONV", exact=exact_if_integer)
def transpose_conv(c: Call, out_shape, w, x, b=None):
    """Output ``[N, OH, OW, O]`` from the gradient of a convolution with OHWI weights."""
    o = c.opts
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    oshape = [int(v) for v in np.asarray(out_shape)]
    n, oh, ow, oc = oshape
    _, kh, kw, _ = w.shape
    pt, _, _ = _same_pads(oh, kh, sh, 1, o.get("padding", "VALID"))
    pl, _, _ = _same_pads(ow, kw, sw, 1, o.get("padding", "VALID"))
    # pad amounts of the forward conv: TFLite's ComputePaddingHeightWidth on the output size
    ih, iw = x.shape[1:3]
    if x.dtype.kind == "f":
        xc = x.astype(np.float64)
        wc = w.astype(np.float64)
    else:
        xc = x.astype(F32) - F32(c.ins[2].q.zp)
        wc = _weights(c, "w", lambda: _centre_w(c, np.asarray(w)))
    full_h = (ih - 1) * sh + kh
    full_w = (iw - 1) * sw + kw
    integer = x.dtype.kind != "f"
    acc = np.zeros(
        (n, max(full_h, pt + oh), max(full_w, pl + ow), oc), I64 if integer else np.float64
    )
    for i in range(kh):
        for j in range(kw):
            # [N, IH, IW, C] x [O, C] -> [N, IH, IW, O]; integer sums exact (LiteRT: int32)
            wij = wc[:, i, j, :].T
            contrib = _matmul_exact(xc, wij) if integer else np.matmul(xc, wij)
            acc[:, i : i + (ih - 1) * sh + 1 : sh, j : j + (iw - 1) * sw + 1 : sw] += contrib
    acc = acc[:, pt : pt + oh, pl : pl + ow]
    bias_i = 3
    if x.dtype.kind == "f":
        if len(c.ins) > bias_i and c.ins[bias_i] is not None and c.ins[bias_i].data is not None:
            acc = acc + c.ins[bias_i].data.astype(np.float64)
        return _float_act(c, acc.astype(F32))
    if len(c.ins) > bias_i and c.ins[bias_i] is not None and c.ins[bias_i].data is not None:
        acc = acc + c.ins[bias_i].data.astype(I64)
    acc = wrap32(acc)
    sx, sy = F32(c.ins[2].q.s), F32(c.out.q.s)
    swc = _per_channel(c.ins[1], oc).astype(F32)
    if c.arith == "xnnpack":
        return _requant_f32(acc, (sx * swc) / sy, c)
    real = np.float64(sx) * swc.astype(np.float64) / np.float64(sy)
    m, s = quantize_multipliers(real)
    return _finish(c, mbqm(acc, m, s) + c.out.q.zp)


# --------------------------------------------------------------------------- elementwise


def _xnn_add_params(sa: float, sb: float, sy: float):
    ra = F32(F32(sa) / F32(sy))
    rb = F32(F32(sb) / F32(sy))
    mx = max(abs(ra), abs(rb))
    exp = int((np.asarray(mx, F32).view(np.uint32) >> 23) & 0xFF) - 127
    shift = 20 - exp
    ma = int(np.rint(np.float64(abs(ra)) * 2.0**shift))
    mb = int(np.rint(np.float64(abs(rb)) * 2.0**shift))
    return (ma if ra >= 0 else -ma), (mb if rb >= 0 else -mb), shift


@tkernel("ADD", "SUB", exact=True)  # float32: one IEEE add, exact too
def add_sub(c: Call, a, b):
    sub = c.op.op == "SUB"
    if a.dtype.kind == "f":
        y = (a - b) if sub else (a + b)
        return _float_act(c, y.astype(F32))
    return _via_table2(c, a, b, lambda u, v: _add_sub_int(c, u, v, sub))


def _via_table2(c: Call, a: np.ndarray, b: np.ndarray, fn) -> np.ndarray:
    """A binary integer kernel of two int8 tensors, evaluated once on all 256 x 256 pairs
    and then looked up (broadcasting as the operands do)."""
    i8 = np.dtype(np.int8)
    if a.dtype != i8 or b.dtype != i8:
        return fn(a, b)
    tab = c.cache.get("table88")
    if tab is None:
        g = np.arange(-128, 128).astype(np.int8)
        tab = c.cache["table88"] = np.asarray(fn(g[:, None], g[None, :]))
    return tab[a.astype(np.intp) + 128, b.astype(np.intp) + 128]


def _add_sub_int(c: Call, a: np.ndarray, b: np.ndarray, sub: bool) -> np.ndarray:
    qa, qb, qy = c.ins[0].q, c.ins[1].q, c.out.q
    ai, bi = a.astype(I64), b.astype(I64)
    if c.arith == "xnnpack":
        sb = -qb.s if sub else qb.s
        ma, mb, shift = _xnn_add_params(qa.s, sb, qy.s)
        bias = (1 << (shift - 1)) - ma * qa.zp - mb * qb.zp
        acc = bias + ai * ma + bi * mb
        return _finish(c, (acc >> shift) + qy.zp)
    left = 20
    twice_max = 2 * max(np.float64(qa.s), np.float64(qb.s))
    m1, s1 = quantize_multiplier(np.float64(qa.s) / twice_max)
    m2, s2 = quantize_multiplier(np.float64(qb.s) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left) * np.float64(qy.s)))
    x1 = mbqm((ai - qa.zp) * (1 << left), m1, s1)
    x2 = mbqm((bi - qb.zp) * (1 << left), m2, s2)
    raw = (x1 - x2) if sub else (x1 + x2)
    return _finish(c, mbqm(raw, mo, so) + qy.zp)


@tkernel("MUL", exact=True)  # float32: one IEEE multiply, exact too
def mul(c: Call, a, b):
    if a.dtype.kind == "f":
        return _float_act(c, (a * b).astype(F32))
    return _via_table2(c, a, b, lambda u, v: _mul_int(c, u, v))


def _mul_int(c: Call, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    qa, qb, qy = c.ins[0].q, c.ins[1].q, c.out.q
    p = (a.astype(I64) - qa.zp) * (b.astype(I64) - qb.zp)
    # both XNNPACK and mul.cc's Prepare (`double real_multiplier = input1->params.scale *
    # input2->params.scale / output->params.scale`) multiply and divide the scales in float32
    scale = F32(F32(F32(qa.s) * F32(qb.s)) / F32(qy.s))
    if c.arith == "xnnpack":
        return _requant_f32(p, scale, c)
    m, s = quantize_multiplier(float(scale))
    return _finish(c, mbqm(p, m, s) + qy.zp)


# --------------------------------------------------------------------------- lookup tables


def _via_table(c: Call, x: np.ndarray, fn) -> np.ndarray:
    """An elementwise integer kernel ``fn`` of an 8-bit tensor, evaluated once on all 256
    values and then looked up (the same numbers, at table speed)."""
    if x.dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        return fn(x)
    lo = -128 if x.dtype == np.int8 else 0
    tab = c.cache.get("table8")
    if tab is None:
        tab = c.cache["table8"] = np.asarray(fn(np.arange(lo, lo + 256).astype(x.dtype)))
    return tab[x.astype(np.intp) - lo]


def _lut(c: Call, key: str, fn) -> np.ndarray:
    """A 256-entry int8 table indexed by ``x + 128``; ``fn(dequantized float32 array)``."""
    if key not in c.cache:
        qx = c.ins[0].q
        xs = np.arange(-128, 128, dtype=I64)
        deq = (F32(qx.s) * (xs - qx.zp).astype(F32)).astype(F32)
        c.cache[key] = np.asarray(fn(deq, xs), I64)
    return c.cache[key]


def _apply_lut(x: np.ndarray, table: np.ndarray, dtype) -> np.ndarray:
    return table[x.astype(I64) + 128].astype(dtype)


@tkernel("LOGISTIC", exact=exact_if_integer)
def logistic(c: Call, x):
    if x.dtype.kind == "f":
        with np.errstate(over="ignore"):
            return (F32(1) / (F32(1) + libm("expf", -x))).astype(F32)
    qy = c.out.q
    lo, hi = QRANGE[c.out.dtype]

    def f(v, _xs):
        with np.errstate(over="ignore"):
            e = libm("expf", -v)
            sig = (F32(1) / (F32(1) + e)).astype(F32)
        r = sig.astype(np.float64) / np.float64(F32(qy.s))
        q = np.rint(r) if c.arith == "xnnpack" else round_half_away(r)
        return np.clip(q + qy.zp, lo, hi)

    return _apply_lut(x, _lut(c, "lut", f), c.out.dtype)


@tkernel("TANH", exact=exact_if_integer)
def tanh(c: Call, x):
    if x.dtype.kind == "f":
        return libm("tanhf", x)
    qy = c.out.q
    lo, hi = QRANGE[c.out.dtype]

    def f(v, _xs):
        t = libm("tanhf", v)
        inv = F32(1) / F32(qy.s)
        r = (t * inv).astype(F32).astype(np.float64)
        q = np.rint(r) if c.arith == "xnnpack" else round_half_away(r)
        return np.clip(q + qy.zp, lo, hi)

    return _apply_lut(x, _lut(c, "lut", f), c.out.dtype)


# --------------------------------------------------------------------------- activations


@tkernel("RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", exact=exact_if_integer)
def relu(c: Call, x):
    lo_f, hi_f = {
        "RELU": (0.0, math.inf),
        "RELU6": (0.0, 6.0),
        "RELU_N1_TO_1": (-1.0, 1.0),
        "RELU_0_TO_1": (0.0, 1.0),
    }[c.op.op]
    if x.dtype.kind == "f":
        return np.minimum(np.maximum(x, F32(lo_f)), F32(hi_f)).astype(F32)
    qx, qy = c.ins[0].q, c.out.q
    qlo, qhi = QRANGE[c.out.dtype]
    amin = max(qlo, qy.zp + int(round_half_away(np.float64(F32(F32(lo_f) / F32(qy.s))))))
    amax = (
        qhi
        if math.isinf(hi_f)
        else min(qhi, qy.zp + int(round_half_away(np.float64(F32(F32(hi_f) / F32(qy.s))))))
    )
    if c.arith == "xnnpack":  # clamp: same parameters in and out
        return np.clip(x.astype(I64), amin, amax).astype(c.out.dtype)
    m, s = quantize_multiplier(float(np.float64(qx.s) / np.float64(qy.s)))

    def f(v):
        return np.clip(qy.zp + mbqm(v.astype(I64) - qx.zp, m, s), amin, amax).astype(c.out.dtype)

    return _via_table(c, x, f)


@tkernel("LEAKY_RELU", exact=exact_if_integer)
def leaky_relu(c: Call, x):
    alpha = F32(c.opts.get("alpha", 0.2))
    if x.dtype.kind == "f":
        return np.where(x >= 0, x, x * alpha).astype(F32)
    return _via_table(c, x, lambda v: _leaky_relu_int(c, v, alpha))


def _leaky_relu_int(c: Call, x: np.ndarray, alpha: np.float32) -> np.ndarray:
    qx, qy = c.ins[0].q, c.out.q
    lo, hi = QRANGE[c.out.dtype]
    xi = x.astype(I64)
    if c.arith == "xnnpack":
        pos = F32(F32(qx.s) / F32(qy.s))
        neg = F32(pos * alpha)
        pm = int(np.rint(np.float64(F32(F32(-256.0) * pos))))
        nm = int(np.rint(np.float64(F32(F32(-256.0) * neg))))
        bias = (qy.zp << 8) + 0x80
        acc = qx.zp - xi
        acc = bias + acc * np.where(acc >= 0, nm, pm)
        return np.clip(acc >> 8, lo, hi).astype(c.out.dtype)
    ma, sa = quantize_multiplier(float(F32(F32(F32(qx.s) * alpha) / F32(qy.s))))
    mi, si = quantize_multiplier(float(F32(F32(qx.s) / F32(qy.s))))
    v = xi - qx.zp
    out = qy.zp + np.where(v >= 0, mbqm(v, mi, si), mbqm(v, ma, sa))
    return np.clip(out, lo, hi).astype(c.out.dtype)


def _sdhm16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = np.asarray(a, I64) * np.asarray(b, I64)
    q = np.abs(ab) >> 15
    r = np.where(ab < 0, -q, q)
    return np.where((a == -32768) & (b == -32768), 32767, r)


def _sat16(v: np.ndarray) -> np.ndarray:
    return np.clip(v, -32768, 32767)


def _down16(m: int) -> int:
    if m >= 2**31 - 1 - (1 << 15):
        return 32767
    return (m + (1 << 15)) >> 16


@tkernel("HARD_SWISH", exact=exact_if_integer)
def hard_swish(c: Call, x):
    if x.dtype.kind == "f":
        r = np.minimum(np.maximum(x + F32(3), F32(0)), F32(6))
        return (x * r / F32(6)).astype(F32)
    return _via_table(c, x, lambda v: _hard_swish_int(c, v))


def _hard_swish_int(c: Call, x: np.ndarray) -> np.ndarray:
    qx, qy = c.ins[0].q, c.out.q
    hires = F32(F32(1.0 / 128.0) * F32(qx.s))
    om, oe = quantize_multiplier(float(F32(hires / F32(qy.s))))
    rm, re_ = quantize_multiplier(float(F32(hires / F32(3.0 / 32768.0))))
    om16, rm16 = _down16(om), _down16(rm)
    v = x.astype(I64) - qx.zp
    hi_in = _sat16(v * 128)
    pre_out = srdhm(hi_in, om16, bits=16)
    rel = hi_in
    if re_ > 0:
        rel = _sat16(rel * (1 << (re_ - 1)))
    rel = srdhm(rel, rm16, bits=16)
    if re_ > 0:
        rel = _sat16(rel * 2)
    if re_ < 0:
        rel = rdbpot(rel, -re_)
    rel = (rel + (1 << 15)) >> 1
    pre = _sdhm16(rel, pre_out)
    out = rdbpot(pre, -oe) + qy.zp
    lo, hi = QRANGE[c.out.dtype]
    return np.clip(out, lo, hi).astype(c.out.dtype)


# --------------------------------------------------------------------------- softmax


@tkernel("SOFTMAX", arith=("xnnpack", "builtin"), exact=exact_if_integer)
def softmax(c: Call, x):
    beta = F32(c.opts.get("beta", 1.0))
    if x.dtype.kind == "f":
        z = (x - x.max(axis=-1, keepdims=True)) * beta
        e = libm("expf", z.astype(F32))
        return (e / e.sum(axis=-1, keepdims=True, dtype=F32)).astype(F32)
    qx, qy = c.ins[0].q, c.out.q
    if "table" not in c.cache:
        scale = F32(-F32(qx.s) * beta)
        vals = np.arange(256, dtype=np.float32)
        tab = np.empty(256, F32)
        tab[255 - np.arange(256)] = libm("expf", (scale * vals).astype(F32))
        c.cache["table"] = tab
    tab = c.cache["table"]
    d = x.shape[-1]
    x2 = x.reshape(-1, d).astype(I64)
    mx = x2.max(axis=1, keepdims=True)
    vals = tab[255 - mx + x2]
    s = np.zeros((x2.shape[0],), F32)
    for j in range(d):  # sequential float32 sum, as the C loop adds
        s = (s + vals[:, j]).astype(F32)
    inv = (F32(1) / (s * F32(qy.s)).astype(F32)).astype(F32)
    p = (vals * inv[:, None]).astype(F32)
    q = round_half_away(p.astype(np.float64)).astype(I64) + qy.zp
    lo, hi = QRANGE[c.out.dtype]
    return np.clip(q, lo, hi).astype(c.out.dtype).reshape(x.shape)


# --------------------------------------------------------------------------- quantize


@tkernel("QUANTIZE", exact=True)
def quantize(c: Call, x):
    qy = c.out.q
    lo, hi = QRANGE[c.out.dtype]
    if x.dtype.kind == "f":
        if not qy.per_tensor:
            raise InterpError("per-channel QUANTIZE is not supported")
        if c.arith == "ref":
            v = round_half_away((x / F32(qy.s)).astype(F32).astype(np.float64))
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                v = np.rint((x * (F32(1) / F32(qy.s))).astype(F32))
        v = np.clip(np.nan_to_num(v.astype(np.float64)) + qy.zp, lo, hi)
        return v.astype(c.out.dtype)
    return _via_table(c, x, lambda v: _requantize(c, v))


def _requantize(c: Call, x: np.ndarray) -> np.ndarray:
    qx, qy = c.ins[0].q, c.out.q
    lo, hi = QRANGE[c.out.dtype]
    xi = x.astype(I64)
    if c.arith == "xnnpack":
        r = F32(F32(qx.s) / F32(qy.s))
        mult = int(np.rint(np.float64(F32(F32(-256.0) * r))))
        bias = (qy.zp << 8) + 0x80
        acc = bias + (qx.zp - xi) * mult
        return np.clip(acc >> 8, lo, hi).astype(c.out.dtype)
    m, s = quantize_multiplier(float(np.float64(qx.s) / np.float64(qy.s)))
    return np.clip(mbqm(xi - qx.zp, m, s) + qy.zp, lo, hi).astype(c.out.dtype)


@tkernel("DEQUANTIZE", exact=True)
def dequantize(c: Call, x):
    q = c.ins[0].q
    if x.dtype == np.float16:
        return x.astype(F32)
    if q.per_tensor:
        return ((x.astype(I64) - q.zp).astype(F32) * F32(q.s)).astype(F32)
    shape = [1] * x.ndim
    shape[q.dim] = -1
    zp = q.zero_point.reshape(shape)
    return ((x.astype(I64) - zp).astype(F32) * q.scale.reshape(shape)).astype(F32)


# --------------------------------------------------------------------------- reductions, pooling


def _axes(c: Call, ndim: int) -> tuple[int, ...]:
    ax = np.atleast_1d(c.const(1)).astype(I64)
    return tuple(sorted({int(a) % ndim for a in ax}))


@tkernel("MEAN", exact=exact_if_integer)
def mean(c: Call, x, axes_in):
    axes = _axes(c, x.ndim)
    keep = bool(c.opts.get("keep_dims", False))
    if x.dtype.kind == "f":
        return np.mean(x.astype(np.float64), axis=axes, keepdims=keep).astype(F32)
    qx, qy = c.ins[0].q, c.out.q
    n = math.prod(x.shape[a] for a in axes)
    lo, hi = QRANGE[c.out.dtype]
    acc = (x.astype(I64) - qx.zp).sum(axis=axes, keepdims=keep)
    if c.arith == "xnnpack":
        scale = F32(F32(F32(qx.s) / F32(qy.s)) / F32(n))
        v = np.rint((acc.astype(F32) * scale).astype(F32)).astype(I64) + qy.zp
        return np.clip(v, lo, hi).astype(c.out.dtype)
    m, s = quantize_multiplier(float(np.float64(qx.s) / np.float64(qy.s)))
    # measured: the spatial (H, W) mean of BUILTIN_REF folds 1/n into the multiplier too; the
    # older "requantize, then divide by n with rounding" form misses by 1 LSB on 7x7 inputs
    raw = x.astype(I64).sum(axis=axes, keepdims=keep)
    # reference_ops::QuantizedMeanOrSum: 1/n folded into the multiplier
    sh = min(n.bit_length() - 1, 32, 31 + s)
    m2 = (m << sh) // n
    v = mbqm(wrap32(raw - qx.zp * n), m2, s - sh) + qy.zp
    return np.clip(v, lo, hi).astype(c.out.dtype)


def _pool_windows(c: Call, x: np.ndarray, fill):
    o = c.opts
    fh, fw = o.get("filter_height", 1), o.get("filter_width", 1)
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    pt, pb, oh = _same_pads(x.shape[1], fh, sh, 1, o.get("padding", "VALID"))
    pl, pr, ow = _same_pads(x.shape[2], fw, sw, 1, o.get("padding", "VALID"))
    xp = np.pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)], constant_values=fill)
    wins = [
        xp[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw]
        for i in range(fh)
        for j in range(fw)
    ]
    return wins, (pt, pl, oh, ow, fh, fw, sh, sw)


@tkernel("MAX_POOL_2D", exact=True)
def max_pool_2d(c: Call, x):
    if x.dtype.kind == "f":
        wins, _ = _pool_windows(c, x, -np.inf)
        return _float_act(c, np.max(wins, axis=0).astype(F32))
    wins, _ = _pool_windows(c, x.astype(I64), -(2**31))
    return _finish(c, np.max(wins, axis=0))


@tkernel("AVERAGE_POOL_2D", exact=exact_if_integer)
def average_pool_2d(c: Call, x):
    ones = np.ones((1, *x.shape[1:3], 1), I64)
    cnt_w, _ = _pool_windows(c, ones, 0)
    count = np.sum(cnt_w, axis=0)
    if x.dtype.kind == "f":
        wins, _ = _pool_windows(c, x.astype(np.float64), 0.0)
        return _float_act(c, (np.sum(wins, axis=0) / count).astype(F32))
    wins, _ = _pool_windows(c, x.astype(I64), 0)
    acc = np.sum(wins, axis=0)
    v = np.where(acc > 0, (acc + count // 2) // count, -((-acc + count // 2) // count))
    return _finish(c, v)


# --------------------------------------------------------------------------- data movement


@tkernel("RESHAPE", "SQUEEZE", "EXPAND_DIMS", exact=True)
def reshape(c: Call, x, *_):
    return x.reshape(c.out.shape)


@tkernel("DEPTH_TO_SPACE", exact=True)
def depth_to_space(c: Call, x):
    b = int(c.opts["block_size"])
    n, h, w, d = x.shape
    y = x.reshape(n, h, w, b, b, d // (b * b)).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, h * b, w * b, d // (b * b))


@tkernel("SPACE_TO_DEPTH", exact=True)
def space_to_depth(c: Call, x):
    b = int(c.opts["block_size"])
    n, h, w, d = x.shape
    y = x.reshape(n, h // b, b, w // b, b, d).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, h // b, w // b, b * b * d)


@tkernel("TRANSPOSE", exact=True)
def transpose(c: Call, x, perm):
    return np.transpose(x, [int(p) for p in np.asarray(perm)])


def _same_q(c: Call, i: int = 0) -> bool:
    a, b = c.ins[i], c.out
    if a is None or a.quant is None or b.quant is None:
        return True
    return a.q.s == b.q.s and a.q.zp == b.q.zp


@tkernel("CONCATENATION", exact=True)
def concatenation(c: Call, *xs):
    axis = int(c.opts.get("axis", 0)) % xs[0].ndim
    if xs[0].dtype.kind == "f":
        return _float_act(c, np.concatenate(xs, axis=axis))
    bad = [c.ins[i].name for i in range(len(xs)) if not _same_q(c, i)]
    if bad:  # LiteRT refuses the model in Prepare under every resolver (measured)
        raise InterpError(
            f"int8 CONCATENATION input {bad[0]!r} has other quantization parameters than the "
            "output; TFLite requires them equal"
        )
    return np.concatenate(xs, axis=axis)


@tkernel("PAD", "PADV2", exact=True)
def pad(c: Call, x, pads, value=None):
    p = np.asarray(pads).astype(I64).reshape(-1, 2)
    if value is not None:
        fill = np.asarray(value).reshape(())
    elif x.dtype.kind in "iu" and c.out.quant is not None:
        fill = c.out.q.zp
    else:
        fill = 0
    return np.pad(x, [tuple(r) for r in p], constant_values=fill)


@tkernel("SPLIT", exact=True)
def split(c: Call, axis, x):
    n = int(c.opts.get("num_splits", len(c.outs)))
    return tuple(np.split(x, n, axis=int(np.asarray(axis).reshape(())) % x.ndim))


@tkernel("SPLIT_V", exact=True)
def split_v(c: Call, x, sizes, axis):
    ax = int(np.asarray(axis).reshape(())) % x.ndim
    sz = [int(s) for s in np.asarray(sizes)]
    if -1 in sz:
        k = sz.index(-1)
        sz[k] = x.shape[ax] - (sum(sz) + 1)
    return tuple(np.split(x, np.cumsum(sz)[:-1], axis=ax))


@tkernel("GATHER", exact=True)
def gather(c: Call, x, idx):
    axis = int(c.opts.get("axis", 0)) % x.ndim
    bd = int(c.opts.get("batch_dims", 0))
    if bd:
        raise InterpError("GATHER with batch_dims is not supported")
    i = np.asarray(idx).astype(I64)
    if (i < 0).any() or (i >= x.shape[axis]).any():
        raise InterpError("GATHER index out of range")
    return np.take(x, i, axis=axis)


@tkernel("SLICE", exact=True)
def slice_(c: Call, x, begin, size):
    b = [int(v) for v in np.asarray(begin)]
    s = [int(v) for v in np.asarray(size)]
    return x[
        tuple(
            slice(bi, x.shape[k] if si == -1 else bi + si)
            for k, (bi, si) in enumerate(zip(b, s, strict=True))
        )
    ]


@tkernel("STRIDED_SLICE", exact=True)
def strided_slice(c: Call, x, begin, end, strides=None):
    o = c.opts
    if o.get("ellipsis_mask") or o.get("new_axis_mask"):
        raise InterpError("STRIDED_SLICE with ellipsis or new-axis masks is not supported")
    b = [int(v) for v in np.asarray(begin)]
    e = [int(v) for v in np.asarray(end)]
    st_ = [1] * len(b) if strides is None else [int(v) for v in np.asarray(strides)]
    bm, em, sm = o.get("begin_mask", 0), o.get("end_mask", 0), o.get("shrink_axis_mask", 0)
    offset = bool(o.get("offset", False))
    idx = []
    for k in range(x.ndim):
        if k >= len(b):
            idx.append(slice(None))
            continue
        if sm >> k & 1:
            idx.append(b[k] % x.shape[k] if b[k] < 0 else b[k])
            continue
        bk = None if bm >> k & 1 else b[k]
        ek = None if em >> k & 1 else (b[k] + e[k] if offset else e[k])
        idx.append(slice(bk, ek, st_[k]))
    return np.asarray(x[tuple(idx)]).reshape(c.out.shape)


def _nearest_index(out_sz: int, in_sz: int, align: bool, half: bool) -> np.ndarray:
    scale = F32(in_sz - 1) / F32(out_sz - 1) if align and out_sz > 1 else F32(in_sz) / F32(out_sz)
    off = F32(0.5) if half else F32(0)
    v = ((np.arange(out_sz).astype(F32) + off) * scale).astype(F32).astype(np.float64)
    r = round_half_away(v) if align else np.floor(v)
    r = np.minimum(r.astype(I64), in_sz - 1)
    if half:
        r = np.maximum(r, 0)
    return r


@tkernel("RESIZE_NEAREST_NEIGHBOR", exact=True)
def resize_nearest(c: Call, x, size):
    oh, ow = (int(v) for v in np.asarray(size))
    align = bool(c.opts.get("align_corners", False))
    half = bool(c.opts.get("half_pixel_centers", False))
    iy = _nearest_index(oh, x.shape[1], align, half)
    ix = _nearest_index(ow, x.shape[2], align, half)
    return x[:, iy][:, :, ix]


def _cdiv(a: np.ndarray, b: int) -> np.ndarray:
    """C integer division (truncates toward zero)."""
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


@tkernel("RESIZE_BILINEAR", exact=exact_if_integer)
def resize_bilinear(c: Call, x, size):
    oh, ow = (int(v) for v in np.asarray(size))
    _, ih, iw, _ = x.shape
    align = bool(c.opts.get("align_corners", False))
    half = bool(c.opts.get("half_pixel_centers", False))
    if x.dtype.kind == "f" or c.arith == "xnnpack":
        y0, y1, ay = _xnn_bilinear_coords(oh, ih, align, half)
        x0, x1, ax = _xnn_bilinear_coords(ow, iw, align, half)
        if x.dtype.kind == "f":
            ay_, ax_ = ay.astype(F32), ax.astype(F32)
            t = (
                x[:, y0][:, :, x0]
                + (x[:, y0][:, :, x1] - x[:, y0][:, :, x0]) * ax_[None, None, :, None]
            )
            b = (
                x[:, y1][:, :, x0]
                + (x[:, y1][:, :, x1] - x[:, y1][:, :, x0]) * ax_[None, None, :, None]
            )
            return (t + (b - t) * ay_[None, :, None, None]).astype(F32)
        wy = np.rint(ay.astype(np.float64) * 2048).astype(I64)
        wx = np.rint(ax.astype(np.float64) * 2048).astype(I64)
        xi = x.astype(I64)
        tl, tr = xi[:, y0][:, :, x0], xi[:, y0][:, :, x1]
        bl, br = xi[:, y1][:, :, x0], xi[:, y1][:, :, x1]
        wx4 = wx[None, None, :, None]
        t = (tl << 11) + (tr - tl) * wx4
        b = (bl << 11) + (br - bl) * wx4
        acc = (t << 11) + (b - t) * wy[None, :, None, None]
        return np.clip((acc + (1 << 21)) >> 22, *QRANGE[c.out.dtype]).astype(c.out.dtype)
    hs = ((1 << 10) * ih + oh // 2) // oh
    ws = ((1 << 10) * iw + ow // 2) // ow
    if align and oh > 1:
        hs = ((1 << 10) * (ih - 1) + (oh - 1) // 2) // (oh - 1)
    if align and ow > 1:
        ws = ((1 << 10) * (iw - 1) + (ow - 1) // 2) // (ow - 1)

    def coords(o: int, sc: int, size_in: int):
        v = np.arange(o, dtype=I64) * sc
        if half:
            v = v + sc // 2 - (1 << 9)
        lo = np.maximum(_cdiv(v, 1 << 10), 0)
        hi = np.minimum(_cdiv(v + (1 << 10) - 1, 1 << 10), size_in - 1)
        return v, lo, hi

    vy, y0, y1 = coords(oh, hs, ih)
    vx, x0, x1 = coords(ow, ws, iw)
    fy = (vy - (1 << 10) * y0)[None, :, None, None]
    fx = (vx - (1 << 10) * x0)[None, None, :, None]
    xi = x.astype(I64)
    out = (
        xi[:, y0][:, :, x0] * ((1 << 10) - fy) * ((1 << 10) - fx)
        + xi[:, y1][:, :, x0] * fy * ((1 << 10) - fx)
        + xi[:, y0][:, :, x1] * ((1 << 10) - fy) * fx
        + xi[:, y1][:, :, x1] * fy * fx
    )
    rnd = np.where(out > 0, 1 << 19, -(1 << 19))
    return _cdiv(out + rnd, 1 << 20).astype(c.out.dtype)


def _xnn_bilinear_coords(o: int, i: int, align: bool, half: bool):
    """XNNPACK's resize-bilinear indirection: top/bottom index and float32 fraction."""
    scale = F32(i - int(align)) / F32(o - int(align)) if o - int(align) > 0 else F32(0)
    imax = i - 1
    out = np.arange(o).astype(F32)
    if align or not half:
        v = (out * scale).astype(F32)
    else:
        off = F32(F32(0.5) * scale - F32(0.5))
        v = (out * scale + off).astype(F32)
        v = np.minimum(np.maximum(v, F32(0)), F32(imax))
    top = v.astype(np.int32).astype(I64)
    bot = np.minimum(top + 1, imax)
    return top, bot, (v - top.astype(F32)).astype(F32)


# --------------------------------------------------------------------------- float islands
# Operators the backend leaves in float32 (TFLite has no integer DIV or SQRT). IEEE-exact ones
# (one correctly rounded operation per element) are exact; approximations are not.


def _float_only(c: Call, x: np.ndarray) -> None:
    if x.dtype.kind != "f":
        raise InterpError(f"{c.op.op} of {x.dtype} tensors is not supported")


@tkernel("DIV", exact=True)
def div(c: Call, a, b):
    _float_only(c, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _float_act(c, (a / b).astype(F32))


# XNNPACK's float sqrt is a refined hardware rsqrt estimate (97 of 280 elements differ from
# the correctly rounded sqrt on this CPU): exact only in TFLite's own kernels
@tkernel("SQRT", exact=lambda c: c.arith != "xnnpack")
def sqrt(c: Call, x):
    _float_only(c, x)
    with np.errstate(invalid="ignore"):
        return np.sqrt(x).astype(F32)


@tkernel("RSQRT", exact=False)
def rsqrt(c: Call, x):
    _float_only(c, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1.0 / np.sqrt(x.astype(np.float64))).astype(F32)


@tkernel("EXP", exact=False)
def exp(c: Call, x):
    _float_only(c, x)
    return libm("expf", x)


@tkernel("MAXIMUM", "MINIMUM", exact=True)
def maximum(c: Call, a, b):
    return (np.maximum if c.op.op == "MAXIMUM" else np.minimum)(a, b)


@tkernel("ABS", "NEG", exact=True)
def abs_neg(c: Call, x):
    _float_only(c, x)
    return (np.abs(x) if c.op.op == "ABS" else -x).astype(F32)


@tkernel("SQUARE", exact=True)
def square(c: Call, x):
    _float_only(c, x)
    return (x * x).astype(F32)


@tkernel("SQUARED_DIFFERENCE", exact=True)
def squared_difference(c: Call, a, b):
    _float_only(c, a)
    d = (a - b).astype(F32)
    return (d * d).astype(F32)


@tkernel("CAST", exact=True)
def cast(c: Call, x):
    return x.astype(c.out.dtype)


# --------------------------------------------------------------------------- reference softmax
# BUILTIN_REF runs reference_ops::Softmax: gemmlowp fixed point (int32 raws in int64 arrays).
# The optimized kernel's float table differs from it by 1 LSB on a few high-probability
# elements (ppocrv4_rec's 6625-class rows).


def _sat_shl(x: np.ndarray, e: int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<e>``, e > 0, on int32 raws."""
    thr = (1 << (31 - e)) - 1
    return np.where(x > thr, 2**31 - 1, np.where(x < -thr, -(2**31), x << e))


def _exp_neg_quarter(a: np.ndarray) -> np.ndarray:
    """gemmlowp ``exp_on_interval_between_negative_one_quarter_and_0_excl`` (Q0.31)."""
    c = 1895147668
    third = 715827883
    x = a + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_4 = rdbpot(x4, 2)
    poly = rdbpot(srdhm(x4_4 + x3, third) + x2, 1)
    return c + srdhm(c, x + poly)


def _exp_on_negative_values(a: np.ndarray) -> np.ndarray:
    """gemmlowp ``exp_on_negative_values``: Q5.26 in, Q0.31 out."""
    frac = 26
    quarter = 1 << 24
    amq = (a & (quarter - 1)) - quarter
    res = _exp_neg_quarter(_sat_shl(amq, 5))
    rem = amq - a
    for e, m in (
        (-2, 1672461947),
        (-1, 1302514674),
        (0, 790015084),
        (1, 290630308),
        (2, 39332535),
        (3, 720401),
        (4, 242),
    ):
        res = np.where((rem & (1 << (frac + e))) != 0, srdhm(res, m), res)
    return np.where(a == 0, 2**31 - 1, res)


def _one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1`` (Q0.31, Newton-Raphson)."""
    s = a.astype(I64) + (2**31 - 1)
    half = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))
    x = 1515870810 + srdhm(half, -1010580540)
    for _ in range(3):
        hx = srdhm(half, x)
        x = x + _sat_shl(srdhm(x, (1 << 29) - hx), 2)
    return _sat_shl(x, 1)


def _clz32(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, I64) & 0xFFFFFFFF
    n = np.full(v.shape, 32, I64)
    for b in range(31, -1, -1):
        n = np.where((n == 32) & (((v >> b) & 1) == 1), 31 - b, n)
    return n


def _softmax_gemmlowp(x: np.ndarray, sx: float, beta: float) -> np.ndarray:
    """``reference_ops::Softmax`` for int8: exp in Q5.26 fixed point, Q12.19 row sums."""
    real = min(beta * float(sx) * (1 << 26), float((1 << 31) - 1))
    m, left = quantize_multiplier(real)
    diff_min = -math.floor(1.0 * 31 * (1 << 26) / (1 << left))
    d = x.shape[-1]
    x2 = x.reshape(-1, d).astype(I64)
    diff = x2 - x2.max(1, keepdims=True)
    ok = diff >= diff_min
    e = _exp_on_negative_values(srdhm(diff * (1 << left), m))
    s = wrap32(np.where(ok, rdbpot(e, 12), 0).sum(1))
    h = _clz32(s)
    nb = 12 - h
    sh = wrap32(((s << h) & 0xFFFFFFFF) - (1 << 31))
    sc = _one_over_one_plus_x(sh)
    if np.any((nb + 23 < 0) | (nb + 23 > 31)):
        raise InterpError("softmax row sum overflows the Q12.19 accumulator (LiteRT aborts)")
    out = rdbpot(srdhm(sc[:, None], e), (nb + 23)[:, None])
    return np.where(ok, np.clip(out - 128, -128, 127), -128).astype(np.int8).reshape(x.shape)


@tkernel("SOFTMAX", arith=REF, exact=exact_if_integer)
def softmax_ref(c: Call, x):
    if x.dtype.kind == "f":
        return softmax(c, x)
    if c.out.dtype != np.int8:
        raise InterpError(f"reference SOFTMAX to {c.out.dtype} is not supported")
    beta = float(F32(c.opts.get("beta", 1.0)))
    return _softmax_gemmlowp(x, float(F32(c.ins[0].q.s)), beta)
