"""correct-bias: the mean output error of quantized weights is measured and moved into the
bias, which keeps quantize's int32 bias rule; float ops get their original bias back."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from qcc.frontend import lower_model
from qcc.pipeline import PassInvocation, PassManager, Session
from qcc.select import OpType
from tests.conftest import lift, make_model, ort_run
from tests.passes.test_quantize import calib_set, optimized_ops

F = TensorProto.FLOAT
RNG = np.random.default_rng(2)


def biased_rounding(tail: bool = False):
    """A 1x1 conv over 32 channels of positive inputs whose small weights all round up: per
    channel one large weight sets the scale (1/127), the others are 0.6 steps, so each
    rounds to 1 step and the output of every channel is off by ~0.4 steps x 31 x E[x]."""
    w = np.full((4, 32, 1, 1), 0.6 / 127, np.float32)
    w[:, 0] = 1.0
    w *= RNG.uniform(0.9, 1.1, (4, 1, 1, 1)).astype(np.float32)
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["c" if tail else "y"])]
        + ([helper.make_node("Add", ["c", "k"], ["y"])] if tail else []),
        {"x": (F, [1, 32, 6, 6])},
        {"y": (F, [1, 4, 6, 6])},
        {"w": w, **({"k": np.ones((1, 4, 1, 1), np.float32)} if tail else {})},
    )


def feeds(n=16):
    return [{"x": RNG.uniform(0.5, 1.5, (1, 32, 6, 6)).astype(np.float32)} for _ in range(n)]


def run(proto, f, correct=True, exclude=None):
    m = lift(proto)
    steps = ["observe", "calibrate", *(["correct-bias"] if correct else [])]
    pipeline = [PassInvocation(s) for s in steps]
    pipeline.append(PassInvocation("quantize", exclude=exclude))
    records = PassManager(
        pipeline, verify_each=True, session=Session(calibration=calib_set(m, f))
    ).run(m)
    return m, records


def mean_error(proto, m, f):
    back = lower_model(m)
    diffs = [ort_run(back, x)[0] - ort_run(proto, x)[0] for x in f]
    return np.abs(np.mean(np.stack(diffs), axis=(0, 1, 3, 4)))  # per output channel


def test_bias_correction_removes_the_mean_error_of_weight_rounding():
    proto, calib, test = biased_rounding(), feeds(), feeds(8)
    plain, _ = run(proto, calib, correct=False)
    fixed, records = run(proto, calib)
    before, after = mean_error(proto, plain, test), mean_error(proto, fixed, test)
    assert before.min() > 0.05  # the constructed bias is there
    assert after.max() < before.min() / 10
    rec = next(r for r in records if r.name == "correct-bias")
    assert rec.stats == {"corrected:Conv": 1}
    assert rec.notes[0].startswith("1 biases corrected over 16 samples; largest shift")
    # the conv had no bias: it got one, int32 with scale exactly f32(x_scale * w_scale[c])
    conv = next(n for n in fixed.graph if n.op_type == "Conv")
    xdq, wdq, bdq = (conv.input(i).producer for i in range(3))
    assert bdq.input(0).const.dtype == np.int32
    expect = (np.float32(xdq.input(1).const) * wdq.input(1).const).astype(np.float32)
    assert bdq.input(1).const.tobytes() == expect.tobytes()
    assert optimized_ops(fixed)["QLinearConv"] == 1


def test_an_op_kept_in_float_gets_its_original_bias_back():
    proto, calib = biased_rounding(tail=True), feeds()
    m, records = run(proto, calib, exclude=OpType(("Conv",)))
    conv = next(n for n in m.graph if n.op_type == "Conv")
    assert len(conv.inputs) == 2  # the added bias is gone again
    assert records[-1].stats["float-bias-restored"] == 1
    assert [v.name for v in conv.inputs] == ["x", "w"]


def test_does_not_fire_on_matmul():
    proto = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        {"x": (F, [4, 16])},
        {"y": (F, [4, 8])},
        {"w": RNG.standard_normal((16, 8)).astype(np.float32)},
    )
    _, records = run(proto, [{"x": RNG.standard_normal((4, 16)).astype(np.float32)}] * 2)
    rec = next(r for r in records if r.name == "correct-bias")
    assert not rec.changed and rec.stats == {}
