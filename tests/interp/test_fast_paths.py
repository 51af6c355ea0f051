"""The interpreter's fast paths keep every bit: tests against onnxruntime and exact references.

The speed work (``qcc/interp/kernels/quant.py``) computes the same formulas differently:
float32 GEMMs chunked below 2**24, float32 requantization, 256x256 result tables for
QLinearAdd/Mul, per-constant caches reused across samples, bias wrap-around in float64. These
tests reach the paths the small property tests do not: long reductions with extreme operands,
one interpreter reused over several samples and models, saturation edge values.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from qcc.frontend.lift import lift_model
from qcc.interp import Interpreter
from qcc.interp.kernels import quant


def _model(nodes, inputs: dict, inits: dict, outputs=("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for k, v in inputs.items()
        ],
        [onnx.ValueInfoProto(name=o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)],
        ir_version=8,
    )


def _ort(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _assert_equal(want: np.ndarray, got: np.ndarray) -> None:
    assert want.dtype == got.dtype and want.shape == got.shape
    bad = np.argwhere(want != got)
    assert bad.size == 0, f"{len(bad)} mismatches, first at {bad[0].tolist()}"


def _conv_chain(sy_add: float) -> tuple[onnx.ModelProto, dict]:
    """QLinearConv 3x3 -> depthwise 5x5 -> QLinearAdd (with the first conv) -> QLinearMul ->
    QLinearSigmoid: the kernels with cached tables and weights."""
    rng = np.random.default_rng(11)
    c = 8
    inits = {
        "sx": np.float32(0.02),
        "zx": np.uint8(100),
        "w1": rng.integers(-127, 128, (c, 3, 3, 3)).astype(np.int8),
        "sw1": rng.uniform(0.002, 0.01, c).astype(np.float32),
        "zw1": np.zeros(c, np.int8),
        "b1": rng.integers(-5000, 5000, c).astype(np.int32),
        "s1": np.float32(0.05),
        "z1": np.uint8(120),
        "w2": rng.integers(-127, 128, (c, 1, 5, 5)).astype(np.int8),
        "sw2": np.float32(0.004),
        "zw2": np.int8(0),
        "s2": np.float32(0.07),
        "z2": np.uint8(130),
        "s3": np.float32(sy_add),
        "z3": np.uint8(125),
        "s4": np.float32(0.11),
        "z4": np.uint8(128),
        "s5": np.float32(1 / 256),
        "z5": np.uint8(0),
    }
    nodes = [
        helper.make_node(
            "QLinearConv",
            ["x", "sx", "zx", "w1", "sw1", "zw1", "s1", "z1", "b1"],
            ["t1"],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node(
            "QLinearConv",
            ["t1", "s1", "z1", "w2", "sw2", "zw2", "s2", "z2"],
            ["t2"],
            pads=[2, 2, 2, 2],
            group=c,
            strides=[2, 1],
        ),
        helper.make_node(
            "MaxPool", ["t1"], ["t1p"], kernel_shape=[2, 1], strides=[2, 1], ceil_mode=1
        ),
        helper.make_node(
            "QLinearAdd",
            ["t2", "s2", "z2", "t1p", "s1", "z1", "s3", "z3"],
            ["t3"],
            domain="com.microsoft",
        ),
        helper.make_node(
            "QLinearMul",
            ["t3", "s3", "z3", "t2", "s2", "z2", "s4", "z4"],
            ["t4"],
            domain="com.microsoft",
        ),
        helper.make_node(
            "QLinearSigmoid", ["t4", "s4", "z4", "s5", "z5"], ["y"], domain="com.microsoft"
        ),
    ]
    x = rng.integers(0, 256, (1, 3, 12, 9)).astype(np.uint8)
    return _model(nodes, {"x": x}, inits), {"x": x}


def test_one_interpreter_over_samples_and_models_matches_onnxruntime():
    """Caches keyed on constants and tables keyed on parameters: a reused interpreter stays
    exact on every sample, and a second model with another scale gets its own tables."""
    rng = np.random.default_rng(5)
    for sy_add in (0.09, 0.013):
        model, feeds = _conv_chain(sy_add)
        sess = _ort(model)
        interp = Interpreter(lift_model(model), profile="ort-x86")
        for _ in range(3):
            x = rng.integers(0, 256, feeds["x"].shape).astype(np.uint8)
            (want,) = sess.run(["y"], {"x": x})
            _assert_equal(want, interp.run({"x": x})["y"])


def test_long_reductions_with_extreme_operands_are_exact():
    """K = 2304 and 4096 with |x - zx| = 255, |w| = 128: the float32 GEMM must be chunked."""
    k_mm = 4096
    a = np.full((3, k_mm), 255, np.uint8)
    a[1, ::3] = 0
    b = np.full((k_mm, 5), -128, np.int8)
    b[::7, 2] = 127
    inits = {
        "sa": np.float32(0.01),
        "za": np.uint8(0),
        "b": b,
        "sb": np.float32(0.001),
        "zb": np.int8(0),
        "sy": np.float32(2000.0),
        "zy": np.uint8(128),
    }
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"])
    model = _model([node], {"a": a}, inits)
    assert 255 * 128 * k_mm >= 2**24
    (want,) = _ort(model).run(["y"], {"a": a})
    _assert_equal(want, Interpreter(lift_model(model)).run({"a": a})["y"])

    rng = np.random.default_rng(2)
    x = np.where(rng.random((1, 256, 6, 6)) < 0.9, 255, 0).astype(np.uint8)
    inits = {
        "sx": np.float32(0.02),
        "zx": np.uint8(0),
        "w": np.where(rng.random((4, 256, 3, 3)) < 0.9, -128, 127).astype(np.int8),
        "sw": np.float32(0.003),
        "zw": np.int8(0),
        "sy": np.float32(20.0),
        "zy": np.uint8(128),
    }
    node = helper.make_node(
        "QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy"], ["y"], pads=[1, 1, 1, 1]
    )
    model = _model([node], {"x": x}, inits)
    (want,) = _ort(model).run(["y"], {"x": x})
    _assert_equal(want, Interpreter(lift_model(model)).run({"x": x})["y"])


def test_exact_matmul_chunks_equal_integer_matmul():
    rng = np.random.default_rng(0)
    a = rng.choice([-255.0, 255.0, 17.0], (4, 3000)).astype(np.float32)
    b = rng.choice([-128.0, 127.0, -3.0], (3000, 6)).astype(np.float32)
    want = a.astype(np.int64) @ b.astype(np.int64)
    got = quant.exact_matmul(a, b, 255.0 * 128.0)
    assert got.dtype == np.float64
    assert np.array_equal(got.astype(np.int64), want)
    small = quant.exact_matmul(a[:, :100], b[:100], 255.0 * 128.0)
    assert small.dtype == np.float32
    want_small = a[:, :100].astype(np.int64) @ b[:100].astype(np.int64)
    assert np.array_equal(small.astype(np.int64), want_small)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("acc_dtype", [np.float32, np.int32, np.float64])
def test_blocked_requantize_equals_the_formula(acc_dtype, per_channel):
    rng = np.random.default_rng(9)
    acc = rng.integers(-(2**26), 2**26, (2, 24, 70, 90))
    acc[0, 0, 0, :4] = [2**24 + 1, -(2**24) - 3, 0, 1]
    acc = acc.astype(acc_dtype)
    assert acc.size > 2 * quant._EW_BLOCK
    shape = (1, 24, 1, 1) if per_channel else ()
    scale = rng.uniform(1e-6, 1e-5, shape).astype(np.float32)
    scale.reshape(-1)[0] = 2.0**-20  # exact ties: (2k+1) * 2**19 * 2**-20
    acc[0, 0, 1, :3] = [2**19, 3 * 2**19, -5 * 2**19]
    zp = np.asarray(100, np.uint8)
    f = acc.astype(np.float32) * scale  # the reference: float32 product, then the rounding
    want = np.clip(np.rint(f.astype(np.float64)) + 100, 0, 255).astype(np.uint8)
    got = quant.requantize(acc, scale, zp, np.dtype(np.uint8))
    assert np.array_equal(got, want)


@pytest.mark.parametrize("acc_dtype", [np.float32, np.float64])
def test_bias_add_wraps_like_int32(acc_dtype):
    rng = np.random.default_rng(1)
    acc = rng.integers(-(2**23), 2**23, (2, 6, 7, 5)).astype(acc_dtype)
    bias = np.array([-(2**31), 2**31 - 1, -(2**31) + 9, 2**31 - 9, 3, -70000], np.int32)
    bias = bias.reshape(1, -1, 1, 1)
    want = quant.wrap_int32(acc.astype(np.int64) + bias)
    got = quant._add_bias(acc.copy(), bias)
    assert np.array_equal(got.astype(np.int64), want)
    small = np.array([5, -5, 0, 1, 2, 3], np.int32).reshape(1, -1, 1, 1)
    got = quant._add_bias(acc.copy(), small)
    if acc_dtype == np.float32:
        assert got.dtype == np.float32  # the cheap path: nothing leaves float32's exact range
    assert np.array_equal(got.astype(np.int64), acc.astype(np.int64) + small)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_float32_saturation_equals_the_float64_formula(dtype):
    """``sat(rint(f) + zp)``: float32 sums near the range ends, ties, huge values, inf, NaN."""
    lo, hi = quant.qrange(dtype)
    edges = [lo, hi, lo - 1, hi + 1, 0.5, 1.5, 2.5, -0.5, -1.5, 2**24, 2**24 + 2, -(2**25)]
    edges += [3e38, -3e38, np.inf, -np.inf, np.nan, hi - 0.5, lo + 0.5, 12.5, -12.5]
    rng = np.random.default_rng(4)
    f = np.concatenate([np.array(edges, np.float32), rng.normal(0, hi, 2000).astype(np.float32)])
    for zp in (0, 3, lo // 2 + hi // 2, hi, lo):
        ref = np.rint(f.astype(np.float64)) + float(zp)
        ref = np.clip(ref, lo, hi)
        ref = np.where(np.isnan(ref), 0.0, ref).astype(dtype)
        got = quant.saturate_rint(f.copy(), np.asarray(zp, dtype), dtype, inplace=True)
        assert got.dtype == np.dtype(dtype)
        assert np.array_equal(got, ref), zp


@pytest.mark.parametrize(
    ("stride", "dil", "pads", "extreme"),
    [((1, 1), (1, 1), (1, 1, 1, 1), False), ((2, 1), (1, 2), (0, 2, 1, 0), False),
     ((2, 2), (1, 1), (1, 0, 0, 1), True)],
)  # fmt: skip
def test_large_conv_in_row_bands_matches_onnxruntime(stride, dil, pads, extreme):
    """Inputs big enough for the banded im2col (several bands, a short last one); with
    extreme operands each band's GEMM is chunked too."""
    rng = np.random.default_rng(8)
    c, m = 48, 6
    if extreme:
        x = np.where(rng.random((1, c, 61, 67)) < 0.9, 255, 0).astype(np.uint8)
        w = np.where(rng.random((m, c, 3, 3)) < 0.9, -128, 127).astype(np.int8)
    else:
        x = rng.integers(0, 256, (1, c, 61, 67)).astype(np.uint8)
        w = rng.integers(-127, 128, (m, c, 3, 3)).astype(np.int8)
    inits = {
        "sx": np.float32(0.02),
        "zx": np.uint8(0 if extreme else 117),
        "w": w,
        "sw": rng.uniform(0.001, 0.004, m).astype(np.float32),
        "zw": np.zeros(m, np.int8),
        "sy": np.float32(9.0 if extreme else 0.3),
        "zy": np.uint8(128),
        "B": rng.integers(-3000, 3000, m).astype(np.int32),
    }
    node = helper.make_node(
        "QLinearConv",
        ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "B"],
        ["y"],
        strides=list(stride),
        dilations=list(dil),
        pads=list(pads),
    )
    model = _model([node], {"x": x}, inits)
    assert 4 * c * 9 * 30 * 30 > 4 * quant._IM2COL_TILE_BYTES  # several bands
    (want,) = _ort(model).run(["y"], {"x": x})
    _assert_equal(want, Interpreter(lift_model(model)).run({"x": x})["y"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_large_quantize_dequantize_match_onnxruntime(dtype):
    """Tensors large enough for the blocked QuantizeLinear and the table lookup of
    DequantizeLinear, with tie-heavy values and infinities. (NaN is left out: onnxruntime
    quantizes it to the type's minimum, the interpreter to 0; see saturate_rint.)"""
    rng = np.random.default_rng(6)
    zp = np.asarray(3 if dtype == np.uint8 else -5, dtype)
    x = (rng.integers(-600, 600, (2, 5, 200, 141)) * np.float32(0.0125)).astype(np.float32)
    assert x.size > 2 * quant._EW_BLOCK
    x.flat[:5] = [np.inf, -np.inf, 1e30, -0.0, -1e30]
    x.flat[-3:] = [-np.inf, 7.0, np.inf]
    inits = {"s": np.float32(0.025), "z": zp, "s2": np.float32(0.03)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s2", "z"], ["y"]),
    ]
    model = _model(nodes, {"x": x}, inits, outputs=("q", "y"))
    want = _ort(model).run(["q", "y"], {"x": x})
    got = Interpreter(lift_model(model), profile="onnx-ref").run({"x": x})
    for w, name in zip(want, ("q", "y"), strict=True):
        _assert_equal(w, got[name])


def test_blocked_quantize_keeps_the_nan_rule():
    """The blocked QuantizeLinear gives what the one-pass formula gives, NaN included."""
    rng = np.random.default_rng(12)
    x = rng.normal(0, 3, (3, 4, 150, 150)).astype(np.float32)
    x.flat[::9973] = np.nan
    s, zp = np.float32(0.02), np.asarray(-7, np.int8)
    assert x.size > 2 * quant._EW_BLOCK
    f = (x / s).astype(np.float64)
    want = np.where(np.isnan(f), 0, np.clip(np.rint(f) - 7, -128, 127)).astype(np.int8)
    with np.errstate(invalid="ignore"):
        got = quant.quantize_linear(x, s, zp)
    assert np.array_equal(got, want)


@pytest.mark.parametrize(
    ("c", "hw", "k", "stride", "dil"),
    [(32, (9, 11), 3, (1, 1), (1, 1)), (48, (7, 12), 5, (2, 1), (1, 2)),
     (16, (40, 45), 3, (2, 2), (1, 1)), (24, (6, 70), 5, (1, 1), (1, 1)),
     (96, (3, 90), 5, (1, 1), (1, 1))],
)  # fmt: skip
def test_depthwise_layouts_match_onnxruntime(c, hw, k, stride, dil):
    """Narrow images take the channels-last depthwise path, wide ones the channel blocks."""
    rng = np.random.default_rng(c)
    x = rng.integers(0, 256, (1, c, *hw)).astype(np.uint8)
    inits = {
        "sx": np.float32(0.02),
        "zx": np.uint8(131),
        "w": rng.integers(-127, 128, (c, 1, k, k)).astype(np.int8),
        "sw": rng.uniform(0.001, 0.01, c).astype(np.float32),
        "zw": np.zeros(c, np.int8),
        "sy": np.float32(0.05),
        "zy": np.uint8(128),
        "B": rng.integers(-2000, 2000, c).astype(np.int32),
    }
    node = helper.make_node(
        "QLinearConv",
        ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "B"],
        ["y"],
        group=c,
        strides=list(stride),
        dilations=list(dil),
        pads=[k // 2, 1, k // 2, 0],
    )
    model = _model([node], {"x": x}, inits)
    (want,) = _ort(model).run(["y"], {"x": x})
    _assert_equal(want, Interpreter(lift_model(model)).run({"x": x})["y"])


def test_memo_keys_only_on_read_only_arrays_and_forgets_freed_ones():
    calls = []

    def make():
        calls.append(1)
        return len(calls)

    live = np.arange(6.0)
    assert quant._memo("t", (live,), make) == 1
    assert quant._memo("t", (live,), make) == 2  # writable: never cached
    const = np.arange(6.0)
    const.flags.writeable = False
    assert quant._memo("t", (const, None), make) == 3
    assert quant._memo("t", (const, None), make) == 3  # cached
    view = const.reshape(2, 3)  # a read-only view of it is another key
    assert quant._memo("t", (view, None), make) == 4
    key = ("t", id(const), id(None))
    del const, view
    assert key not in quant._MEMO  # dropped when the array is freed
