"""Property tests: every integer kernel of the interpreter equals onnxruntime bit for bit.

Each example builds a one-node model with random shapes, scales, zero points and (for
convolutions) strides, pads, groups and dilations, runs it in onnxruntime (default graph
optimizations, as users run it) and in the interpreter under ``ort-x86``, and compares every
element. Scales are drawn from a set that includes "tie-heavy" ones, where the requantization
scale is a multiple of 1/2 or 1/4 and exact rounding ties are common.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from qcc.frontend.lift import lift_model
from qcc.interp import Interpreter

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
TYPES = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}


def run_both(nodes, inputs: dict, inits: dict, opset: int = 13, outputs=("y",)):
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info(
                k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)
            )
            for k, v in inputs.items()
        ],
        [onnx.ValueInfoProto(name=o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)],
        ir_version=8,
    )
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    want = sess.run(list(outputs), inputs)
    got = Interpreter(lift_model(model), profile="ort-x86").run(inputs)
    return want, [got[o] for o in outputs]


def assert_same(want, got):
    for w, g in zip(want, got, strict=True):
        assert w.dtype == g.dtype
        assert w.shape == g.shape
        bad = np.argwhere(w != g)
        assert bad.size == 0, (
            f"{len(bad)} of {w.size} differ; first at {bad[0].tolist()}: "
            f"onnxruntime {w[tuple(bad[0])]}, interpreter {g[tuple(bad[0])]}"
        )


def qtensor(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)


scales = st.sampled_from([0.5, 0.25, 1 / 64, 0.0039215689, 0.0173, 0.031, 0.1, 0.007, 2.0])
dtypes = st.sampled_from([np.uint8, np.int8])


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    dtype=dtypes,
    s=scales,
    zp=st.integers(-20, 20),
    axis=st.sampled_from([None, 1]),
    ties=st.booleans(),
)
def test_quantize_dequantize(seed, dtype, s, zp, axis, ties):
    rng = np.random.default_rng(seed)
    shape = (2, 3, 5)
    zp_t = dtype(
        np.clip(zp + (128 if dtype == np.uint8 else 0), 0 if dtype == np.uint8 else -128, 127)
    )
    if axis is None:
        scale = np.float32(s)
        zpa = np.asarray(zp_t, dtype=dtype)
    else:
        scale = (np.float32(s) * np.array([1, 0.5, 3], np.float32)).astype(np.float32)
        zpa = np.full(3, zp_t, dtype=dtype)
    x = rng.normal(0, 100 * s, shape).astype(np.float32)
    if ties:  # exact halves of the scale: every element is a rounding tie
        x = ((rng.integers(-300, 300, shape) + 0.5) * np.float32(s)).astype(np.float32)
    attrs = {} if axis is None else {"axis": axis}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], **attrs),
        helper.make_node("DequantizeLinear", ["y", "s", "z"], ["d"], **attrs),
    ]
    want, got = run_both(nodes, {"x": x}, {"s": scale, "z": zpa}, outputs=("y", "d"))
    assert_same(want, got)


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    act=dtypes,
    n=st.integers(1, 2),
    cpg=st.integers(1, 4),
    group=st.sampled_from([1, 2, 3]),
    mpg=st.integers(1, 3),
    hw=st.tuples(st.integers(3, 9), st.integers(3, 9)),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    dil=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    per_channel=st.booleans(),
    bias=st.booleans(),
    sy=scales,
    depthwise=st.booleans(),
)
def test_qlinear_conv(
    seed, act, n, cpg, group, mpg, hw, k, stride, dil, pads, per_channel, bias, sy, depthwise
):
    rng = np.random.default_rng(seed)
    if depthwise:
        group, cpg = 3 * cpg, 1
    c, m = cpg * group, mpg * group
    kh = min(k[0], (hw[0] + pads[0] + pads[2] - 1) // dil[0] + 1)
    kw = min(k[1], (hw[1] + pads[1] + pads[3] - 1) // dil[1] + 1)
    x = qtensor(rng, act, (n, c, *hw))
    w = qtensor(rng, np.int8, (m, cpg, kh, kw))
    sx = np.float32(0.02)
    sw = (rng.uniform(0.001, 0.01, m)).astype(np.float32) if per_channel else np.float32(0.004)
    inits = {
        "sx": sx,
        "zx": np.asarray(rng.integers(0, 30) if act == np.uint8 else rng.integers(-10, 10), act),
        "w": w,
        "sw": sw,
        "zw": np.zeros(m, np.int8) if per_channel else np.int8(0),
        "sy": np.float32(sy * 0.1),
        "zy": np.asarray(128 if act == np.uint8 else 0, act),
    }
    names = ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy"]
    if bias:
        inits["B"] = rng.integers(-20000, 20000, m).astype(np.int32)
        names.append("B")
    node = helper.make_node(
        "QLinearConv",
        names,
        ["y"],
        group=group,
        strides=list(stride),
        dilations=list(dil),
        pads=list(pads),
        kernel_shape=[kh, kw],
    )
    want, got = run_both([node], {"x": x}, inits)
    assert_same(want, got)


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    act=dtypes,
    batch=st.sampled_from([(), (2,), (2, 3)]),
    mkn=st.tuples(st.integers(1, 7), st.integers(1, 40), st.integers(1, 9)),
    per_col=st.booleans(),
    sy=scales,
)
def test_qlinear_matmul(seed, act, batch, mkn, per_col, sy):
    rng = np.random.default_rng(seed)
    m, k, n = mkn
    a = qtensor(rng, act, (*batch, m, k))
    b = qtensor(rng, np.int8 if act == np.int8 else np.uint8, (k, n))
    inits = {
        "sa": np.float32(0.05),
        "za": np.asarray(3, act),
        "b": b,
        "sb": rng.uniform(0.001, 0.02, n).astype(np.float32) if per_col else np.float32(0.01),
        "zb": np.zeros(n, b.dtype) if per_col else np.asarray(0, b.dtype),
        "sy": np.float32(sy),
        "zy": np.asarray(7, act),
    }
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"])
    want, got = run_both([node], {"a": a}, inits)
    assert_same(want, got)


BROADCAST = [
    ((2, 8, 5, 5), (2, 8, 5, 5)),
    ((1, 8, 1, 1), (1, 8, 5, 5)),
    ((1, 8, 5, 5), (1, 8, 1, 1)),
    ((1,), (3, 4)),
    ((3, 4), (1,)),
    ((3, 1), (1, 4)),
    ((1, 1, 6), (2, 5, 6)),
    ((2, 5, 1), (2, 5, 6)),
]


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    op=st.sampled_from(["QLinearAdd", "QLinearMul"]),
    dtype=dtypes,
    shapes=st.sampled_from(BROADCAST),
    sa=scales,
    sb=scales,
    sc=scales,
    zps=st.tuples(*[st.integers(-30, 30)] * 3),
)
def test_qlinear_binary(seed, op, dtype, shapes, sa, sb, sc, zps):
    rng = np.random.default_rng(seed)
    off = 128 if dtype == np.uint8 else 0
    za, zb, zc = (np.asarray(z + off, dtype) for z in zps)
    inits = {"sa": np.float32(sa), "za": za, "sb": np.float32(sb), "zb": zb}
    inits |= {"sc": np.float32(sc * (4 if op == "QLinearMul" else 1)), "zc": zc}
    node = helper.make_node(
        op, ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["y"], domain="com.microsoft"
    )
    a, b = qtensor(rng, dtype, shapes[0]), qtensor(rng, dtype, shapes[1])
    want, got = run_both([node], {"a": a, "b": b}, inits)
    assert_same(want, got)


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    op=st.sampled_from(["QLinearSigmoid", "QLinearLeakyRelu", "QLinearGlobalAveragePool"]),
    dtype=dtypes,
    sx=scales,
    sy=scales,
    zx=st.integers(-20, 20),
    zy=st.integers(-20, 20),
    hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
)
def test_qlinear_unary(seed, op, dtype, sx, sy, zx, zy, hw):
    rng = np.random.default_rng(seed)
    off = 128 if dtype == np.uint8 else 0
    x = qtensor(rng, dtype, (2, 3, *hw))
    inits = {
        "sx": np.float32(sx),
        "zx": np.asarray(zx + off, dtype),
        "sy": np.float32(sy / 16 if op == "QLinearSigmoid" else sy),
        "zy": np.asarray(zy + off, dtype),
    }
    attrs = {"alpha": 0.13} if op == "QLinearLeakyRelu" else {}
    node = helper.make_node(
        op, ["x", "sx", "zx", "sy", "zy"], ["y"], domain="com.microsoft", **attrs
    )
    want, got = run_both([node], {"x": x}, inits)
    assert_same(want, got)


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    dtype=dtypes,
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pads=st.tuples(*[st.integers(0, 1)] * 4),
    include_pad=st.booleans(),
    sy=scales,
)
def test_qlinear_average_pool(seed, dtype, k, stride, pads, include_pad, sy):
    rng = np.random.default_rng(seed)
    off = 128 if dtype == np.uint8 else 0
    x = qtensor(rng, dtype, (1, 3, 6, 7))
    pads = [min(p, k[i % 2] - 1) for i, p in enumerate(pads)]
    inits = {
        "sx": np.float32(0.05),
        "zx": np.asarray(off + 3, dtype),
        "sy": np.float32(sy * 0.1),
        "zy": np.asarray(off - 2, dtype),
    }
    node = helper.make_node(
        "QLinearAveragePool",
        ["x", "sx", "zx", "sy", "zy"],
        ["y"],
        domain="com.microsoft",
        kernel_shape=list(k),
        strides=list(stride),
        pads=pads,
        count_include_pad=int(include_pad),
    )
    want, got = run_both([node], {"x": x}, inits)
    assert_same(want, got)


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    dtype=dtypes,
    d=st.integers(1, 40),
    sx=scales,
    sy=st.sampled_from([1 / 256, 1 / 255, 0.01, 0.0037]),
    axis_last=st.booleans(),
)
def test_qlinear_softmax(seed, dtype, d, sx, sy, axis_last):
    rng = np.random.default_rng(seed)
    off = 128 if dtype == np.uint8 else 0
    x = qtensor(rng, dtype, (3, d, 2) if not axis_last else (3, 2, d))
    inits = {
        "sx": np.float32(sx * 0.2),
        "zx": np.asarray(off, dtype),
        "sy": np.float32(sy),
        "zy": np.asarray(-128 if dtype == np.int8 else 0, dtype),
    }
    node = helper.make_node(
        "QLinearSoftmax",
        ["x", "sx", "zx", "sy", "zy"],
        ["y"],
        domain="com.microsoft",
        axis=-1 if axis_last else 1,
        opset=13,
    )
    want, got = run_both([node], {"x": x}, inits)
    assert_same(want, got)


@SETTINGS
@given(seed=st.integers(0, 2**31), dtype=dtypes, same=st.booleans(), axis=st.sampled_from([1, 2]))
def test_qlinear_concat(seed, dtype, same, axis):
    rng = np.random.default_rng(seed)
    off = 128 if dtype == np.uint8 else 0
    a, b = qtensor(rng, dtype, (1, 2, 3)), qtensor(rng, dtype, (1, 2, 3))
    inits = {
        "sy": np.float32(0.05),
        "zy": np.asarray(off, dtype),
        "sa": np.float32(0.05 if same else 0.0173),
        "za": np.asarray(off if same else off + 5, dtype),
        "sb": np.float32(0.11),
        "zb": np.asarray(off - 7, dtype),
    }
    node = helper.make_node(
        "QLinearConcat",
        ["sy", "zy", "a", "sa", "za", "b", "sb", "zb"],
        ["y"],
        domain="com.microsoft",
        axis=axis,
    )
    want, got = run_both([node], {"a": a, "b": b}, inits)
    assert_same(want, got)


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    act=dtypes,
    quant_out=st.booleans(),
    trans_b=st.booleans(),
    per_col=st.booleans(),
    alpha=st.sampled_from([1.0, 0.5, 1.7]),
    mkn=st.tuples(st.integers(1, 5), st.integers(1, 30), st.integers(1, 8)),
)
def test_qgemm(seed, act, quant_out, trans_b, per_col, alpha, mkn):
    rng = np.random.default_rng(seed)
    m, k, n = mkn
    a = qtensor(rng, act, (m, k))
    b = qtensor(rng, np.int8, (n, k) if trans_b else (k, n))
    inits = {
        "sa": np.float32(0.03),
        "za": np.asarray(5, act),
        "b": b,
        "sb": rng.uniform(0.001, 0.02, n).astype(np.float32) if per_col else np.float32(0.01),
        "zb": np.zeros(n, np.int8) if per_col else np.int8(0),
        "c": rng.integers(-3000, 3000, n).astype(np.int32),
    }
    names = ["a", "sa", "za", "b", "sb", "zb", "c"]
    if quant_out:
        inits |= {"sy": np.float32(0.07), "zy": np.asarray(-3 if act == np.int8 else 120, act)}
        names += ["sy", "zy"]
    node = helper.make_node(
        "QGemm", names, ["y"], domain="com.microsoft", alpha=alpha, transB=int(trans_b)
    )
    want, got = run_both([node], {"a": a}, inits)
    assert_same(want, got)


@SETTINGS
@given(seed=st.integers(0, 2**31), conv=st.booleans(), zp=st.integers(0, 255))
def test_integer_ops(seed, conv, zp):
    rng = np.random.default_rng(seed)
    if conv:
        x, w = qtensor(rng, np.uint8, (1, 4, 6, 6)), qtensor(rng, np.uint8, (6, 2, 3, 3))
        node = helper.make_node("ConvInteger", ["x", "w", "zx", "zw"], ["y"], group=2, pads=[1] * 4)
        inits = {"w": w, "zx": np.uint8(zp), "zw": np.uint8(128)}
    else:
        x, w = qtensor(rng, np.uint8, (2, 3, 17)), qtensor(rng, np.int8, (17, 4))
        node = helper.make_node("MatMulInteger", ["x", "w", "zx", "zw"], ["y"])
        inits = {"w": w, "zx": np.uint8(zp), "zw": np.int8(0)}
    want, got = run_both([node], {"x": x}, inits)
    assert_same(want, got)


def test_fma_emulation_matches_float64_exact_cases():
    """The emulated fma is exact: compare against exact rational arithmetic on corner cases."""
    from fractions import Fraction

    from qcc.interp.kernels.quant import fma_f32

    rng = np.random.default_rng(0)
    a = rng.normal(size=2000).astype(np.float32)
    b = rng.normal(size=2000).astype(np.float32)
    # c chosen so that a*b + c often lies near float32 midpoints
    c = (-(a.astype(np.float64) * b) + rng.normal(size=2000) * 1e-7).astype(np.float32)
    got = fma_f32(a, b, c)
    for i in range(0, 2000, 7):
        exact = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        # the correctly rounded float32: nearest of the two float32 neighbours of float(exact)
        f = np.float32(float(exact))
        cands = [f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf))]
        best = min(
            cands, key=lambda v: (abs(Fraction(float(v)) - exact), int(v.view(np.int32)) & 1)
        )
        assert got[i] == best, (i, a[i], b[i], c[i])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qdq_graph_fused_like_onnxruntime(dtype):
    """A QDQ Conv -> Relu -> Add graph: the interpreter fuses what onnxruntime fuses (int8 pairs
    moved to uint8, Relu absorbed) and its outputs equal onnxruntime's."""
    rng = np.random.default_rng(1)
    off = 128 if dtype == np.uint8 else 0
    inits = {
        "s": np.float32(0.02),
        "z": np.asarray(off, dtype),
        "w": qtensor(rng, np.int8, (4, 3, 3, 3)),
        "sw": np.float32(0.01),
        "zw": np.int8(0),
        "b": rng.integers(-500, 500, 4).astype(np.int32),
        "sb": np.float32(0.02 * 0.01),
        "zb": np.int32(0),
        "s1": np.float32(0.05),
        "z1": np.asarray(-128 if dtype == np.int8 else 0, dtype),
        "s2": np.float32(0.07),
        "z2": np.asarray(off + 3, dtype),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wd"]),
        helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["bd"]),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s1", "z1"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "s1", "z1"], ["rd"]),
        helper.make_node("Add", ["rd", "xd2"], ["a"]),
        helper.make_node("QuantizeLinear", ["a", "s2", "z2"], ["aq"]),
        helper.make_node("DequantizeLinear", ["aq", "s2", "z2"], ["y"]),
        helper.make_node("Slice", ["xd", "st", "en", "ax"], ["xs"]),
        helper.make_node("QuantizeLinear", ["xs", "s", "z"], ["xq2"]),
        helper.make_node("DequantizeLinear", ["xq2", "s", "z"], ["xd2"]),
    ]
    inits |= {
        "st": np.array([0], np.int64),
        "en": np.array([1], np.int64),
        "ax": np.array([1], np.int64),
    }
    x = rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    want, got = run_both(nodes, {"x": x}, inits)
    assert_same(want, got)
    model = onnx.helper.make_model(
        helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
        ),
        opset_imports=[helper.make_opsetid("", 13)],
        ir_version=8,
    )
    it = Interpreter(lift_model(model), profile="ort-x86")
    ops = sorted(n.op_type for n in it.graph)
    assert "QLinearAdd" in ops and "Relu" not in ops
    if dtype == np.uint8:
        assert "QLinearConv" in ops
        assert it.model.opaque["interp_prepare"]["s8_to_u8_pairs"] == 0
    else:
        # xq is read by the Conv and the Slice: its DQ is duplicated first, so that Q -> DQ
        # pair stays int8 and onnxruntime (x86) runs this Conv in float
        assert "QLinearConv" not in ops and "Conv" in ops
        assert it.model.opaque["interp_prepare"]["s8_to_u8_pairs"] == 3
    import collections
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.optimized_model_filepath = f"{d}/opt.onnx"
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        theirs = collections.Counter(n.op_type for n in onnx.load(f"{d}/opt.onnx").graph.node)
    mine = collections.Counter(ops)
    for op in ("QLinearConv", "QLinearAdd"):
        assert mine[op] == theirs[op], (op, mine, theirs)


@pytest.mark.parametrize("bias", [-(2**31), 2**31 - 1, -(2**31) + 5])
def test_qlinear_conv_bias_at_int32_limits_wraps_like_mlas(bias):
    """MLAS adds the bias to the int32 accumulator with wrapping SIMD adds."""
    rng = np.random.default_rng(3)
    x = qtensor(rng, np.uint8, (1, 4, 5, 5))
    inits = {
        "sx": np.float32(0.1),
        "zx": np.uint8(12),
        "w": qtensor(rng, np.int8, (2, 4, 1, 1)),
        "sw": np.float32(0.003),
        "zw": np.int8(0),
        "sy": np.float32(0.09),
        "zy": np.uint8(107),
        "B": np.array([bias, 7], np.int32),
    }
    node = helper.make_node(
        "QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "B"], ["y"]
    )
    want, got = run_both([node], {"x": x}, inits)
    assert_same(want, got)
