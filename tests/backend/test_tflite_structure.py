"""The structure of the .tflite the backend writes: layout, weights, quantization, file format.

Numerics are checked against onnxruntime too where the structure changes what runs (int8 I/O,
NCHW I/O), with the 1-LSB bound explained in test_tflite_ops.py.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from qcc.backend.tflite import convert
from qcc.errors import QccError
from tests.backend.qdq import G, op_counts, read_model, run_ort, run_tflite, tensor


def _conv_chain(g: G) -> None:
    """conv+relu -> depthwise+relu6 -> 1x1 conv -> residual add, as quantize writes it."""
    x = g.input((1, 3, 8, 8), 0.05, 3)
    w, ws = g.weight((8, 3, 3, 3), 0)
    c1 = g.qdq(
        g.op("Relu", [g.op("Conv", [x, w, g.bias(8, 0.05, ws)], pads=[1, 1, 1, 1])]), 0.05, -128
    )
    w, ws = g.weight((16, 1, 3, 3), 0)
    lo, hi = g.const(np.array(0, np.float32)), g.const(np.array(6, np.float32))
    dw = g.op("Conv", [c1, w, g.bias(16, 0.05, ws)], group=8, pads=[1, 1, 1, 1])
    c2 = g.qdq(g.op("Clip", [dw, lo, hi]), 6 / 255, -128)
    w, ws = g.weight((8, 16, 1, 1), 0)
    c3 = g.qdq(g.op("Conv", [c2, w, g.bias(8, 6 / 255, ws)]), 0.05, 0)
    g.output(g.op("Add", [c3, c1]), 0.08, -20)


def _chain() -> tuple[G, bytes]:
    g = G(seed=7)
    _conv_chain(g)
    return g, convert(g.model(), source="chain.onnx")


def _op_tensors(data: bytes, op: str) -> list[list[object]]:
    """For every operator ``op``: its input tensors."""
    m = read_model(data)
    sg = m.Subgraphs(0)
    enum = importlib.import_module("tflite.BuiltinOperator").BuiltinOperator
    code = getattr(enum, op)
    out = []
    for i in range(sg.OperatorsLength()):
        o = sg.Operators(i)
        if m.OperatorCodes(o.OpcodeIndex()).BuiltinCode() == code:
            out.append([sg.Tensors(j) if j >= 0 else None for j in o.InputsAsNumpy()])
    return out


def test_conv_chain_has_no_transpose_and_matches_onnxruntime():
    g, data = _chain()
    counts = op_counts(data)
    assert counts == {
        "QUANTIZE": 1,
        "CONV_2D": 2,
        "DEPTHWISE_CONV_2D": 1,
        "ADD": 1,
        "DEQUANTIZE": 1,
    }
    (ref,) = run_ort(g.model(), g.feeds)
    for resolver in ("default", "ref"):
        (out,) = run_tflite(data, g.feeds, resolver)
        assert np.abs(out - ref).max() <= 0.08 + 1e-6  # 1 LSB of the output scale


def test_weights_are_ohwi_and_depthwise_is_1hwc_with_per_channel_axes():
    _g, data = _chain()
    convs = _op_tensors(data, "CONV_2D")
    w = convs[0][1]
    assert w.ShapeAsNumpy().tolist() == [8, 3, 3, 3]  # OHWI
    assert w.Type() == 9  # INT8
    q = w.Quantization()
    assert q.QuantizedDimension() == 0 and q.ScaleLength() == 8
    assert not q.ZeroPointAsNumpy().any()
    assert convs[1][1].ShapeAsNumpy().tolist() == [8, 1, 1, 16]
    (dw,) = _op_tensors(data, "DEPTHWISE_CONV_2D")
    assert dw[1].ShapeAsNumpy().tolist() == [1, 3, 3, 16]
    assert dw[1].Quantization().QuantizedDimension() == 3
    assert dw[1].Quantization().ScaleLength() == 16
    # The bias is int32 with scale f32(sx * sw[c]) and zero point 0, per channel.
    bias = convs[0][2]
    assert bias.Type() == 2  # INT32
    sx = convs[0][0].Quantization().ScaleAsNumpy()[0]
    sw = w.Quantization().ScaleAsNumpy()
    want = (np.float64(sx) * sw.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(bias.Quantization().ScaleAsNumpy(), want)


def test_conv_weight_values_are_the_onnx_weights_transposed():
    g, data = _chain()
    m = read_model(data)
    first = next(t for t in g.inits if t.name[0] == "w" and t.name[1].isdigit())
    w_onnx = numpy_helper.to_array(first)
    assert w_onnx.shape == (8, 3, 3, 3)
    w = _op_tensors(data, "CONV_2D")[0][1]
    buf = m.Buffers(w.Buffer()).DataAsNumpy().view(np.int8).reshape(8, 3, 3, 3)
    np.testing.assert_array_equal(buf, w_onnx.transpose(0, 2, 3, 1))


def test_relu_and_relu6_become_fused_activations():
    _g, data = _chain()
    m = read_model(data)
    sg = m.Subgraphs(0)
    opts_mod = importlib.import_module("tflite.Conv2DOptions")
    dw_mod = importlib.import_module("tflite.DepthwiseConv2DOptions")
    acts = []
    for i in range(sg.OperatorsLength()):
        o = sg.Operators(i)
        code = m.OperatorCodes(o.OpcodeIndex()).BuiltinCode()
        t = o.BuiltinOptions()
        if code == 3:  # CONV_2D
            opt = opts_mod.Conv2DOptions()
        elif code == 4:  # DEPTHWISE_CONV_2D
            opt = dw_mod.DepthwiseConv2DOptions()
        else:
            continue
        opt.Init(t.Bytes, t.Pos)
        acts.append(opt.FusedActivationFunction())
    assert acts == [1, 3, 0]  # RELU, RELU6, NONE


def test_convert_is_deterministic():
    g = G(seed=7)
    _conv_chain(g)
    model = g.model()
    assert convert(model, metadata={"qcc.version": "1"}) == convert(
        model, metadata={"qcc.version": "1"}
    )


def test_file_conventions_identifier_version_buffers_and_opcodes():
    _g, data = _chain()
    assert data[4:8] == b"TFL3"
    m = read_model(data)
    assert m.Version() == 3
    assert m.Buffers(0).DataLength() == 0
    for i in range(1, m.BuffersLength()):
        b = m.Buffers(i)
        if b.DataLength():
            # Buffer.data is force_align 16: the vector's first byte is 16-byte aligned.
            start = b._tab.Vector(b._tab.Offset(4))
            assert start % 16 == 0
    for i in range(m.OperatorCodesLength()):
        c = m.OperatorCodes(i)
        assert c.DeprecatedBuiltinCode() == min(c.BuiltinCode(), 127)


def test_metadata_entries_point_at_their_buffers():
    g = G(seed=7)
    _conv_chain(g)
    data = convert(g.model(), metadata={"qcc.version": "0.9", "qcc.recipe": "int8-tflite"})
    m = read_model(data)
    got = {}
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        got[md.Name().decode()] = m.Buffers(md.Buffer()).DataAsNumpy().tobytes().decode()
    assert got == {"qcc.version": "0.9", "qcc.recipe": "int8-tflite"}


def test_int8_io_has_no_boundary_ops_and_matches_onnxruntime():
    g = G(seed=7)
    _conv_chain(g)
    data = convert(g.model(), io="int8")
    counts = op_counts(data)
    assert "QUANTIZE" not in counts and "DEQUANTIZE" not in counts
    sg = read_model(data).Subgraphs(0)
    for idx in [sg.Inputs(0), sg.Outputs(0)]:
        assert sg.Tensors(idx).Type() == 9  # INT8
    assert sg.Tensors(sg.Inputs(0)).Name() == b"in0"
    assert sg.Tensors(sg.Inputs(0)).Quantization().ZeroPointAsNumpy().tolist() == [3]
    (ref,) = run_ort(g.model(), g.feeds)
    (out,) = run_tflite(data, g.feeds)
    assert np.abs(out - ref).max() <= 0.08 + 1e-6


def test_keep_nchw_keeps_the_input_layout_with_one_transpose():
    g = G(seed=7)
    _conv_chain(g)
    data = convert(g.model(), keep_nchw=["in0"])
    assert op_counts(data)["TRANSPOSE"] == 1
    assert tensor(data, "in0").ShapeAsNumpy().tolist() == [1, 3, 8, 8]
    (ref,) = run_ort(g.model(), g.feeds)
    it_feeds = dict(g.feeds)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], it_feeds["in0"])
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"]).transpose(0, 3, 1, 2)
    assert np.abs(out - ref).max() <= 0.08 + 1e-6


def test_flatten_into_fully_connected_permutes_the_weights_not_the_activation():
    g = G(seed=3)
    x = g.input((1, 4, 3, 3))
    f = g.qdq(g.op("Flatten", [x]), 0.05, 3)
    w, ws = g.weight((10, 36), 0)
    g.output(g.op("Gemm", [f, w, g.bias(10, 0.05, ws)], transB=1), 0.1, 0)
    data = convert(g.model())
    assert "TRANSPOSE" not in op_counts(data)
    (fc,) = _op_tensors(data, "FULLY_CONNECTED")
    m = read_model(data)
    got = m.Buffers(fc[1].Buffer()).DataAsNumpy().view(np.int8).reshape(10, 36)
    first = next(t for t in g.inits if t.name[0] == "w" and t.name[1].isdigit())
    w_onnx = numpy_helper.to_array(first)  # columns in (c, h, w) order; NHWC flattens (h, w, c)
    np.testing.assert_array_equal(
        got, w_onnx.reshape(10, 4, 3, 3).transpose(0, 2, 3, 1).reshape(10, 36)
    )


def test_flatten_that_mixes_channels_into_a_graph_output_writes_one_transpose():
    g = G(seed=3)
    x = g.input((1, 4, 3, 3))
    g.output(g.op("Flatten", [x]), 0.05, 3)
    assert op_counts(convert(g.model()))["TRANSPOSE"] == 1


def test_flatten_of_a_1x1_map_needs_no_transpose():
    g = G(seed=3)
    x = g.input((1, 4, 6, 6))
    p = g.qdq(g.op("GlobalAveragePool", [x]), 0.05, 3)
    f = g.qdq(g.op("Flatten", [p]), 0.05, 3)
    w, ws = g.weight((10, 4), 0)
    g.output(g.op("Gemm", [f, w, g.bias(10, 0.05, ws)], transB=1), 0.1, 0)
    data = convert(g.model())
    assert "TRANSPOSE" not in op_counts(data)
    (ref,) = run_ort(g.model(), g.feeds)
    (out,) = run_tflite(data, g.feeds)
    assert np.abs(out - ref).max() <= 0.1 + 1e-6


def test_symbolic_batch_becomes_one():
    g = G(seed=7)
    _conv_chain(g)
    model = g.model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    data = convert(model)
    assert tensor(data, "in0").ShapeAsNumpy().tolist() == [1, 8, 8, 3]


def _single(op: str, inputs: list[str], **attrs) -> G:
    g = G(seed=1)
    x = g.input((1, 4, 6, 6), 0.05, 3)
    extra = [g.const(v) for v in inputs]
    node = oh.make_node(op, [x, *extra], ["y"], name="Conv_12", **attrs)
    g.nodes.append(node)
    g.output("y", 0.05, 0)
    return g


def test_unsupported_op_error_names_the_file_node_and_op():
    g = _single("Erf", [])
    with pytest.raises(QccError) as e:
        convert(g.model(), source="model.onnx")
    assert str(e.value) == "model.onnx: node 'Conv_12' (Erf): Erf has no TFLite lowering"


def test_conv_transpose_output_padding_error_text():
    g = G(seed=1)
    x = g.input((1, 4, 5, 5), 0.05, 3)
    w, ws = g.weight((4, 6, 3, 3), 1)
    g.nodes.append(
        oh.make_node(
            "ConvTranspose",
            [x, w, g.bias(6, 0.05, ws)],
            ["y"],
            name="Conv_12",
            strides=[2, 2],
            output_padding=[1, 1],
        )
    )
    g.output("y", 0.05, 0)
    with pytest.raises(QccError) as e:
        convert(g.model(), source="model.onnx")
    assert str(e.value) == (
        "model.onnx: node 'Conv_12' (ConvTranspose): output_padding is not supported by "
        "TRANSPOSE_CONV"
    )


def test_uint8_activations_are_a_clear_error():
    g = G(seed=1)
    g.inputs.append(oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]))
    s, z = g.const(np.array(0.1, np.float32)), g.const(np.array(128, np.uint8))
    g.nodes.append(oh.make_node("QuantizeLinear", ["x", s, z], ["xq"], name="q0"))
    g.nodes.append(oh.make_node("DequantizeLinear", ["xq", s, z], ["y"], name="dq0"))
    g.output("y")
    with pytest.raises(QccError) as e:
        convert(g.model(), source="m.onnx")
    assert str(e.value).startswith("m.onnx: node 'q0' (QuantizeLinear): uint8 activations are")


def test_old_opset_is_refused():
    g = G(seed=1)
    _conv_chain(g)
    with pytest.raises(QccError, match="opset 11; the TFLite backend needs opset 13"):
        convert(g.model(opset=11), source="m.onnx")


@pytest.mark.parametrize("hi,absorbed", [(1.0, True), (0.5, False)])
def test_clip_is_absorbed_by_a_q_whose_range_lies_inside_it(hi, absorbed):
    """Add -> Clip(0, hi) -> Q(1/255, -128): the Q saturates to [0, 1], so Clip(0, 1) vanishes
    into the int8 ADD; Clip(0, 0.5) does not, and the Add and Clip run in float."""
    g = G(seed=5)
    a = g.input((1, 4, 3, 3), 0.02, 0)
    b = g.input((1, 4, 3, 3), 0.02, 0)
    lo, h = g.const(np.array(0, np.float32)), g.const(np.array(hi, np.float32))
    g.output(g.op("Clip", [g.op("Add", [a, b]), lo, h]), 1 / 255, -128)
    data = convert(g.model())
    counts = op_counts(data)
    if absorbed:
        assert counts == {"QUANTIZE": 2, "ADD": 1, "DEQUANTIZE": 1}
    else:
        assert counts["DEQUANTIZE"] == 3 and counts["MINIMUM"] == 1
    (ref,) = run_ort(g.model(), g.feeds)
    (out,) = run_tflite(data, g.feeds)
    assert np.abs(out - ref).max() <= 1 / 255 + 1e-6
    assert len(np.unique(ref)) > 3
