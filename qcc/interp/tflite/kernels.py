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

import numpy as np

from qcc.interp.kernels.quant import conv_accumulate
from qcc.interp.registry import InterpError
from qcc.interp.tflite.arith import (
    F32,
    I64,
    act_range_tflite,
    act_range_xnnpack,
    mbqm,
    mbqm_ruy,
    quantize_multiplier,
    quantize_multipliers,
    round_half_away,
    wrap32,
)
from qcc.interp.tflite.registry import Call, exact_if_integer, tkernel

XNN = ("xnnpack",)
BUILTIN = ("builtin",)
REF = ("ref",)
TFL = ("builtin", "ref")


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
    o = c.opts
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = o.get("dilation_h_factor", 1) or 1, o.get("dilation_w_factor", 1) or 1
    kh, kw = w_ochw.shape[2:]
    pt, pb, oh = _same_pads(x.shape[1], kh, sh, dh, o.get("padding", "VALID"))
    pl, pr, ow = _same_pads(x.shape[2], kw, sw, dw, o.get("padding", "VALID"))
    if oh <= 0 or ow <= 0:
        raise InterpError(f"kernel {kh}x{kw} does not fit input {list(x.shape)}")
    zx = c.ins[0].q.zp if _is_q(c.ins[0]) else 0
    xc = np.moveaxis(x, 3, 1).astype(F32) - F32(zx)
    acc = conv_accumulate(
        xc,
        w_ochw,
        group=group,
        strides=[sh, sw],
        dilations=[dh, dw],
        pads=[pt, pl, pb, pr],
    )
    return np.moveaxis(acc, 1, 3)


def _weights(c: Call, key: str, make) -> np.ndarray:
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
    o = c.opts
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = o.get("dilation_h_factor", 1) or 1, o.get("dilation_w_factor", 1) or 1
    kh, kw = w_ochw.shape[2:]
    pt, pb, _ = _same_pads(x.shape[1], kh, sh, dh, o.get("padding", "VALID"))
    pl, pr, _ = _same_pads(x.shape[2], kw, sw, dw, o.get("padding", "VALID"))
    from qcc.interp.kernels.quant import im2col

    xc = np.moveaxis(x, 3, 1).astype(np.float64)
    cols = im2col(xc, (kh, kw), [sh, sw], [dh, dw], [pt, pl, pb, pr])
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
    wc = _weights(c, "w", lambda: np.moveaxis(_centre_w(c, w), 3, 0))
    acc = _conv_acc(c, x, wc, cin)
    return _requant_conv(c, np.rint(acc).astype(I64), w.shape[3], "dw")


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
    real = np.float64(F32(c.ins[0].q.s)) * np.float64(F32(c.ins[1].q.s)) / np.float64(y_t.q.s)
    m, s = quantize_multiplier(float(real))
    v = mbqm_ruy(acc, m, s) if c.arith != "ref" else mbqm(acc, m, s)
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
    acc = np.zeros((n, full_h, full_w, oc), np.float64)
    for i in range(kh):
        for j in range(kw):
            # [N, IH, IW, C] x [O, C] -> [N, IH, IW, O]
            contrib = np.matmul(xc, wc[:, i, j, :].T)
            acc[:, i : i + (ih - 1) * sh + 1 : sh, j : j + (iw - 1) * sw + 1 : sw] += contrib
    acc = acc[:, pt : pt + oh, pl : pl + ow]
    bias_i = 3
    if x.dtype.kind == "f":
        if len(c.ins) > bias_i and c.ins[bias_i] is not None and c.ins[bias_i].data is not None:
            acc = acc + c.ins[bias_i].data.astype(np.float64)
        return _float_act(c, acc.astype(F32))
    acc = np.rint(acc).astype(I64)
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


@tkernel("ADD", "SUB", exact=exact_if_integer)
def add_sub(c: Call, a, b):
    sub = c.op.op == "SUB"
    if a.dtype.kind == "f":
        y = (a - b) if sub else (a + b)
        return _float_act(c, y.astype(F32))
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


@tkernel("MUL", exact=exact_if_integer)
def mul(c: Call, a, b):
    if a.dtype.kind == "f":
        return _float_act(c, (a * b).astype(F32))
    qa, qb, qy = c.ins[0].q, c.ins[1].q, c.out.q
    p = (a.astype(I64) - qa.zp) * (b.astype(I64) - qb.zp)
    if c.arith == "xnnpack":
        scale = F32(F32(F32(qa.s) * F32(qb.s)) / F32(qy.s))
        return _requant_f32(p, scale, c)
    real = np.float64(qa.s) * np.float64(qb.s) / np.float64(qy.s)
    m, s = quantize_multiplier(float(real))
    return _finish(c, mbqm(p, m, s) + qy.zp)
