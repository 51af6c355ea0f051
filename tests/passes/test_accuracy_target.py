"""quantize's accuracy target (``target-sqnr``): the op groups that hurt most go back to
float until the output SQNR reaches the target; option errors are caught before any pass."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from qcc.frontend import lower_model
from qcc.pipeline import PassInvocation, PassManager, Session, get_pass
from qcc.quant.params import sqnr_db
from tests.conftest import lift, make_model, ort_run
from tests.passes.test_quantize import calib_set, optimized_ops

F = TensorProto.FLOAT
RNG = np.random.default_rng(1)


def outlier_chain(outlier: float = 2000.0):
    """conv0 -> relu -> conv1 -> conv2 -> conv3. conv1 writes one channel 1000x larger than
    the others and conv2 nearly ignores it: one uint8 scale for conv1's output erases the
    channels conv2 needs. Only keeping conv1 and conv2 both in float removes that quantizer."""
    w1 = (RNG.standard_normal((4, 4, 1, 1)) * 0.5).astype(np.float32)
    w1[0] *= outlier
    w2 = (RNG.standard_normal((4, 4, 1, 1)) * 0.5).astype(np.float32)
    w2[:, 0] = 1e-5
    return make_model(
        [
            helper.make_node("Conv", ["x", "w0", "b0"], ["c0"]),
            helper.make_node("Relu", ["c0"], ["r0"]),
            helper.make_node("Conv", ["r0", "w1"], ["c1"]),
            helper.make_node("Conv", ["c1", "w2"], ["c2"]),
            helper.make_node("Conv", ["c2", "w3"], ["y"]),
        ],
        {"x": (F, [1, 4, 8, 8])},
        {"y": (F, [1, 4, 8, 8])},
        {
            "w0": (RNG.standard_normal((4, 4, 1, 1)) * 0.5).astype(np.float32),
            "b0": np.full(4, 0.5, np.float32),
            "w1": w1,
            "w2": w2,
            "w3": (RNG.standard_normal((4, 4, 1, 1)) * 0.5).astype(np.float32),
        },
    )


def feeds(n=8):
    return [{"x": RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(n)]


def run(proto, f, **options):
    m = lift(proto)
    pipeline = [PassInvocation(s) for s in ("fuse-activations", "observe", "calibrate")]
    pipeline.append(PassInvocation("quantize", get_pass("quantize").bind(options)))
    rec = PassManager(pipeline, verify_each=True, session=Session(calibration=calib_set(m, f))).run(
        m
    )[-1]
    return m, rec


def output_sqnr(proto, m, f):
    back = lower_model(m)
    ref = np.concatenate([ort_run(proto, x)[0].ravel() for x in f])
    got = np.concatenate([ort_run(back, x)[0].ravel() for x in f])
    return sqnr_db(ref, got)


def test_catastrophic_quantizer_is_removed_and_target_reached():
    proto, f = outlier_chain(), feeds()
    plain, _ = run(proto, f)
    assert output_sqnr(proto, plain, f) < 10  # the collapse the target must fix
    m, rec = run(proto, f, target_sqnr=30)
    assert output_sqnr(proto, m, f) >= 30
    assert rec.stats["target:float-groups"] == 2
    assert rec.stats["target:sqnr-dB-simulated"] >= 30
    # the simulation predicts the real model: the same samples measured on the QDQ model
    assert abs(rec.stats["target:sqnr-dB-measured"] - rec.stats["target:sqnr-dB-simulated"]) < 1
    steps = [n for n in rec.notes if n.startswith("to float:")]
    assert len(steps) == 1 and "quantizer of 'c1'" in steps[0]
    assert "'conv1'" not in steps[0]  # nodes are described by op when unnamed
    assert any(n.startswith("target reached:") for n in rec.notes)
    # conv1 and conv2 run in float with no quantizer between them; conv0 and conv3 in integer
    ops = optimized_ops(m)
    assert ops["QLinearConv"] == 2 and ops.get("Conv", 0) + ops.get("FusedConv", 0) == 2
    c1 = next(n for n in m.graph if n.op_type == "Conv" and n.outputs[0].name == "c1")
    assert [u.node.op_type for u in c1.outputs[0].uses] == ["Conv"]
    assert "Conv x2 (kept in float for the accuracy target)" in rec.notes[-2]


def test_target_already_met_keeps_everything_quantized():
    proto, f = outlier_chain(outlier=1.0), feeds()
    m, rec = run(proto, f, target_sqnr=20)
    assert rec.stats["target:float-groups"] == 0
    assert rec.notes[0].endswith("nothing kept in float")
    assert optimized_ops(m)["QLinearConv"] == 4


def test_max_float_bounds_the_search():
    proto, f = outlier_chain(), feeds()
    _, rec = run(proto, f, target_sqnr=30, max_float=1)  # the fix needs two groups
    assert rec.stats["target:float-groups"] <= 1
    assert any(n.startswith("target not reached:") and "max-float = 1" in n for n in rec.notes)
    m0, _ = run(proto, f, target_sqnr=30, max_float=0)
    assert optimized_ops(m0)["QLinearConv"] == 4


def test_search_is_deterministic():
    proto, f = outlier_chain(), feeds()
    a, ra = run(proto, f, target_sqnr=30)
    b, rb = run(proto, f, target_sqnr=30)
    assert lower_model(a).SerializeToString() == lower_model(b).SerializeToString()
    assert ra.notes == rb.notes


@pytest.mark.parametrize(
    "option,value,text",
    [
        ("target-sqnr", "-1", "must be >= 0 (dB; 0 turns the search off), got '-1'"),
        ("max-float", "-2", "must be >= 0, got '-2'"),
        ("search-samples", "0", "must be >= 1, got '0'"),
    ],
)
def test_bad_options_exit_2_before_reading_the_model(cli, tmp_path, option, value, text):
    code, _, stderr = cli(
        "compile",
        tmp_path / "nope.onnx",
        "--passes",
        f"quantize{{{option}={value}}}",
        "-o",
        tmp_path / "o.onnx",
    )
    assert code == 2
    assert stderr.splitlines()[0] == f"error: pass 'quantize': option '{option}' {text}"


def test_bad_option_in_a_recipe_points_at_the_value(cli, tmp_path):
    recipe = tmp_path / "r.q"
    recipe.write_text("pipeline {\n  quantize target-sqnr = -3\n}\n")
    code, _, stderr = cli("check", recipe)
    assert code == 1
    assert stderr.splitlines()[0] == (
        f"{recipe}:2:26: error[E302]: pass 'quantize': option 'target-sqnr' must be >= 0 "
        "(dB; 0 turns the search off), got -3"
    )


def test_ranking_is_worst_first_and_measures_few_units_when_noise_is_concentrated():
    from qcc.passes._float_search import _worst_first

    noise = np.full(100, 1e-6)
    noise[[7, 42, 43, 90]] = [1e-2, 3e-2, 2e-3, 5e-3]
    calls = []

    def alone(units):
        calls.append(tuple(units))
        return float(-10 * np.log10(noise[units].sum()))

    got = []
    for _s, u in _worst_first(len(noise), alone):
        got.append(u)
        if len(got) == 4:
            break
    assert got == [42, 7, 90, 43]
    assert len(calls) < 60  # 10 blocks, then only the blocks holding the loud units


def test_ranking_yields_every_unit_once():
    from qcc.passes._float_search import _worst_first

    noise = np.random.default_rng(3).uniform(1e-4, 1e-2, 17)
    ranked = list(_worst_first(17, lambda us: float(-10 * np.log10(noise[us].sum()))))
    assert [u for _, u in ranked] == list(np.argsort(-noise))
