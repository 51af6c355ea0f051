"""Property tests: every integer TFLite kernel of the interpreter equals LiteRT bit for bit.

Each example builds a one-operator .tflite with LiteRT's schema object API (random shapes,
strides, pads, dilations, depth multipliers, per-channel scales, tie-heavy scales, broadcasts,
fused activations), runs it in ai-edge-litert under the resolver of each profile (default:
XNNPACK delegate; BUILTIN_REF) and in the interpreter, and compares every element. It also checks
that the interpreter runs the operator where LiteRT does (delegated to XNNPACK or not).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcc.interp.tflite import TFLiteInterpreter
from tests.interp.tflite.builder import Builder, delegated_ops, litert

SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
PROFILES = ["tflite-xnnpack", "tflite-ref"]
ACTS = st.sampled_from([0, 1, 3])  # NONE, RELU, RELU6
# tie-heavy scales: powers of two and simple ratios make exact rounding ties common
SCALES = st.one_of(
    st.sampled_from([2.0**-5, 2.0**-6, 2.0**-7, 0.0625, 0.125, 0.25, 0.75 * 2**-6]),
    st.floats(0.002, 0.2).map(lambda v: float(np.float32(v))),
)
ZPS = st.integers(-20, 20)


class Case:
    """A model, its inputs and a readable description (hypothesis prints it on failure)."""

    def __init__(self, content: bytes, feeds: list[np.ndarray], desc: str) -> None:
        self.content, self.feeds, self.desc = content, feeds, desc

    def __repr__(self) -> str:
        return f"Case({self.desc})"


def check(content: bytes, feeds: list[np.ndarray], profile: str) -> None:
    want = litert(content, feeds, profile)
    it = TFLiteInterpreter(content, profile)
    got = it.run({t.name: f for t, f in zip(it.inputs, feeds, strict=True)})
    if profile == "tflite-xnnpack":
        ours = {s.call.op.index for s in it.steps if s.call.arith == "xnnpack"}
        assert ours == delegated_ops(content), "delegation differs from LiteRT's"
    for t, w in zip(it.outputs, want, strict=True):
        g = got[t.name]
        assert g.dtype == w.dtype and g.shape == w.shape
        bad = np.argwhere(g != w)
        assert bad.size == 0, (
            f"{profile}: {len(bad)}/{w.size} mismatches in {t.name}, first at "
            f"{bad[0].tolist()}: interp {g[tuple(bad[0])]} litert {w[tuple(bad[0])]}"
        )


def rand_i8(rng, shape) -> np.ndarray:
    return rng.integers(-128, 128, shape).astype(np.int8)


@st.composite
def conv_case(draw, depthwise: bool):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(3, 9)), draw(st.integers(3, 9))
    cin = draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    padding = draw(st.sampled_from([0, 1]))  # SAME, VALID
    if padding == 1 and ((kh - 1) * dh + 1 > h or (kw - 1) * dw + 1 > w):
        padding = 0
    mult = draw(st.integers(1, 3)) if depthwise else 1
    cout = cin * mult if depthwise else draw(st.integers(1, 8))
    sx, sy = draw(SCALES), draw(SCALES)
    per_channel = draw(st.booleans())
    ws = rng.uniform(0.001, 0.03, cout if per_channel else 1).astype(np.float32)
    if draw(st.booleans()):
        ws = np.float32(2.0) ** -rng.integers(5, 9, ws.size).astype(np.float32)
    b = Builder()
    x = b.tensor("x", [n, h, w, cin], np.int8, scale=sx, zp=draw(ZPS))
    wshape = (1, kh, kw, cout) if depthwise else (cout, kh, kw, cin)
    wt = b.const(
        "w",
        rng.integers(-127, 128, wshape).astype(np.int8),
        scale=ws,
        zp=0,
        dim=3 if depthwise else 0,
    )
    bias = b.const(
        "b",
        rng.integers(-5000, 5000, cout).astype(np.int32),
        scale=np.float32(sx) * ws,
        zp=0,
    )

    def osz(i, k, s, d):
        ke = (k - 1) * d + 1
        return -(-i // s) if padding == 0 else (i - ke) // s + 1

    oh, ow = osz(h, kh, sh, dh), osz(w, kw, sw, dw)
    y = b.tensor("y", [n, oh, ow, cout], np.int8, scale=sy, zp=draw(ZPS))
    act = draw(ACTS)
    common = dict(
        padding=padding,
        strideW=sw,
        strideH=sh,
        dilationWFactor=dw,
        dilationHFactor=dh,
        fusedActivationFunction=act,
    )
    if depthwise:
        b.op(
            "DEPTHWISE_CONV_2D",
            [x, wt, bias],
            [y],
            "DepthwiseConv2DOptions",
            depthMultiplier=mult,
            **common,
        )
    else:
        b.op("CONV_2D", [x, wt, bias], [y], "Conv2DOptions", **common)
    desc = (
        f"x={[n, h, w, cin]} k={kh}x{kw} s={sh},{sw} d={dh},{dw} pad={padding} mult={mult} "
        f"cout={cout} ws={ws.tolist()} sx={sx} sy={sy} act={act}"
    )
    return Case(b.build([x], [y]), [rand_i8(rng, [n, h, w, cin])], desc)


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(case=conv_case(False))
def test_conv_2d(profile, case):
    check(case.content, case.feeds, profile)


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(case=conv_case(True))
def test_depthwise_conv_2d(profile, case):
    check(case.content, case.feeds, profile)


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    k=st.integers(1, 40),
    o=st.integers(1, 9),
    batch=st.integers(1, 4),
    per_channel=st.booleans(),
    sx=SCALES,
    sy=SCALES,
    zx=ZPS,
    zy=ZPS,
    act=ACTS,
)
def test_fully_connected(profile, seed, k, o, batch, per_channel, sx, sy, zx, zy, act):
    rng = np.random.default_rng(seed)
    ws = rng.uniform(0.001, 0.03, o if per_channel else 1).astype(np.float32)
    b = Builder()
    x = b.tensor("x", [batch, k], np.int8, scale=sx, zp=zx)
    w = b.const("w", rng.integers(-127, 128, (o, k)).astype(np.int8), scale=ws, zp=0)
    bias = b.const(
        "b",
        rng.integers(-5000, 5000, o).astype(np.int32),
        scale=np.float32(sx) * ws,
        zp=0,
    )
    y = b.tensor("y", [batch, o], np.int8, scale=sy, zp=zy)
    b.op("FULLY_CONNECTED", [x, w, bias], [y], "FullyConnectedOptions", fusedActivationFunction=act)
    check(b.build([x], [y]), [rand_i8(rng, [batch, k])], profile)


SHAPES = st.sampled_from(
    [
        ([1, 4, 5, 6], [1, 4, 5, 6]),
        ([1, 4, 5, 6], [1, 1, 1, 6]),
        ([1, 1, 5, 6], [1, 4, 5, 6]),
        ([2, 3, 7], [1, 3, 1]),
        ([9], [9]),
    ]
)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("opname", ["ADD", "SUB", "MUL"])
@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    shapes=SHAPES,
    sa=SCALES,
    sb=SCALES,
    sy=SCALES,
    za=ZPS,
    zb=ZPS,
    zy=ZPS,
    act=ACTS,
)
def test_binary(profile, opname, seed, shapes, sa, sb, sy, za, zb, zy, act):
    rng = np.random.default_rng(seed)
    sha, shb = shapes
    b = Builder()
    a = b.tensor("a", sha, np.int8, scale=sa, zp=za)
    bb = b.tensor("b", shb, np.int8, scale=sb, zp=zb)
    y = b.tensor("y", list(np.broadcast_shapes(tuple(sha), tuple(shb))), np.int8, scale=sy, zp=zy)
    b.op(opname, [a, bb], [y], opname.capitalize() + "Options", fusedActivationFunction=act)
    check(b.build([a, bb], [y]), [rand_i8(rng, sha), rand_i8(rng, shb)], profile)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("zx", [-128, 0, 17])
def test_conv_2d_deep(profile, zx):
    """A 3x3 convolution over 80 channels: 720 terms, past float32's exact range for the
    interpreter's GEMM (it switches to float64); saturated inputs, extreme zero points."""
    rng = np.random.default_rng(zx + 200)
    cin, cout = 80, 8
    ws = rng.uniform(0.0005, 0.002, cout).astype(np.float32)
    b = Builder()
    x = b.tensor("x", [1, 6, 7, cin], np.int8, scale=0.02, zp=zx)
    w = b.const("w", rng.choice([-127, 127], (cout, 3, 3, cin)).astype(np.int8), scale=ws, zp=0)
    bias = b.const("b", rng.integers(-9000, 9000, cout).astype(np.int32), scale=ws * 0.02)
    y = b.tensor("y", [1, 6, 7, cout], np.int8, scale=1.5, zp=3)
    b.op("CONV_2D", [x, w, bias], [y], "Conv2DOptions", padding=0, strideW=1, strideH=1)
    xs = rng.choice([-128, 127], (1, 6, 7, cin)).astype(np.int8)
    check(b.build([x], [y]), [xs], profile)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("op", ["CONV_2D", "FULLY_CONNECTED"])
