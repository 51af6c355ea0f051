"""The quantize pass under the tflite target: TFLite's quantization spec, checked on the QDQ
graph it writes (int8 everywhere, fixed LOGISTIC/SOFTMAX/TANH outputs, one scale across
CONCATENATION and the pools, int8 constant operands, Relu fused), and its numerics."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from qcc.errors import PassError
from qcc.frontend import lower_model
from qcc.pipeline import PassInvocation, PassManager, Session, get_pass
from qcc.quant.params import sqnr_db
from qcc.quant.scheme import QDType, QuantScheme
from tests.conftest import lift, make_model, ort_run
from tests.passes.test_quantize import calib_set, rand

F = TensorProto.FLOAT


def quantize_tflite(proto, feeds, **observe):
    m = lift(proto)
    pipeline = [PassInvocation("fold-constants"), PassInvocation("fuse-activations")]
    pipeline.append(PassInvocation("observe", get_pass("observe").bind(observe)))
    pipeline += [PassInvocation("calibrate"), PassInvocation("quantize")]
    session = Session(calibration=calib_set(m, feeds), backend="tflite")
    PassManager(pipeline, verify_each=True, session=session).run(m)
    return m


def net():
    return make_model(
        [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["x", "w2"], ["c2"], pads=[1, 1, 1, 1]),
            helper.make_node("Concat", ["r1", "c2"], ["cat"], axis=1),
            helper.make_node("AveragePool", ["cat"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Mul", ["p", "scale"], ["m"]),
            helper.make_node("Tanh", ["m"], ["t"]),
            helper.make_node("Sigmoid", ["m"], ["s"]),
            helper.make_node("Add", ["t", "s"], ["a"]),
            helper.make_node("GlobalAveragePool", ["a"], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["flat"]),
            helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1),
            helper.make_node("Softmax", ["logits"], ["y"]),
        ],
        {"x": (F, [1, 3, 8, 8])},
        {"y": (F, [1, 5])},
        {
            "w1": rand(4, 3, 3, 3, scale=0.3),
            "b1": rand(4, scale=0.1),
            "w2": rand(4, 3, 3, 3, scale=0.3),
            "scale": rand(1, 8, 1, 1),
            "wf": rand(5, 8, scale=0.5),
            "bf": rand(5, scale=0.1),
        },
    )


def q_params(m) -> dict[str, tuple[float, int, np.dtype]]:
    """Quantized tensor name -> (scale, zero point, type) read off its QuantizeLinear."""
    out = {}
    for n in m.graph:
        if n.op_type == "QuantizeLinear":
            s, z = n.input(1).const, n.input(2).const
            out[n.input(0).name] = (float(s), int(z), z.dtype)
    for v in m.graph.outputs:  # a graph output is the DQ of its Q
        q = v.producer.input(0).producer
        out[v.name] = out[q.input(0).name]
    return out


def test_tflite_target_follows_the_tflite_quantization_spec():
    feeds = [{"x": rand(1, 3, 8, 8)} for _ in range(8)]
    fp32 = net()
    m = quantize_tflite(fp32, feeds)
    qp = q_params(m)
    assert {dt for _, _, dt in qp.values()} == {np.dtype(np.int8)}  # int8 activations only
    # fixed output parameters
    assert qp["y"][:2] == (1 / 256, -128)
    assert qp["s"][:2] == (1 / 256, -128)
    assert qp["t"][:2] == (1 / 128, 0)
    # CONCATENATION and AVERAGE_POOL_2D: every input and the output share one scale
    assert qp["r1"] == qp["c2"] == qp["cat"] == qp["p"]
    # ... and the Relu of one input does not clip the others at zero
    assert qp["cat"][1] > -128
    # Relu is fused: the tensor before it is not quantized, the one after starts at zero
    assert "c1" not in qp
    # GlobalAveragePool (MEAN) and Add requantize: their own parameters
    assert qp["gap"] != qp["a"]
    # constant operands are int8 (onnxruntime's table would make them uint8)
    mul = next(n for n in m.graph if n.op_type == "Mul")
    dq = mul.input(1).producer
    assert dq.op_type == "DequantizeLinear" and dq.input(0).const.dtype == np.int8
    # weights int8 symmetric per channel in [-127, 127], bias int32 with scale sx*sw[c]
    conv = next(n for n in m.graph if n.op_type == "Conv")
    w = conv.input(1).producer.input(0).const
    assert w.dtype == np.int8 and w.min() >= -127
    b_dq = conv.input(2).producer
    sw = conv.input(1).producer.input(1).const
    np.testing.assert_array_equal(b_dq.input(1).const, np.float32(qp["x"][0]) * sw)
    # and the model still computes the function (onnxruntime on the QDQ graph)
    proto = lower_model(m)
    want = ort_run(fp32, feeds[0])[0]
    got = ort_run(proto, feeds[0])[0]
    assert sqnr_db(want, got) > 35  # measured 44.8 dB


def test_tflite_target_refuses_uint8_activations():
    a8 = QuantScheme("a8", QDType.UINT8, symmetric=False)
    with pytest.raises(PassError) as e:
        quantize_tflite(net(), [{"x": rand(1, 3, 8, 8)}], activations=a8)
    assert "the tflite target has integer kernels for int8 activations only" in str(e.value)
    assert "scheme a8 = int8 asymmetric per_tensor" in str(e.value)


def test_a_concat_of_sigmoid_scores_and_boxes_is_not_clipped_to_the_sigmoid_range():
    # a detector head: boxes (a conv, range about +-4) concatenated with sigmoid scores. The
    # concat shares one scale with its inputs; the sigmoid's fixed (1/256, -128) would clip
    # the boxes to [0, 1), so the group takes its range and the backend requantizes
    rng = np.random.default_rng(3)
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wb"], ["box"]),
            helper.make_node("Conv", ["x", "ws"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["score"]),
            helper.make_node("Concat", ["box", "score"], ["y"], axis=1),
        ],
        {"x": (F, [1, 3, 4, 4])},
        {"y": (F, [1, 5, 4, 4])},
        {
            "wb": rng.normal(0, 0.7, (4, 3, 1, 1)).astype(np.float32),
            "ws": rng.normal(0, 1, (1, 3, 1, 1)).astype(np.float32),
        },
    )
    feeds = [{"x": rng.normal(0, 1, (1, 3, 4, 4)).astype(np.float32)} for _ in range(8)]
    m = quantize_tflite(proto, feeds)
    qp = q_params(m)
    assert qp["box"] == qp["score"] == qp["y"]
    scale, zp, _ = qp["y"]
    assert scale * (-128 - zp) < -1.0  # the negative box coordinates are representable
    want = ort_run(proto, feeds[0])[0]
    got = ort_run(lower_model(m), feeds[0])[0]
    assert np.abs(got - want).max() <= 2 * scale  # a step or two everywhere, boxes included


def test_a_tiny_constant_addend_keeps_the_add_in_xnnpack():
    # PP-LCNet ends blocks with x + b for a learned scalar b ~ 1e-5: quantized at |b| / 127
    # its scale is 1e-7 of the output's, and XNNPACK refuses an ADD whose input/output scale
    # ratio is below 2^-10 (the op then runs in the builtin kernel and splits the partition)
    from qcc.backend.tflite import convert
    from qcc.interp.tflite.model import parse
    from qcc.interp.tflite.verify import litert_delegated, litert_interpreter

    rng = np.random.default_rng(5)
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("Add", ["c", "b"], ["y"]),
        ],
        {"x": (F, [1, 3, 4, 4])},
        {"y": (F, [1, 4, 4, 4])},
        {"w": rng.normal(0, 1, (4, 3, 1, 1)).astype(np.float32), "b": np.float32([1.7e-5])},
    )
    feeds = [{"x": rng.normal(0, 1, (1, 3, 4, 4)).astype(np.float32)} for _ in range(4)]
    m = quantize_tflite(proto, feeds)
    add = next(n for n in m.graph if n.op_type == "Add")
    b_scale = float(add.input(1).producer.input(1).const)
    y_scale = q_params(m)["y"][0]
    assert b_scale == np.float32(y_scale * 2.0**-9)
    data = convert(lower_model(m))
    tfl = parse(data)
    (op,) = [o for o in tfl.operators if o.op == "ADD"]
    assert op.index in litert_delegated(litert_interpreter(data, "tflite-xnnpack"))
