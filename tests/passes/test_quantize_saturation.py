"""quantize's saturation cut: a tensor read only by Sigmoid or x * Sigmoid(x) (SiLU) gets the
part of its range where their integer outputs still change. Parameters are checked on the
graph after the pass, numerics on onnxruntime against FP32, with the cut on and off."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from qcc.frontend import lower_model
from qcc.pipeline import PassInvocation, PassManager, Session, get_pass
from qcc.quant.params import sqnr_db
from tests.conftest import lift, make_model, ort_run
from tests.passes.test_quantize import calib_set, optimized_ops

F = TensorProto.FLOAT
RNG = np.random.default_rng(7)


def head(act: str, extra_use: bool = False):
    """x -> 1x1 Conv (c = x0 / 4 + 0.0925 x1 - 45: wide, mostly negative logits) -> Sigmoid
    or SiLU.

    The input holds integers in [0, 255] and the weights and bias are exact in int8/int32, so
    c is exact in integer arithmetic and the only error before the consumers is c's own
    quantizer: what the cut changes."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("Sigmoid", ["c"], ["s" if act == "silu" else "y"]),
    ]
    if act == "silu":
        nodes.append(helper.make_node("Mul", ["c", "s"], ["y"]))
    outputs = {"y": (F, [1, 1, 16, 16])}
    if extra_use:  # c is also read by something that does not saturate
        nodes.append(helper.make_node("Conv", ["c", "w2"], ["z"]))
        outputs["z"] = (F, [1, 1, 16, 16])
    step = np.float32(0.25 / 127)  # the weights' int8 scale: 0.25 and 47 steps are exact
    return make_model(
        nodes,
        {"x": (F, [1, 2, 16, 16])},
        outputs,
        {
            "w": np.array([0.25, np.float32(47 * step)], np.float32).reshape(1, 2, 1, 1),
            "b": np.array([-45.0], np.float32),
            "w2": np.full((1, 1, 1, 1), 0.5, np.float32),
        },
    )


def feeds(n: int):
    out = []
    for _ in range(n):
        x = RNG.integers(0, 256, (1, 2, 16, 16)).astype(np.float32)
        x[0, :, 0, :2] = [0.0, 255.0]  # the input's range is exactly [0, 255]: scale 1
        out.append({"x": x})
    return out


def compile_(proto, calib, **quantize_options):
    m = lift(proto)
    observe = get_pass("observe").bind({})
    pipeline = [
        PassInvocation("observe", observe),
        PassInvocation("calibrate"),
        PassInvocation("quantize", get_pass("quantize").bind(quantize_options)),
    ]
    records = PassManager(
        pipeline, verify_each=True, session=Session(calibration=calib_set(m, calib))
    ).run(m)
    return m, records[-1]


def q_range(model, name: str) -> tuple[float, float]:
    """The real range ``[(0 - zp) * s, (255 - zp) * s]`` of the uint8 QuantizeLinear of ``name``."""
    q = next(n for n in model.graph if n.op_type == "QuantizeLinear" and n.input(0).name == name)
    s, zp = float(q.input(1).const), int(q.input(2).const)
    return -zp * s, (255 - zp) * s


def fp32_logits(proto, fs) -> np.ndarray:
    import onnx

    p = onnx.ModelProto()
    p.CopyFrom(proto)
    p.graph.output.append(helper.make_tensor_value_info("c", F, None))
    return np.concatenate([ort_run(p, f)[-1].ravel() for f in fs])


def test_sigmoid_input_is_cut_where_the_sigmoid_saturates_and_the_output_improves():
    proto, calib, test = head("sigmoid"), feeds(16), feeds(8)
    c = fp32_logits(proto, calib)
    assert c.min() < -30  # the observed range is wide
    cut, rec = compile_(proto, calib)
    full, _ = compile_(proto, calib, saturation_cut=False)
    assert rec.stats["saturation-cut"] == 1
    lo, hi = q_range(cut, "c")
    # an 8-bit [0, 1] output is constant below logit(0.5 / 255) = -6.2 (plus one input step)
    assert -6.6 < lo < -6.1 and 5.5 < hi < 6.6
    assert q_range(full, "c")[0] < -30
    # onnxruntime runs the planned ops in integer either way
    for m in (cut, full):
        ops = optimized_ops(m)
        assert ops["QLinearConv"] == 1 and ops["QLinearSigmoid"] == 1 and "Conv" not in ops
    ref = [ort_run(proto, f)[0] for f in test]
    got_cut = [ort_run(lower_model(cut), f)[0] for f in test]
    got_full = [ort_run(lower_model(full), f)[0] for f in test]
    snr_cut = sqnr_db(np.concatenate(ref), np.concatenate(got_cut))
    snr_full = sqnr_db(np.concatenate(ref), np.concatenate(got_full))
    assert snr_cut > snr_full + 8, (snr_cut, snr_full)
    # nothing is lost in the clipped tail: where the logit is below the cut, the output is
    # the level FP32 rounds to there, 0
    logits = fp32_logits(proto, test)
    below = logits < lo - 0.1
    assert below.sum() > 100
    assert np.all(np.concatenate([g.ravel() for g in got_cut])[below] == 0.0)


def test_silu_input_is_cut_below_where_x_times_sigmoid_rounds_to_zero():
    proto, calib, test = head("silu"), feeds(16), feeds(8)
    cut, rec = compile_(proto, calib)
    full, _ = compile_(proto, calib, saturation_cut=False)
    assert rec.stats["saturation-cut"] == 1
    lo, hi = q_range(cut, "c")
    full_lo, full_hi = q_range(full, "c")
    assert full_lo < -30 and -7.5 < lo < -5
    assert abs(hi - full_hi) < 0.05 * full_hi  # x * Sigmoid(x) does not saturate above
    ops = optimized_ops(cut)
    assert ops["QLinearSigmoid"] == 1 and ops["QLinearMul"] == 1 and "Conv" not in ops
    ref = np.concatenate([ort_run(proto, f)[0] for f in test])
    snr_cut = sqnr_db(ref, np.concatenate([ort_run(lower_model(cut), f)[0] for f in test]))
    snr_full = sqnr_db(ref, np.concatenate([ort_run(lower_model(full), f)[0] for f in test]))
    assert snr_cut > snr_full + 2, (snr_cut, snr_full)


def test_no_cut_when_another_consumer_reads_the_tensor():
    proto, calib = head("sigmoid", extra_use=True), feeds(16)
    m, rec = compile_(proto, calib)
    assert "saturation-cut" not in rec.stats
    assert q_range(m, "c")[0] < -30


def test_accuracy_search_simulates_the_cut_only_while_every_consumer_is_integer():
    """Keeping the SiLU's Mul in float un-cuts its input (a float x * Sigmoid(x) would see
    the clipped tail): the search's simulation must price that, not keep the cut range."""
    from tests.passes.test_accuracy_target import run

    proto, f = head("silu"), feeds(8)
    _, rec = run(proto, f, target_sqnr=200, max_float=1, search_samples=8)
    simulated, measured = (
        rec.stats["target:sqnr-dB-simulated"],
        rec.stats["target:sqnr-dB-measured"],
    )
    assert abs(simulated - measured) < 0.05, (simulated, measured)
    # reverting the Mul alone loses the cut and so does not pay: nothing goes to float
    assert rec.stats["target:float-groups"] == 0
    assert rec.stats["saturation-cut"] == 1
