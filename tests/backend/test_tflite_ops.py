"""Each TFLite op the backend writes, on a tiny QDQ graph: LiteRT against onnxruntime.

Tolerance: the converted model and the QDQ model are compared after dequantization, in units
of the output scale (LSB). Both runtimes see the same int8 inputs (the feeds lie on the
quantization grid, so the float -> int8 step agrees). The integer kernels round differently
(ARITHMETIC.md): XNNPACK requantizes CONV/FC like onnxruntime, the reference kernels round
twice half-away-from-zero, and ops onnxruntime runs in float between DQ and Q (TANH, HARD_SWISH,
RESIZE_BILINEAR, MEAN, SOFTMAX ...) are table or fixed-point kernels in TFLite, so a result can sit
one step apart, and a second step when such an error feeds a second requantization. Each case
states its bound; most are 1 LSB.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pytest

from qcc.backend.tflite import convert
from tests.backend.qdq import G, op_counts, run_ort, run_tflite

CASES: dict[str, tuple[Callable[[G], None], int, set[str]]] = {}


def case(name: str, tol: int = 1, ops: set[str] | None = None):
    def deco(fn: Callable[[G], None]) -> Callable[[G], None]:
        CASES[name] = (fn, tol, ops or set())
        return fn

    return deco


def _conv(g: G, x: str, cin: int, cout: int, k: int = 3, xs: float = 0.05, **attrs) -> str:
    w, ws = g.weight((cout, cin // attrs.get("group", 1), k, k), 0)
    b = g.bias(cout, xs, ws)
    return g.op("Conv", [x, w, b], **attrs)


@case("conv_relu", ops={"CONV_2D"})
def _(g: G) -> None:
    x = g.input((1, 3, 8, 8))
    y = g.op("Relu", [_conv(g, x, 3, 8, pads=[1, 1, 1, 1])])
    g.output(y, 0.05, -128)


@case("conv_stride2_explicit_pad", ops={"CONV_2D", "PAD"})
def _(g: G) -> None:
    x = g.input((1, 4, 8, 8))
    g.output(_conv(g, x, 4, 6, strides=[2, 2], pads=[1, 1, 1, 1]), 0.1, 5)


@case("conv_same_upper", ops={"CONV_2D"})
def _(g: G) -> None:
    x = g.input((1, 4, 9, 9))
    g.output(_conv(g, x, 4, 5, auto_pad="SAME_UPPER", strides=[2, 2]), 0.1, -3)


@case("conv_dilated", ops={"CONV_2D"})
def _(g: G) -> None:
    x = g.input((1, 4, 9, 9))
    g.output(_conv(g, x, 4, 5, pads=[2, 2, 2, 2], dilations=[2, 2]), 0.1, -3)


@case("depthwise_relu6", ops={"DEPTHWISE_CONV_2D"})
def _(g: G) -> None:
    x = g.input((1, 4, 8, 8))
    y = _conv(g, x, 4, 8, group=4, pads=[1, 1, 1, 1])
    lo, hi = g.const(np.array(0, np.float32)), g.const(np.array(6, np.float32))
    g.output(g.op("Clip", [y, lo, hi]), 6 / 255, -128)


@case("conv_transpose_valid", ops={"TRANSPOSE_CONV"})
def _(g: G) -> None:
    x = g.input((1, 4, 5, 5))
    w, ws = g.weight((4, 6, 3, 3), 1)
    g.output(g.op("ConvTranspose", [x, w, g.bias(6, 0.05, ws)], strides=[2, 2]), 0.05, 0)


# kernel == stride, no padding: a 1x1 CONV_2D to k*k*Cout channels, then DEPTH_TO_SPACE, with
# the Relu fused into the conv (the upsampling heads of segmentation/detection nets)
@case("conv_transpose_kernel_is_stride_relu", ops={"CONV_2D", "DEPTH_TO_SPACE"})
def _(g: G) -> None:
    x = g.input((1, 4, 5, 5))
    w, ws = g.weight((4, 3, 2, 2), 1)
    y = g.op("ConvTranspose", [x, w, g.bias(3, 0.05, ws)], strides=[2, 2])
    g.output(g.op("Relu", [y]), 0.05, -128)


@case("conv_transpose_same_relu", ops={"TRANSPOSE_CONV", "RELU"})
def _(g: G) -> None:
    x = g.input((1, 3, 4, 4))
    w, ws = g.weight((3, 5, 4, 4), 1)
    y = g.op("ConvTranspose", [x, w, g.bias(5, 0.05, ws)], strides=[2, 2], pads=[1, 1, 1, 1])
    g.output(g.op("Relu", [y]), 0.05, -128)


@case("flatten_gemm", ops={"FULLY_CONNECTED", "RESHAPE"})
def _(g: G) -> None:
    x = g.input((1, 4, 3, 3))
    f = g.qdq(g.op("Flatten", [x]), 0.05, 3)
    w, ws = g.weight((10, 36), 0)
    g.output(g.op("Gemm", [f, w, g.bias(10, 0.05, ws)], transB=1), 0.1, 0)


@case("flatten_to_output_mixes_channels", ops={"TRANSPOSE", "RESHAPE"})
def _(g: G) -> None:
    x = g.input((1, 4, 3, 3))
    g.output(g.op("Flatten", [x]), 0.05, 3)


@case("flatten_matmul_float", ops={"FULLY_CONNECTED", "DEQUANTIZE"})
def _(g: G) -> None:
    x = g.input((1, 3, 2, 4))
    f = g.op("Flatten", [x])
    w = g.const(g.rng.standard_normal((24, 5)).astype(np.float32))
    g.output(g.op("MatMul", [f, w]), 0.1, 0)


@case("gemm_no_transb_relu", ops={"FULLY_CONNECTED"})
def _(g: G) -> None:
    x = g.input((2, 16))
    w, ws = g.weight((16, 7), 1)
    g.output(g.op("Relu", [g.op("Gemm", [x, w, g.bias(7, 0.05, ws)])]), 0.05, -128)


@case("matmul_const_rank3", ops={"FULLY_CONNECTED"})
def _(g: G) -> None:
    x = g.input((1, 5, 12))
    w, _ = g.weight((12, 6), 1)
    g.output(g.op("MatMul", [x, w]), 0.1, 1)


@case("batch_matmul_transposed", ops={"BATCH_MATMUL"})
def _(g: G) -> None:
    a = g.input((2, 4, 6), 0.05, 0)
    b = g.input((2, 5, 6), 0.04, -2)
    bt = g.qdq(g.op("Transpose", [b], perm=[0, 2, 1]), 0.04, -2)
    g.output(g.op("MatMul", [a, bt]), 0.1, 0)


@case("add_relu", ops={"ADD"})
def _(g: G) -> None:
    a = g.input((1, 4, 6, 6), 0.05, 3)
    b = g.input((1, 4, 6, 6), 0.03, -7)
    g.output(g.op("Relu", [g.op("Add", [a, b])]), 0.06, -128)


@case("add_broadcast_const", ops={"ADD"})
def _(g: G) -> None:
    a = g.input((1, 4, 5, 5), 0.05, 3)
    k = g.qconst(np.arange(-40, 40, 20).reshape(4, 1, 1), 0.02, 0)
    g.output(g.op("Add", [a, k]), 0.05, 2)


@case("sub_mul", ops={"SUB", "MUL"})
def _(g: G) -> None:
    a = g.input((1, 3, 4, 4), 0.05, 3)
    b = g.input((1, 3, 1, 1), 0.03, -7)
    s = g.qdq(g.op("Sub", [a, b]), 0.08, 0)
    g.output(g.op("Mul", [s, a]), 0.4, 0)


@case("mul_const_scalar", ops={"MUL"})
def _(g: G) -> None:
    a = g.input((1, 6, 3, 3), 0.05, 3)
    g.output(g.op("Mul", [a, g.qconst(np.array(90), 0.01)]), 0.05, 0)


@case("global_average_pool", ops={"MEAN"})
def _(g: G) -> None:
    x = g.input((1, 6, 5, 5), 0.05, 3)
    g.output(g.op("GlobalAveragePool", [x]), 0.02, 0)


@case("reduce_mean_channels", ops={"MEAN"})
def _(g: G) -> None:
    x = g.input((1, 6, 4, 4), 0.05, 3)
    g.output(g.op("ReduceMean", [x], axes=[1], keepdims=0), 0.02, 0)


@case("concat_channels", ops={"CONCATENATION"})
def _(g: G) -> None:
    x = g.input((1, 3, 6, 6))
    a = g.qdq(_conv(g, x, 3, 4, pads=[1, 1, 1, 1]), 0.1, 0)
    b = g.qdq(_conv(g, x, 3, 2, k=1), 0.1, 0)
    g.output(g.op("Concat", [a, b], axis=1), 0.1, 0)


@case("concat_requantize", ops={"CONCATENATION", "QUANTIZE"})
def _(g: G) -> None:
    a = g.input((1, 2, 4, 4), 0.05, 3)
    b = g.input((1, 3, 4, 4), 0.03, -5)
    g.output(g.op("Concat", [a, b], axis=1), 0.05, 3)


@case("maxpool_pads", ops={"MAX_POOL_2D"})
def _(g: G) -> None:
    x = g.input((1, 3, 8, 8), 0.05, 3)
    g.output(g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 0.05, 3)


@case("maxpool_ceil", ops={"MAX_POOL_2D"})
def _(g: G) -> None:
    x = g.input((1, 3, 7, 7), 0.05, 3)
    g.output(g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), 0.05, 3)


@case("avgpool", ops={"AVERAGE_POOL_2D"})
def _(g: G) -> None:
    x = g.input((1, 3, 8, 8), 0.05, 3)
    g.output(g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2]), 0.05, 3)


@case("avgpool_count_include_pad", ops={"AVERAGE_POOL_2D", "PAD"})
def _(g: G) -> None:
    x = g.input((1, 3, 6, 6), 0.05, 3)
    y = g.op("AveragePool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)
    g.output(y, 0.05, 3)


@case("reshape_squeeze_unsqueeze", ops={"RESHAPE"})
def _(g: G) -> None:
    x = g.input((1, 4, 1, 6), 0.05, 3)
    s = g.qdq(g.op("Squeeze", [x, g.const(np.array([2]))]), 0.05, 3)
    t = g.qdq(g.op("Transpose", [s], perm=[0, 2, 1]), 0.05, 3)
    r = g.qdq(g.op("Reshape", [t, g.const(np.array([1, 3, 2, 4]))]), 0.05, 3)
    g.output(g.op("Unsqueeze", [r, g.const(np.array([0]))]), 0.05, 3)


@case("pad_constant", ops={"PAD"})
def _(g: G) -> None:
    x = g.input((1, 3, 4, 4), 0.05, 3)
    pads = g.const(np.array([0, 0, 1, 2, 0, 0, 2, 1]))
    g.output(g.op("Pad", [x, pads]), 0.05, 3)


@case("resize_nearest_asymmetric", ops={"RESIZE_NEAREST_NEIGHBOR"})
def _(g: G) -> None:
    x = g.input((1, 3, 4, 5), 0.05, 3)
    sc = g.const(np.array([1, 1, 2, 2], np.float32))
    y = g.op(
        "Resize",
        [x, "", sc],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    g.output(y, 0.05, 3)


@case("resize_nearest_half_pixel", ops={"RESIZE_NEAREST_NEIGHBOR"})
def _(g: G) -> None:
    x = g.input((1, 3, 4, 4), 0.05, 3)
    sizes = g.const(np.array([1, 3, 12, 8]))
    g.output(g.op("Resize", [x, "", "", sizes], mode="nearest"), 0.05, 3)


@case("resize_bilinear_half_pixel", ops={"RESIZE_BILINEAR"})
def _(g: G) -> None:
    x = g.input((1, 3, 4, 4), 0.05, 3)
    sc = g.const(np.array([1, 1, 2, 2], np.float32))
    g.output(g.op("Resize", [x, "", sc], mode="linear"), 0.05, 3)


@case("resize_bilinear_align_corners", ops={"RESIZE_BILINEAR"})
def _(g: G) -> None:
    x = g.input((1, 2, 3, 4), 0.05, 3)
    sizes = g.const(np.array([1, 2, 5, 7]))
    y = g.op(
        "Resize", [x, "", "", sizes], mode="linear", coordinate_transformation_mode="align_corners"
    )
    g.output(y, 0.05, 3)


@case("sigmoid", ops={"LOGISTIC"})
def _(g: G) -> None:
    g.output(g.op("Sigmoid", [g.input((1, 4, 4, 4), 0.05, 3)]), 1 / 256, -128)


@case("tanh", ops={"TANH"})
def _(g: G) -> None:
    g.output(g.op("Tanh", [g.input((1, 4, 4, 4), 0.02, 3)]), 1 / 128, 0)


@case("softmax_channels", ops={"SOFTMAX"})
def _(g: G) -> None:
    g.output(g.op("Softmax", [g.input((1, 5, 3, 3), 0.05, 3)], axis=1), 1 / 256, -128)


@case("softmax_rank2", ops={"SOFTMAX"})
def _(g: G) -> None:
    g.output(g.op("Softmax", [g.input((2, 10), 0.05, 3)]), 1 / 256, -128)


@case("hard_swish", ops={"HARD_SWISH"})
def _(g: G) -> None:
    g.output(g.op("HardSwish", [g.input((1, 4, 4, 4), 0.05, 3)]), 0.04, -100)


@case("leaky_relu", ops={"LEAKY_RELU"})
def _(g: G) -> None:
    g.output(g.op("LeakyRelu", [g.input((1, 4, 4, 4), 0.05, 3)], alpha=0.1), 0.05, -80)


@case("relu_standalone", ops={"RELU"})
def _(g: G) -> None:
    g.output(g.op("Relu", [g.input((1, 4, 4, 4), 0.05, 3)]), 0.03, -128)


@case("split_slice_gather", ops={"SPLIT", "STRIDED_SLICE", "GATHER"})
def _(g: G) -> None:
    x = g.input((1, 6, 4, 5), 0.05, 3)
    a, b = g.op("Split", [x], n_out=2, axis=1)
    g.output(a, 0.05, 3)
    s = g.op(
        "Slice",
        [b, g.const(np.array([1, 0])), g.const(np.array([3, 5])), g.const(np.array([2, 3]))],
    )
    g.output(s, 0.05, 3)
    g.output(g.op("Gather", [x, g.const(np.array([5, 0, 2]))], axis=1), 0.05, 3)


def _slice(g: G, x: str, starts, ends, axes, steps) -> str:
    args = [starts, ends, axes, steps]
    return g.op("Slice", [x, *(g.const(np.array(a, np.int64)) for a in args)])


@case("space_to_depth_slices", ops={"STRIDED_SLICE", "RESHAPE", "CONCATENATION"})
def _(g: G) -> None:
    # the YOLOv5/YOLOX "Focus" stem: x[..., dh::2, dw::2] for the 4 phases, concatenated
    x = g.input((1, 3, 8, 10), 0.05, 3)
    big = 2**31 - 1
    parts = []
    for dh, dw in ((0, 0), (1, 0), (0, 1), (1, 1)):
        h = _slice(g, x, [dh], [big], [2], [2])
        parts.append(_slice(g, h, [dw], [big], [3], [2]))
    g.output(g.op("Concat", parts, axis=1), 0.05, 3)


@case("strided_slices_uneven", ops={"STRIDED_SLICE", "RESHAPE"})
def _(g: G) -> None:
    x = g.input((1, 4, 9, 7), 0.05, 3)
    # rows 1, 4, 7 of 9: the window [0, 9) holds them at phase 1
    g.output(_slice(g, x, [1, 0], [9, 7], [2, 3], [3, 1]), 0.05, 3)
    # columns 0, 3, 6 of 7: no window of 3 * 3 fits, so the strided op stays
    g.output(_slice(g, x, [0], [7], [3], [3]), 0.05, 3)
    # two strided axes at once, with a channel range: cut, then one phase per axis
    g.output(_slice(g, x, [1, 1, 0], [4, 8, 6], [1, 2, 3], [2, 2, 3]), 0.05, 3)


@case("split_uneven", ops={"SPLIT_V"})
def _(g: G) -> None:
    x = g.input((1, 5, 3, 3), 0.05, 3)
    a, b = g.op("Split", [x, g.const(np.array([2, 3]))], n_out=2, axis=1)
    g.output(a, 0.05, 3)
    g.output(b, 0.05, 3)


@case("float_island_hardsigmoid_div", ops={"DEQUANTIZE", "QUANTIZE", "MINIMUM", "DIV"})
def _(g: G) -> None:
    x = g.input((1, 4, 4, 4), 0.05, 3)
    h = g.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)
    d = g.op("Div", [h, g.const(np.array(3.0, np.float32))])
    g.output(d, 1 / 512, -128)


@pytest.mark.parametrize("resolver", ["default", "ref"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_onnxruntime(name: str, resolver: str) -> None:
    build, tol, ops = CASES[name]
    g = G(seed=zlib.crc32(name.encode()) % 1000)
    build(g)
    model = g.model()
    data = convert(model, source=f"{name}.onnx")
    counts = op_counts(data)
    assert ops <= set(counts), f"expected {ops}, wrote {dict(counts)}"
    if "TRANSPOSE" not in ops:
        assert "TRANSPOSE" not in counts, dict(counts)
    refs = run_ort(model, g.feeds)
    outs = run_tflite(data, g.feeds, resolver)
    assert len(outs) == len(refs)
    for out, ref, vi in zip(outs, refs, g.outputs, strict=True):
        scale = g.out_scales[vi.name]
        assert out.shape == ref.shape
        lsb = np.abs(out.astype(np.float64) - ref) / scale
        assert lsb.max() <= tol + 1e-3, f"{vi.name}: {lsb.max():.2f} LSB (tolerance {tol})"
        # A case that could not fail would be worthless: the reference must vary.
        assert len(np.unique(ref)) >= 3
