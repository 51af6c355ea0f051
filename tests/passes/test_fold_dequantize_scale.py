"""fold-dequantize-scale: HardSwish becomes QLinearAdd + QLinearMul in onnxruntime (no float
island), the folded scale is exact, the interpreter stays bit-exact with onnxruntime, and the
Muls it must not fold are left alone."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from qcc.frontend import lower_model
from qcc.pipeline import PassInvocation, PassManager, Session
from qcc.verify import verify_proto
from tests.conftest import lift, make_model, ort_run, run_pass
from tests.passes.test_quantize import calib_set, optimized_ops

F = TensorProto.FLOAT
RNG = np.random.default_rng(5)


def rand(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def hardswish_net():
    return make_model(
        [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("HardSwish", ["c1"], ["h"]),
            helper.make_node("Conv", ["h", "w2", "b2"], ["y"]),
        ],
        {"x": (F, [1, 8, 12, 12])},
        {"y": (F, [1, 8, 12, 12])},
        {
            "w1": rand(16, 8, 3, 3, scale=0.3),
            "b1": rand(16),
            "w2": rand(8, 16, 1, 1),
            "b2": rand(8),
        },
        opset=14,
    )


def quantized(proto, feeds, fold: bool, report: bool = False):
    m = lift(proto)
    steps = ["decompose-hardswish", "decompose-hardsigmoid", "fuse-activations"]
    pipeline = [PassInvocation(s) for s in steps]
    pipeline.append(PassInvocation("observe"))  # uint8 asymmetric activations, int8 weights
    pipeline += [PassInvocation("calibrate"), PassInvocation("quantize")]
    if fold:
        pipeline.append(PassInvocation("fold-dequantize-scale"))
    if report:  # runs on what is left: the folded Mul's quantizer is gone
        pipeline.append(PassInvocation("error-report"))
    session = Session(calibration=calib_set(m, feeds))
    records = PassManager(pipeline, verify_each=True, session=session).run(m)
    return m, records


def test_hardswish_runs_as_qlinearadd_and_qlinearmul_after_the_fold():
    proto = hardswish_net()
    feeds = [{"x": rand(1, 8, 12, 12, scale=1.5)} for _ in range(8)]
    unfolded, _ = quantized(proto, feeds, fold=False)
    assert optimized_ops(unfolded)["QLinearMul"] == 2  # x * 1/6 and x * gate
    m, records = quantized(proto, feeds, fold=True, report=True)
    assert records[-2].stats == {"folded": 1}
    report = records[-1]
    assert report.name == "error-report" and report.stats["sqnr-dB:y"] > 20
    listed = [line.split()[-1] for line in report.notes]  # the folded Mul's output is gone
    assert "hardswish/HardSigmoid/Mul_out0" not in listed and "h" in listed
    ops = optimized_ops(m)
    assert ops["QLinearConv"] == 2 and ops["QLinearAdd"] == 1 and ops["QLinearMul"] == 1
    for float_op in ("Mul", "Add", "HardSigmoid", "HardSwish", "Clip"):
        assert float_op not in ops
    # the Add reads the HardSwish input's integers through a DQ whose scale is s * f32(1/6)
    add = next(n for n in m.graph if n.op_type == "Add")
    dq_add = add.input(0).producer
    mul = next(n for n in m.graph if n.op_type == "Mul")
    dq_x = next(v.producer for v in mul.inputs if v.producer.input(0) is dq_add.input(0))
    want = np.float32(dq_x.input(1).const) * np.float32(1 / 6)
    assert dq_add.input(1).const.dtype == np.float32 and dq_add.input(1).const == want
    assert dq_add.input(2) is dq_x.input(2)
    # numerics: bit-exact interpreter, and no worse than the unfolded model against FP32
    rep = verify_proto(lower_model(m), feeds[:2], tensors="all")
    assert rep.ok and not rep.islands and not rep.integer_mismatches
    fp32 = ort_run(proto, feeds[0])[0]
    err = np.abs(ort_run(lower_model(m), feeds[0])[0] - fp32).max()
    err_unfolded = np.abs(ort_run(lower_model(unfolded), feeds[0])[0] - fp32).max()
    assert err <= err_unfolded * 1.05 and err < 0.05 * np.abs(fp32).max()


def qdq_mul(c: float, consumer: str):
    """x -> Q -> DQ -> Mul(c) -> Q -> DQ -> consumer -> (Q -> DQ) -> y."""
    s, z = np.array(0.05, np.float32), np.array(128, np.uint8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("Mul", ["xd", "c"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "s2", "z"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "s2", "z"], ["md"]),
    ]
    if consumer == "MaxPool":
        nodes.append(helper.make_node("MaxPool", ["md"], ["o"], kernel_shape=[2, 2]))
    else:
        nodes.append(helper.make_node("Add", ["md", "x"], ["o"]))
    nodes += [
        helper.make_node("QuantizeLinear", ["o", "s2", "z"], ["oq"]),
        helper.make_node("DequantizeLinear", ["oq", "s2", "z"], ["y"]),
    ]
    inits = {"s": s, "z": z, "s2": np.array(0.05 * abs(c), np.float32), "c": np.float32(c)}
    out = [1, 4, 5, 5] if consumer == "MaxPool" else [1, 4, 6, 6]
    return make_model(nodes, {"x": (F, [1, 4, 6, 6])}, {"y": (F, out)}, inits)


def test_a_fold_before_an_integer_add_keeps_the_values():
    proto = qdq_mul(0.25, "Add")
    m = lift(proto)
    assert run_pass(m, "fold-dequantize-scale").stats == {"folded": 1}
    assert [n.op_type for n in m.graph].count("Mul") == 0
    x = {"x": rand(1, 4, 6, 6, scale=2.0)}
    # the Mul's own quantizer was exact here (s2 = s * c): the fold changes nothing
    np.testing.assert_array_equal(ort_run(lower_model(m), x)[0], ort_run(proto, x)[0])


def test_muls_that_must_stay():
    # MaxPool's Q/DQ is dropped by onnxruntime only with equal parameters on both sides
    m = lift(qdq_mul(0.25, "MaxPool"))
    assert not run_pass(m, "fold-dequantize-scale").changed
    # a negative factor cannot be a scale
    m = lift(qdq_mul(-0.25, "Add"))
    assert not run_pass(m, "fold-dequantize-scale").changed
