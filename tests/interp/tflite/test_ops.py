"""Property tests for the other integer operators: interpreter == LiteRT, both resolvers.

Activations, quantize/requantize, reductions, pooling, resizing and data movement, each built
as a one-operator .tflite with random shapes, scales and zero points (see ``test_kernels``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.interp.tflite.builder import Builder
from tests.interp.tflite.test_kernels import PROFILES, SCALES, SETTINGS, ZPS, check, rand_i8

I8 = np.int8


def one_op(
    op,
    shape,
    out_shape,
    sx,
    zx,
    sy,
    zy,
    consts=(),
    options=None,
    dtype_in=I8,
    dtype_out=I8,
    seed=0,
    **opts,
):
    """A model ``y = op(x, *consts)``; returns (content, feeds)."""
    rng = np.random.default_rng(seed)
    b = Builder()
    x = (
        b.tensor("x", shape, dtype_in, scale=sx, zp=zx)
        if dtype_in == I8
        else b.tensor("x", shape, dtype_in)
    )
    ins = [x] + [b.const(f"c{i}", v) for i, v in enumerate(consts)]
    if dtype_out == I8:
        y = b.tensor("y", out_shape, dtype_out, scale=sy, zp=zy)
    else:
        y = b.tensor("y", out_shape, dtype_out)
    b.op(op, ins, [y], options, **opts)
    if dtype_in == I8:
        feed = rand_i8(rng, shape)
    else:
        feed = rng.uniform(-1.5 * 128 * sy, 1.5 * 128 * sy, shape).astype(np.float32)
    return b.build([x], [y]), [feed]


SHAPE4 = st.sampled_from([[1, 4, 5, 3], [2, 3, 3, 8], [1, 7, 6, 2], [1, 1, 1, 16]])


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "op,fixed",
    [
        ("LOGISTIC", (1 / 256, -128)),
        ("TANH", (1 / 128, 0)),
        ("HARD_SWISH", None),
        ("RELU", None),
        ("RELU6", None),
        ("RELU", "same"),
        ("QUANTIZE", None),
    ],
)
@SETTINGS
@given(seed=st.integers(0, 2**31), shape=SHAPE4, sx=SCALES, zx=ZPS, sy=SCALES, zy=ZPS)
def test_unary(profile, op, fixed, seed, shape, sx, zx, sy, zy):
    if fixed == "same":
        sy, zy = sx, zx
    elif fixed is not None:
        sy, zy = fixed
    check(*one_op(op, shape, shape, sx, zx, sy, zy, seed=seed), profile)


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    shape=SHAPE4,
    sx=SCALES,
    zx=ZPS,
    sy=SCALES,
    zy=ZPS,
    alpha=st.sampled_from([0.01, 0.1, 0.2, 0.3333]),
)
def test_leaky_relu(profile, seed, shape, sx, zx, sy, zy, alpha):
    check(
        *one_op(
            "LEAKY_RELU",
            shape,
            shape,
            sx,
            zx,
            sy,
            zy,
            (),
            "LeakyReluOptions",
            seed=seed,
            alpha=alpha,
        ),
        profile,
    )


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(seed=st.integers(0, 2**31), shape=SHAPE4, sy=SCALES, zy=ZPS)
def test_quantize_float(profile, seed, shape, sy, zy):
    check(
        *one_op("QUANTIZE", shape, shape, None, None, sy, zy, dtype_in=np.float32, seed=seed),
        profile,
    )


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(seed=st.integers(0, 2**31), shape=SHAPE4, sx=SCALES, zx=ZPS)
def test_dequantize(profile, seed, shape, sx, zx):
    check(
        *one_op("DEQUANTIZE", shape, shape, sx, zx, None, None, dtype_out=np.float32, seed=seed),
        profile,
    )


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    shape=SHAPE4,
    sx=SCALES,
    zx=ZPS,
    sy=SCALES,
    zy=ZPS,
    beta=st.sampled_from([1.0, 0.5]),
)
def test_softmax(profile, seed, shape, sx, zx, sy, zy, beta):
    check(
        *one_op(
            "SOFTMAX",
            shape,
            shape,
            sx,
            zx,
            1 / 256,
            -128,
            (),
            "SoftmaxOptions",
            seed=seed,
            beta=beta,
        ),
        profile,
    )


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    shape=SHAPE4,
    sx=SCALES,
    zx=ZPS,
    sy=SCALES,
    zy=ZPS,
    axes=st.sampled_from([[1, 2], [2, 1], [3], [1], [1, 2, 3]]),
    keep=st.booleans(),
)
def test_mean(profile, seed, shape, sx, zx, sy, zy, axes, keep):
    out = [1 if i in axes else d for i, d in enumerate(shape)]
    if not keep:
        out = [d for i, d in enumerate(shape) if i not in axes]
    check(
        *one_op(
            "MEAN",
            shape,
            out,
            sx,
            zx,
            sy,
            zy,
            (np.array(axes, np.int32),),
            "ReducerOptions",
            seed=seed,
            keepDims=keep,
        ),
        profile,
    )


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("op", ["MAX_POOL_2D", "AVERAGE_POOL_2D"])
@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    shape=SHAPE4,
    sx=SCALES,
    zx=ZPS,
    f=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.sampled_from([0, 1]),
    act=st.sampled_from([0, 1, 3]),
)
def test_pool(profile, op, seed, shape, sx, zx, f, s, padding, act):
    n, h, w, ch = shape
    if padding == 1 and (f[0] > h or f[1] > w):
        padding = 0
    oh = -(-h // s[0]) if padding == 0 else (h - f[0]) // s[0] + 1
    ow = -(-w // s[1]) if padding == 0 else (w - f[1]) // s[1] + 1
    check(
        *one_op(
            op,
            shape,
            [n, oh, ow, ch],
            sx,
            zx,
            sx,
            zx,
            (),
            "Pool2DOptions",
            seed=seed,
            padding=padding,
            strideH=s[0],
            strideW=s[1],
            filterHeight=f[0],
            filterWidth=f[1],
            fusedActivationFunction=act,
        ),
        profile,
    )


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("op", ["RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"])
@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    shape=SHAPE4,
    sx=SCALES,
    zx=ZPS,
    size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    mode=st.sampled_from([(False, False), (True, False), (False, True)]),
)
def test_resize(profile, op, seed, shape, sx, zx, size, mode):
    n, _, _, ch = shape
    opt = "ResizeBilinearOptions" if op == "RESIZE_BILINEAR" else "ResizeNearestNeighborOptions"
    check(
        *one_op(
            op,
            shape,
            [n, *size, ch],
            sx,
            zx,
            sx,
            zx,
            (np.array(size, np.int32),),
            opt,
            seed=seed,
            alignCorners=mode[0],
            halfPixelCenters=mode[1],
        ),
        profile,
    )