@SETTINGS
@given(seed=st.integers(0, 2**31), sx=SCALES, sw=SCALES, sy=SCALES, zx=ZPS, zy=ZPS, act=ACTS)
def test_builtin_gemm_with_runtime_weights(profile, op, seed, sx, sw, sy, zx, zy, act):
    """Weights fed at run time keep CONV_2D / FULLY_CONNECTED out of XNNPACK: TFLite's own
    kernels run them (ruy's fixed-point requantization under the default resolver)."""
    rng = np.random.default_rng(seed)
    b = Builder()
    if op == "CONV_2D":
        xs, ws_, ys = [1, 5, 6, 7], [4, 3, 3, 7], [1, 5, 6, 4]
    else:
        xs, ws_, ys = [3, 30], [5, 30], [3, 5]
    x = b.tensor("x", xs, np.int8, scale=sx, zp=zx)
    w = b.tensor("w", ws_, np.int8, scale=sw, zp=0)
    bias = b.const(
        "b",
        rng.integers(-4000, 4000, ws_[0]).astype(np.int32),
        scale=np.float32(sx) * np.float32(sw),
    )
    y = b.tensor("y", ys, np.int8, scale=sy, zp=zy)
    if op == "CONV_2D":
        b.op(
            op,
            [x, w, bias],
            [y],
            "Conv2DOptions",
            padding=0,
            strideW=1,
            strideH=1,
            fusedActivationFunction=act,
        )
    else:
        b.op(op, [x, w, bias], [y], "FullyConnectedOptions", fusedActivationFunction=act)
    content = b.build([x, w], [y])
    it = TFLiteInterpreter(content, profile)
    for _ in range(2):  # two runs: weights fed at run time must not be cached
        feeds = [rand_i8(rng, xs), rng.integers(-127, 128, ws_).astype(np.int8)]
        check(content, feeds, profile)
        got = it.run({"x": feeds[0], "w": feeds[1]})["y"]
        assert got.tobytes() == litert(content, feeds, profile)[0].tobytes()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("groups,cin,cout", [(2, 8, 6), (4, 8, 8), (3, 9, 3)])
def test_grouped_conv_2d(profile, groups, cin, cout):
    """CONV_2D whose weights hold cin/groups input channels (grouped, not depthwise)."""
    rng = np.random.default_rng(groups * 10 + cin)
    ws = rng.uniform(0.005, 0.02, cout).astype(np.float32)
    b = Builder()
    x = b.tensor("x", [1, 5, 6, cin], np.int8, scale=0.05, zp=2)
    w = b.const(
        "w", rng.integers(-127, 128, (cout, 3, 3, cin // groups)).astype(np.int8), scale=ws, zp=0
    )
    bias = b.const("b", rng.integers(-900, 900, cout).astype(np.int32), scale=ws * 0.05)
    y = b.tensor("y", [1, 5, 6, cout], np.int8, scale=0.1, zp=-3)
    b.op("CONV_2D", [x, w, bias], [y], "Conv2DOptions", padding=0, strideW=1, strideH=1)
    check(b.build([x], [y]), [rand_i8(rng, [1, 5, 6, cin])], profile)
