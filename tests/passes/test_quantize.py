"""observe + calibrate + quantize on small graphs: placement checked against onnxruntime's
optimized graph (no quantized Conv/MatMul/Gemm left in float), parameters, numerics."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from qcc.frontend import lower_model
from qcc.ir import Model
from qcc.pipeline import PassInvocation, PassManager, Session, get_pass
from qcc.quant.data import CalibrationSet
from qcc.quant.params import sqnr_db
from tests.conftest import lift, make_model, ort_run

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def calib_set(model: Model, feeds: list[dict]) -> CalibrationSet:
    inputs = [v for v in model.graph.inputs if v.name not in model.graph.initializers]
    return CalibrationSet("test", inputs, len(feeds), lambda i: feeds[i])


def quantize(proto, feeds, *, exclude=None, fuse=True, qopts=None, **observe):
    m = lift(proto)
    steps = ["fold-constants"] + (["fuse-activations"] if fuse else [])
    pipeline = [PassInvocation(s) for s in steps]
    pipeline.append(PassInvocation("observe", get_pass("observe").bind(observe)))
    pipeline.append(PassInvocation("calibrate"))
    pipeline.append(
        PassInvocation("quantize", get_pass("quantize").bind(qopts or {}), exclude=exclude)
    )
    records = PassManager(
        pipeline, verify_each=True, session=Session(calibration=calib_set(m, feeds))
    ).run(m)
    return m, records


def optimized_ops(model: Model) -> collections.Counter:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.optimized_model_filepath = f"{d}/opt.onnx"
        ort.InferenceSession(
            lower_model(model).SerializeToString(), so, providers=["CPUExecutionProvider"]
        )
        return collections.Counter(n.op_type for n in onnx.load(f"{d}/opt.onnx").graph.node)


def convnet():
    return make_model(
        [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
            helper.make_node("Clip", ["c2", "zero", "six"], ["r2"]),
            helper.make_node("Add", ["r2", "p1s"], ["a"]),
            helper.make_node("HardSwish", ["a"], ["h"]),
            helper.make_node("GlobalAveragePool", ["h"], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["flat"]),
            helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1),
            helper.make_node("Softmax", ["logits"], ["y"]),
        ],
        {"x": (F, [1, 3, 16, 16])},
        {"y": (F, [1, 5])},
        {
            "w1": rand(8, 3, 3, 3, scale=0.3),
            "b1": rand(8, scale=0.1),
            "w2": rand(8, 8, 3, 3, scale=0.2),
            "zero": np.array(0.0, np.float32),
            "six": np.array(6.0, np.float32),
            "p1s": rand(1, 8, 1, 1),
            "wf": rand(5, 8, scale=0.5),
            "bf": rand(5, scale=0.1),
        },
    )


def feeds(n=8, shape=(1, 3, 16, 16)):
    return [{"x": rand(*shape)} for _ in range(n)]


def test_convnet_runs_every_planned_op_in_integer():
    proto = convnet()
    m, records = quantize(proto, feeds())
    ops = optimized_ops(m)
    assert ops["QLinearConv"] == 2 and ops["QGemm"] == 1
    assert (
        ops["QLinearAdd"] == 1
        and ops["QLinearGlobalAveragePool"] == 1
        and ops["QLinearSoftmax"] == 1
    )
    assert not {"Conv", "FusedConv", "Gemm", "MatMul", "Relu", "Clip"} & set(ops)
    rec = records[-1]
    assert rec.stats["absorbed:Relu"] == 1 and rec.stats["absorbed:Clip"] == 1
    assert rec.stats["shared:MaxPool"] == 1
    assert "kept in float: HardSwish x1 (onnxruntime has no integer HardSwish)" in rec.notes
    # graph I/O stay float, and the output keeps its name
    back = lower_model(m)
    assert [(v.name, v.type.tensor_type.elem_type) for v in back.graph.input] == [("x", F)]
    assert [(v.name, v.type.tensor_type.elem_type) for v in back.graph.output] == [("y", F)]
    x = feeds(4)
    for f in x:
        assert sqnr_db(ort_run(proto, f)[0], ort_run(back, f)[0]) > 20


def test_float_conv_inputs_keeps_the_three_channel_stem_in_float():
    proto = convnet()  # its first Conv reads 3 channels, its second 8
    m, records = quantize(proto, feeds(), qopts={"float_conv_inputs": 3})
    ops = optimized_ops(m)
    assert ops["QLinearConv"] == 1 and ops["Conv"] + ops["FusedConv"] == 1
    note = records[-1].notes[0]
    assert "Conv x1 (3 input channel(s), float-conv-inputs = 3)" in note
    conv = next(n for n in m.graph if n.op_type == "Conv")
    assert conv.input(0).name == "x" and conv.input(1).const.dtype == np.float32
    back = lower_model(m)
    for f in feeds(4):
        assert sqnr_db(ort_run(proto, f)[0], ort_run(back, f)[0]) > 20
    m, _ = quantize(proto, feeds(), qopts={"float_conv_inputs": 2})
    assert optimized_ops(m)["QLinearConv"] == 2


def test_shared_ops_take_their_input_parameters_and_relu_gets_zero_point_at_minimum():
    m, _ = quantize(convnet(), feeds())
    by_name = {n.name: n for n in m.graph}
    qs = {n.input(0).name: n for n in m.graph if n.op_type == "QuantizeLinear"}
    relu_q, pool_q = qs["r1"], qs["p1"]
    assert relu_q.input(1).const == pool_q.input(1).const  # MaxPool: same scale
    assert relu_q.input(2).const == pool_q.input(2).const == 0  # uint8 zp at the minimum
    clip_q = qs["r2"]
    top = float(np.float32(255 * clip_q.input(1).const))
    assert top <= 6.0  # inside the Clip's range, so onnxruntime absorbs it
    assert "c1" not in qs and "c2" not in qs  # no quantizer between Conv and Relu/Clip
    assert by_name  # graph is intact


def test_weights_are_int8_per_channel_and_bias_int32_with_exact_scale():
    m, _ = quantize(convnet(), feeds())
    conv = next(n for n in m.graph if n.op_type == "Conv")
    wdq, bdq, xdq = conv.input(1).producer, conv.input(2).producer, conv.input(0).producer
    assert wdq.input(0).const.dtype == np.int8 and wdq.attr("axis") == 0
    assert np.abs(wdq.input(0).const).max() == 127
    assert bdq.input(0).const.dtype == np.int32
    x_scale, w_scale, b_scale = xdq.input(1).const, wdq.input(1).const, bdq.input(1).const
    assert b_scale.tobytes() == (np.float32(x_scale) * w_scale).astype(np.float32).tobytes()


def test_excluded_nodes_stay_float_with_few_boundaries():
    from qcc.select import OpType

    m, records = quantize(convnet(), feeds(), exclude=OpType(("Gemm", "Softmax")))
    ops = optimized_ops(m)
    assert ops["QGemm"] == 0 and ops["Gemm"] + ops["FusedGemm"] == 1 and "QLinearSoftmax" not in ops
    assert "kept in float: Gemm x1 (excluded by the recipe), HardSwish x1" in records[-1].notes[0]
    # the Softmax's input (a float Gemm's output) gets no quantizer: no Q between float ops
    logits = next(n for n in m.graph if n.op_type == "Gemm").output
    assert [u.node.op_type for u in logits.uses] == ["Softmax"]


def test_matmul_and_int8_activations():
    proto = make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Add", ["m", "b"], ["y"]),
        ],
        {"x": (F, [4, 16])},
        {"y": (F, [4, 8])},
        {"w": rand(16, 8), "b": rand(8)},
    )
    from qcc.quant.scheme import Granularity, QDType, QuantScheme

    a8 = QuantScheme("s8", QDType.INT8, symmetric=False)
    w8 = QuantScheme("w8", QDType.INT8, symmetric=True, granularity=Granularity.PER_CHANNEL)
    m, _ = quantize(proto, [{"x": rand(4, 16)} for _ in range(4)], activations=a8, weights=w8)
    ops = optimized_ops(m)
    assert ops["QLinearMatMul"] == 1 and ops["QLinearAdd"] == 1 and "MatMul" not in ops
    q = next(n for n in m.graph if n.op_type == "QuantizeLinear")
    assert q.input(2).const.dtype == np.int8


def test_quantize_without_observe_or_calibration_fails_clearly():
    from qcc.errors import PassError

    m = lift(convnet())
    with pytest.raises(PassError, match="run `observe` before it"):
        PassManager([PassInvocation("quantize")]).run(m)
    with pytest.raises(PassError, match="no calibration data"):
        PassManager([PassInvocation("observe"), PassInvocation("calibrate")]).run(m)


def test_error_report_ranks_tensors_worst_first():
    m = lift(convnet())
    f = feeds()
    pipeline = [
        PassInvocation(s)
        for s in ("fold-constants", "fuse-activations", "observe", "calibrate", "quantize")
    ]
    pipeline.append(
        PassInvocation("error-report", get_pass("error-report").bind({"samples": 4, "show": 3}))
    )
    rec = PassManager(pipeline, session=Session(calibration=calib_set(m, f))).run(m)[-1]
    assert rec.stats["samples"] == 4 and rec.stats["sqnr-dB:y"] > 15
    values = [float(n.split("dB")[0]) for n in rec.notes]
    assert len(values) == 3 and values == sorted(values)
    assert not rec.changed
