"""prune-channels: coupled channels go together, all-zero channels leave the function unchanged,
blocked groups stay, least-squares recovery fits removed channels back."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from qcc.errors import PassError
from qcc.ir import constant_value
from qcc.pipeline import PassInvocation, PassManager, Session, get_pass
from qcc.quant.data import CalibrationSet
from qcc.select import NamePattern
from tests.conftest import assert_same_outputs, lift, make_model, run_ir, run_pass

F = TensorProto.FLOAT
EXACT = {"rtol": 1e-5, "atol": 1e-5}


def rng(seed=0):
    return np.random.default_rng(seed)


def r(g, *shape):
    return g.standard_normal(shape).astype(np.float32)


def weight(model, node_name, index=1):
    node = next(n for n in model.graph if n.name == node_name)
    return constant_value(node.input(index))


def node(model, name):
    return next(n for n in model.graph if n.name == name)


def test_residual_add_removes_the_zero_channels_of_both_branches():
    g = rng(1)
    wa, ba, wb, bb = r(g, 8, 3, 3, 3), r(g, 8), r(g, 8, 8, 1, 1), r(g, 8)
    for c in (1, 5):  # channel c is zero in both branches, so zero after the Add
        wa[c], ba[c], wb[c], bb[c] = 0, 0, 0, 0
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa", "ba"], ["a0"], name="A", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["a0"], ["a"]),
            helper.make_node("Conv", ["a", "wb", "bb"], ["b"], name="B"),
            helper.make_node("Add", ["a", "b"], ["s"]),
            helper.make_node("Conv", ["s", "wc"], ["y"], name="C"),
        ],
        {"x": (F, [1, 3, 6, 6])},
        {"y": (F, [1, 4, 6, 6])},
        {"wa": wa, "ba": ba, "wb": wb, "bb": bb, "wc": r(g, 4, 8, 1, 1)},
    )
    m = lift(proto)
    rec = run_pass(m, "prune-channels", ratio=0.25)
    assert weight(m, "A").shape == (6, 3, 3, 3)
    assert weight(m, "B").shape == (6, 6, 1, 1)
    assert weight(m, "C").shape == (4, 6, 1, 1)
    np.testing.assert_array_equal(weight(m, "C"), np.delete(proto_w(proto, "wc"), [1, 5], axis=1))
    assert rec.stats["channels-before"] == 8 and rec.stats["channels-after"] == 6
    assert "A (+1 coupled): 8 -> 6 channels (2/8 groups)" in rec.notes
    assert_same_outputs(proto, m, **EXACT)


def proto_w(proto, name):
    from onnx import numpy_helper

    return next(numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == name)


def test_concat_offsets_pick_the_right_input_columns():
    g = rng(2)
    wa, wb = r(g, 4, 2, 1, 1), r(g, 8, 2, 1, 1)
    wa[2] = 0
    wb[[0, 3]] = 0
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
            helper.make_node("Conv", ["x", "wb"], ["b"], name="B"),
            helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
            helper.make_node("Conv", ["c", "wc"], ["y"], name="C"),
        ],
        {"x": (F, [1, 2, 4, 4])},
        {"y": (F, [1, 3, 4, 4])},
        {"wa": wa, "wb": wb, "wc": r(g, 3, 12, 1, 1)},
    )
    m = lift(proto)
    run_pass(m, "prune-channels", ratio=0.25)
    assert weight(m, "A").shape[0] == 3 and weight(m, "B").shape[0] == 6
    np.testing.assert_array_equal(weight(m, "C"), np.delete(proto_w(proto, "wc"), [2, 4, 7], 1))
    assert_same_outputs(proto, m, **EXACT)


def test_depthwise_conv_follows_its_input_channels():
    g = rng(3)
    wa, wd, bd = r(g, 8, 3, 1, 1), r(g, 8, 1, 3, 3), r(g, 8)
    for c in (1, 6):
        wa[c], wd[c], bd[c] = 0, 0, 0
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
            helper.make_node("Conv", ["a", "wd", "bd"], ["d"], name="D", group=8, pads=[1] * 4),
            helper.make_node("Relu", ["d"], ["r"]),
            helper.make_node("Conv", ["r", "wc"], ["y"], name="C"),
        ],
        {"x": (F, [1, 3, 5, 5])},
        {"y": (F, [1, 2, 5, 5])},
        {"wa": wa, "wd": wd, "bd": bd, "wc": r(g, 2, 8, 1, 1)},
    )
    m = lift(proto)
    run_pass(m, "prune-channels", ratio=0.25)
    assert weight(m, "D").shape == (6, 1, 3, 3) and node(m, "D").attr("group") == 6
    assert weight(m, "C").shape == (2, 6, 1, 1)
    assert_same_outputs(proto, m, **EXACT)


def test_grouped_conv_removes_the_same_index_from_every_group():
    g = rng(4)
    wa, wg, bg = r(g, 8, 3, 1, 1), r(g, 8, 4, 3, 3), r(g, 8)
    wa[[1, 5]] = 0  # input index 1 of both groups of G
    wg[[2, 6]], bg[[2, 6]] = 0, 0  # output index 2 of both groups
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
            helper.make_node("Conv", ["a", "wg", "bg"], ["gg"], name="G", group=2, pads=[1] * 4),
            helper.make_node("Conv", ["gg", "wc"], ["y"], name="C"),
        ],
        {"x": (F, [1, 3, 5, 5])},
        {"y": (F, [1, 2, 5, 5])},
        {"wa": wa, "wg": wg, "bg": bg, "wc": r(g, 2, 8, 1, 1)},
    )
    m = lift(proto)
    rec = run_pass(m, "prune-channels", ratio=0.25)
    assert weight(m, "A").shape[0] == 6
    assert weight(m, "G").shape == (6, 3, 3, 3) and node(m, "G").attr("group") == 2
    np.testing.assert_array_equal(
        weight(m, "G"), np.delete(np.delete(wg, [2, 6], axis=0), [1], axis=1)
    )
    assert weight(m, "C").shape == (2, 6, 1, 1)
    assert rec.stats["groups-removed"] == 2
    assert_same_outputs(proto, m, **EXACT)


@pytest.mark.parametrize("how", ["flatten", "reshape"])
def test_flatten_into_gemm_removes_each_channels_block_of_rows(how):
    g = rng(5)
    wa, ba = r(g, 4, 2, 1, 1), r(g, 4)
    wa[3], ba[3] = 0, 0
    flat = (
        helper.make_node("Flatten", ["a"], ["f"], axis=1)
        if how == "flatten"
        else helper.make_node("Reshape", ["a", "shape"], ["f"])
    )
    inits = {"wa": wa, "ba": ba, "w": r(g, 36, 5), "bias": r(g, 5)}
    if how == "reshape":
        inits["shape"] = np.array([-1, 36], np.int64)
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa", "ba"], ["a0"], name="A"),
            helper.make_node("Relu", ["a0"], ["a"]),
            flat,
            helper.make_node("Gemm", ["f", "w", "bias"], ["y"], name="G"),
        ],
        {"x": (F, [2, 2, 3, 3])},
        {"y": (F, [2, 5])},
        inits,
    )
    m = lift(proto)
    run_pass(m, "prune-channels", ratio=0.25)
    np.testing.assert_array_equal(weight(m, "G"), inits["w"][:27])
    if how == "reshape":
        assert next(n for n in m.graph if n.op_type == "Reshape").input(1).const.tolist() == [
            -1,
            27,
        ]
    assert_same_outputs(proto, m, **EXACT)


def _blocked_and_free():
    """A's channels meet graph input x in an Add (blocked); E's channels are free."""
    g = rng(6)
    wa, we = r(g, 4, 4, 1, 1), r(g, 4, 4, 1, 1)
    wa[0] = 0  # the least important channel, but coupled to the graph input
    we[2] = 0
    return make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
            helper.make_node("Add", ["a", "x"], ["s"]),
            helper.make_node("Conv", ["s", "we"], ["e"], name="E"),
            helper.make_node("Relu", ["e"], ["re"]),
            helper.make_node("Conv", ["re", "wc"], ["y"], name="C"),
        ],
        {"x": (F, [1, 4, 3, 3])},
        {"y": (F, [1, 2, 3, 3])},
        {"wa": wa, "we": we, "wc": r(g, 2, 4, 1, 1)},
    )


def test_a_group_coupled_to_the_graph_input_is_not_pruned():
    proto = _blocked_and_free()
    m = lift(proto)
    rec = run_pass(m, "prune-channels", ratio=0.25)
    assert weight(m, "A").shape == (4, 4, 1, 1)  # blocked: coupled to x through the Add
    assert weight(m, "E").shape == (3, 4, 1, 1)
    assert rec.stats["layers"] == 1
    assert_same_outputs(proto, m, **EXACT)


def _run(model, name, *, session=None, exclude=None, **options):
    inv = PassInvocation(name, get_pass(name).bind(options), exclude=exclude)
    (record,) = PassManager([inv], verify_each=True, session=session).run(model)
    return record


def test_excluding_one_branch_protects_the_whole_coupled_group():
    g = rng(7)
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
            helper.make_node("Conv", ["x", "wb"], ["b"], name="B"),
            helper.make_node("Add", ["a", "b"], ["s"]),
            helper.make_node("Conv", ["s", "we"], ["e"], name="E"),
            helper.make_node("Conv", ["e", "wc"], ["y"], name="C"),
        ],
        {"x": (F, [1, 3, 3, 3])},
        {"y": (F, [1, 2, 3, 3])},
        {"wa": r(g, 8, 3, 1, 1), "wb": r(g, 8, 3, 1, 1), "we": r(g, 8, 8, 1, 1)}
        | {"wc": r(g, 2, 8, 1, 1)},
    )
    m = lift(proto)
    rec = _run(m, "prune-channels", exclude=NamePattern("B"), ratio=0.5)
    assert weight(m, "A").shape[0] == 8 and weight(m, "B").shape[0] == 8
    assert weight(m, "E").shape == (4, 8, 1, 1)  # E's own channels are still free
    assert rec.stats["layers"] == 1
    with pytest.raises(PassError, match="no channel group can be pruned"):
        _run(lift(proto), "prune-channels", exclude=NamePattern("E"), ratio=0.5)


def _pruned_half(proto, samples, recovery, damping):
    """Half the channels of ``proto`` pruned, with the given recovery; (model, record)."""
    m = lift(proto)
    session = Session(calibration=_calib(m, samples))
    rec = _run(m, "prune-channels", session=session, ratio=0.5, recovery=recovery, damping=damping)
    return m, rec


def _calib(model, arrays):
    inputs = [v for v in model.graph.inputs]
    return CalibrationSet("test", inputs, len(arrays), lambda i: {"x": arrays[i]})


def test_least_squares_recovery_fits_removed_channels_back():
    # A maps 3 inputs to 6 channels: any 3 of them (and a bias) predict the others exactly
    g = rng(8)
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="A"),
            helper.make_node("Conv", ["a", "wc", "bc"], ["y"], name="C"),
        ],
        {"x": (F, [1, 3, 4, 4])},
        {"y": (F, [1, 2, 4, 4])},
        {"wa": r(g, 6, 3, 1, 1), "ba": r(g, 6), "wc": r(g, 2, 6, 1, 1), "bc": r(g, 2)},
    )
    samples = [r(g, 1, 3, 4, 4) for _ in range(8)]
    feeds = {"x": r(g, 1, 3, 4, 4)}
    ref = run_ir(lift(proto), feeds)[0]

    plain, _ = _pruned_half(proto, samples, "none", 1e-7)
    fitted, rec = _pruned_half(proto, samples, "least-squares", 1e-7)
    assert weight(fitted, "A").shape[0] == 3 and weight(fitted, "C").shape[1] == 3
    err_plain = np.abs(run_ir(plain, feeds)[0] - ref).max()
    err_fit = np.abs(run_ir(fitted, feeds)[0] - ref).max()
    assert err_plain > 0.1 and err_fit < 1e-3 * np.abs(ref).max()
    assert rec.stats["rel-error-before-fit"] > 0.01 and rec.stats["rel-error-after-fit"] < 1e-5
    assert any(n.startswith("refit C: 3 inputs removed") for n in rec.notes)


def test_output_error_criterion_removes_channels_that_carry_nothing():
    g = rng(9)
    wa = r(g, 6, 3, 1, 1)
    wc = r(g, 2, 6, 1, 1)
    wc[:, [0, 4]] *= 1e-4  # the next layer barely reads channels 0 and 4
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
            helper.make_node("Conv", ["a", "wc"], ["y"], name="C"),
        ],
        {"x": (F, [1, 3, 4, 4])},
        {"y": (F, [1, 2, 4, 4])},
        {"wa": wa, "wc": wc},
    )
    m = lift(proto)
    session = Session(calibration=_calib(m, [r(g, 1, 3, 4, 4) for _ in range(4)]))
    _run(m, "prune-channels", session=session, ratio=0.34, criterion="output-error")
    np.testing.assert_array_equal(weight(m, "C"), np.delete(wc, [0, 4], axis=1))


@pytest.mark.parametrize(
    "options,message",
    [
        ({"ratio": 1.0}, "ratio must be in"),
        ({"ratio": -0.1}, "ratio must be in"),
        ({"recovery": "least-squares"}, "need calibration data"),
    ],
)
def test_bad_options_are_errors(options, message):
    with pytest.raises(PassError, match=message):
        run_pass(lift(_blocked_and_free()), "prune-channels", **options)


def test_cli_bad_ratio_and_missing_data_exit_2(cli, tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(_blocked_and_free().SerializeToString())
    code, _, err = cli(
        "compile", src, "--passes", "prune-channels{ratio=1.5}", "-o", tmp_path / "o.onnx"
    )
    assert code == 2 and "ratio must be in [0, 1)" in err
    code, _, err = cli(
        "compile",
        src,
        "--passes",
        "prune-channels{recovery=least-squares}",
        "-o",
        tmp_path / "o.onnx",
    )
    assert code == 2 and "no calibration data is given: pass --calib PATH" in err
    assert not (tmp_path / "o.onnx").exists()


def test_split_sizes_follow_the_kept_channels():
    g = rng(10)
    wa = r(g, 8, 3, 1, 1)
    wa[[1, 6]] = 0
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
            helper.make_node("Split", ["a", "sizes"], ["p", "q"], axis=1),
            helper.make_node("Conv", ["p", "wp"], ["pp"], name="P"),
            helper.make_node("Conv", ["q", "wq"], ["qq"], name="Q"),
            helper.make_node("Add", ["pp", "qq"], ["y"]),
        ],
        {"x": (F, [1, 3, 3, 3])},
        {"y": (F, [1, 2, 3, 3])},
        {"wa": wa, "sizes": np.array([4, 4], np.int64), "wp": r(g, 2, 4, 1, 1)}
        | {"wq": r(g, 2, 4, 1, 1)},
    )
    m = lift(proto)
    run_pass(m, "prune-channels", ratio=0.25)
    split = next(n for n in m.graph if n.op_type == "Split")
    assert split.input(1).const.tolist() == [3, 3]
    assert weight(m, "P").shape == (2, 3, 1, 1) and weight(m, "Q").shape == (2, 3, 1, 1)
    assert_same_outputs(proto, m, **EXACT)


def test_prune25_recipe_shrinks_the_example_model(cli, tmp_path):
    from pathlib import Path

    import onnx

    root = Path(__file__).resolve().parents[2] / "examples" / "digits"
    out = tmp_path / "p.onnx"
    code, stdout, err = cli(
        "compile", root / "model.onnx", "-r", "prune25", "--calib", root / "calib.npy", "-o", out
    )
    assert code == 0, err
    onnx.checker.check_model(str(out))
    assert "prune-channels (qcc:prune25.q" in stdout and "rel-error-after-fit" in stdout
    assert out.stat().st_size < 0.8 * (root / "model.onnx").stat().st_size
    again = tmp_path / "q.onnx"
    cli("compile", root / "model.onnx", "-r", "prune25", "--calib", root / "calib.npy", "-o", again)
    assert out.read_bytes() == again.read_bytes()


def test_batchnorm_per_channel_constants_and_resize_are_sliced():
    g = rng(11)
    wa = r(g, 4, 3, 1, 1)
    wa[2] = 0
    mean, beta = r(g, 4), r(g, 4)
    mean[2], beta[2] = 0, 0  # BN(0) = 0 on channel 2
    var = np.abs(r(g, 4)) + 0.5
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
            helper.make_node("BatchNormalization", ["a", "gamma", "beta", "mean", "var"], ["b"]),
            helper.make_node("Mul", ["b", "k"], ["m"]),
            helper.make_node("Resize", ["m", "", "scales"], ["u"], mode="nearest"),
            helper.make_node("Transpose", ["u"], ["t"], perm=[0, 2, 3, 1]),
            helper.make_node("MatMul", ["t", "wm"], ["y"], name="M"),
        ],
        {"x": (F, [1, 3, 2, 2])},
        {"y": (F, [1, 4, 4, 5])},
        {"wa": wa, "gamma": r(g, 4), "beta": beta, "mean": mean, "var": var}
        | {"k": r(g, 1, 4, 1, 1), "scales": np.array([1, 1, 2, 2], np.float32)}
        | {"wm": r(g, 4, 5)},
    )
    m = lift(proto)
    run_pass(m, "prune-channels", ratio=0.25)
    bn = next(n for n in m.graph if n.op_type == "BatchNormalization")
    assert [constant_value(bn.input(i)).shape for i in range(1, 5)] == [(3,)] * 4
    mul = next(n for n in m.graph if n.op_type == "Mul")
    assert constant_value(mul.input(1)).shape == (1, 3, 1, 1)
    np.testing.assert_array_equal(weight(m, "M"), np.delete(proto_w(proto, "wm"), [2], axis=0))
    assert_same_outputs(proto, m, **EXACT)


def test_multiple_keeps_the_nearest_multiple_of_what_the_ratio_keeps():
    from qcc.passes.prune_channels import _count

    kept = {n: n - _count(n, 0.25, 8) for n in (4, 8, 12, 16, 24, 72, 96, 120)}
    # 75% of 24 is 18 -> 16; of 72 is 54 -> 56; of 16 is 12 -> 16 (halves round up);
    # a layer of at most 8 channels is left whole
    assert kept == {4: 4, 8: 8, 12: 8, 16: 16, 24: 16, 72: 56, 96: 72, 120: 88}
    assert {n: n - _count(n, 0.25, 1) for n in (4, 12, 72)} == {4: 3, 12: 9, 72: 54}


@pytest.mark.parametrize("intercept", [True, False])
def test_refit_solution_is_the_least_squares_predictor(intercept):
    from qcc.prune.apply import refit_solution
    from qcc.prune.stats import Moments

    g = rng(20)
    x = r(g, 300, 6).astype(np.float64) @ r(g, 6, 6) + 3.0  # correlated, not centered
    aug = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    mom = Moments(aug.T @ aug, len(x))
    keep = np.array([True, False, True, True, False, True])
    mat, m0, g_pp, resid = refit_solution(mom, keep, 0.0, intercept)
    a = aug[:, [0, 2, 3, 5, 6]] if intercept else x[:, keep]
    coef = np.linalg.lstsq(a, x[:, ~keep], rcond=None)[0]
    np.testing.assert_allclose(mat, coef[:4].T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(m0, coef[4] if intercept else 0.0, rtol=1e-6, atol=1e-8)
    r_ = x[:, ~keep] - a @ coef
    np.testing.assert_allclose(resid, r_.T @ r_ / len(x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g_pp, x[:, ~keep].T @ x[:, ~keep] / len(x))


@pytest.mark.parametrize("kernel,stride,pads,out_pad", [(2, 2, 0, 0), (3, 2, 1, 1)])
def test_convtranspose_reading_removed_channels_is_refitted(kernel, stride, pads, out_pad):
    # A maps 3 inputs to 6 channels without bias: any 3 of them predict the others through
    # the origin, so the re-fitted transposed convolution reproduces the original exactly,
    # with non-overlapping (2/2) and overlapping (3/2) taps
    g = rng(21)
    t = helper.make_node(
        "ConvTranspose",
        ["a", "wt", "bt"],
        ["y"],
        name="T",
        kernel_shape=[kernel, kernel],
        strides=[stride, stride],
        pads=[pads] * 4,
        output_padding=[out_pad, out_pad],
    )
    proto = make_model(
        [helper.make_node("Conv", ["x", "wa"], ["a"], name="A"), t],
        {"x": (F, [1, 3, 4, 4])},
        {"y": (F, [1, 2, 8, 8])},
        {"wa": r(g, 6, 3, 1, 1), "wt": r(g, 6, 2, kernel, kernel), "bt": r(g, 2)},
    )
    samples = [r(g, 1, 3, 4, 4) for _ in range(8)]
    feeds = {"x": r(g, 1, 3, 4, 4)}
    ref = run_ir(lift(proto), feeds)[0]

    plain, _ = _pruned_half(proto, samples, "none", 0.0)
    fitted, rec = _pruned_half(proto, samples, "least-squares", 0.0)
    assert weight(fitted, "T").shape == (3, 2, kernel, kernel)
    np.testing.assert_array_equal(weight(fitted, "T", 2), weight(plain, "T", 2))  # no bias change
    assert np.abs(run_ir(plain, feeds)[0] - ref).max() > 0.1
    np.testing.assert_allclose(run_ir(fitted, feeds)[0], ref, rtol=1e-4, atol=1e-4)
    assert any(n.startswith("refit T: 3 inputs removed") for n in rec.notes)
    assert not any("not re-fitted" in n for n in rec.notes)


def test_output_error_criterion_counts_convtranspose_consumers():
    g = rng(22)
    wt = r(g, 6, 2, 2, 2)
    wt[[1, 3]] *= 1e-4  # the transposed convolution barely reads channels 1 and 3
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
            helper.make_node(
                "ConvTranspose", ["a", "wt"], ["y"], name="T", kernel_shape=[2, 2], strides=[2, 2]
            ),
        ],
        {"x": (F, [1, 3, 4, 4])},
        {"y": (F, [1, 2, 8, 8])},
        {"wa": r(g, 6, 3, 1, 1), "wt": wt},
    )
    m = lift(proto)
    session = Session(calibration=_calib(m, [r(g, 1, 3, 4, 4) for _ in range(4)]))
    _run(m, "prune-channels", session=session, ratio=0.34, criterion="output-error")
    np.testing.assert_array_equal(weight(m, "T"), np.delete(wt, [1, 3], axis=0))


def test_recovery_does_not_change_which_channels_go():
    # Channels 0 and 1 of A are copies: each alone is perfectly predicted by the other, so
    # a saliency "error left after the fit, every other channel kept" calls both free and
    # removes them together, and the fit then has nothing left to predict them from. The
    # ranking is the output error of removing a channel, with or without recovery: the two
    # weakest channels go, and recovery only changes weights.
    g = rng(23)
    wa = np.eye(6, dtype=np.float32).reshape(6, 6, 1, 1)
    wa[1] = wa[0]
    wa[4:] *= 0.3  # the weakest two
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
            helper.make_node("Conv", ["a", "wc"], ["y"], name="C"),
        ],
        {"x": (F, [1, 6, 4, 4])},
        {"y": (F, [1, 2, 4, 4])},
        {"wa": wa, "wc": r(g, 2, 6, 1, 1)},
    )
    samples = [r(g, 1, 6, 4, 4) for _ in range(8)]
    kept = {}
    for recovery in ("none", "least-squares"):
        m = lift(proto)
        session = Session(calibration=_calib(m, samples))
        _run(
            m,
            "prune-channels",
            session=session,
            ratio=0.34,
            criterion="output-error",
            recovery=recovery,
        )
        kept[recovery] = weight(m, "A")
    np.testing.assert_array_equal(kept["none"], wa[:4])
    np.testing.assert_array_equal(kept["least-squares"], wa[:4])
