"""prune-magnitude and prune-nm: which weights become zero, the rest untouched, bad targets."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcc.errors import PassError
from qcc.ir import constant_value
from qcc.pipeline import PassInvocation, PassManager, get_pass
from qcc.select import NamePattern
from tests.conftest import lift, make_model, ort_run, random_feeds, run_ir, run_pass

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _model():
    return make_model(
        [
            helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="conv1"),
            helper.make_node("Relu", ["a"], ["ra"]),
            helper.make_node("Conv", ["ra", "w2"], ["c"], name="conv2", group=2),
            helper.make_node("Flatten", ["c"], ["f"]),
            helper.make_node("Gemm", ["f", "w3"], ["y"], name="fc", transB=1),
        ],
        {"x": (F, [1, 4, 3, 3])},
        {"y": (F, [1, 5])},
        {"w1": r(8, 4, 3, 3), "b1": r(8), "w2": r(8, 4, 1, 1), "w3": r(5, 8)},
    )


def _w(model, name):
    return constant_value(next(n for n in model.graph if n.name == name).input(1))


def _init(proto, name):
    return next(numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == name)


def _same_as_zeroed(proto, model):
    """The pruned model computes exactly what the original computes with its zeroed weights."""
    ref = onnx.ModelProto()
    ref.CopyFrom(proto)
    names = {"conv1": "w1", "conv2": "w2", "fc": "w3"}
    for node_name, init in names.items():
        t = next(t for t in ref.graph.initializer if t.name == init)
        t.CopyFrom(numpy_helper.from_array(_w(model, node_name), init))
    feeds = random_feeds(proto)
    for a, b in zip(ort_run(ref, feeds), run_ir(model, feeds), strict=True):
        assert a.tobytes() == b.tobytes()


def test_magnitude_per_layer_zeroes_the_smallest_and_keeps_the_rest():
    proto = _model()
    m = lift(proto)
    rec = run_pass(m, "prune-magnitude", sparsity=0.5)
    for name, init in (("conv1", "w1"), ("conv2", "w2"), ("fc", "w3")):
        orig, new = _init(proto, init), _w(m, name)
        zero = new == 0
        assert zero.sum() == orig.size // 2
        assert np.abs(orig[zero]).max() <= np.abs(orig[~zero]).min()
        np.testing.assert_array_equal(new[~zero], orig[~zero])
    assert "conv1: sparsity 0.500 (288 weights)" in rec.notes
    assert rec.stats["sparsity"] == 0.5
    np.testing.assert_array_equal(constant_value(next(iter(m.graph)).input(2)), _init(proto, "b1"))
    _same_as_zeroed(proto, m)


def test_magnitude_global_uses_one_threshold():
    proto = _model()
    m = lift(proto)
    rec = run_pass(m, "prune-magnitude", sparsity=0.3, scope="global")
    all_w = np.concatenate([_w(m, n).reshape(-1) for n in ("conv1", "conv2", "fc")])
    orig = np.concatenate([_init(proto, n).reshape(-1) for n in ("w1", "w2", "w3")])
    assert (all_w == 0).sum() == int(0.3 * orig.size)
    assert np.abs(orig[all_w == 0]).max() <= np.abs(orig[all_w != 0]).min()
    assert rec.stats["zeros"] == int(0.3 * orig.size)


def test_magnitude_exclude_and_where_override():
    from qcc.select import OpType

    m = lift(_model())
    inv = PassInvocation(
        "prune-magnitude",
        get_pass("prune-magnitude").bind({"sparsity": 0.5}),
        exclude=NamePattern("fc"),
        overrides=((OpType(("Conv",)), {"sparsity": 0.25}),),
    )
    PassManager([inv], verify_each=True).run(m)
    assert np.mean(_w(m, "conv1") == 0) == 0.25 and np.mean(_w(m, "conv2") == 0) == 0.25
    assert not np.any(_w(m, "fc") == 0)


def test_nm_keeps_the_two_largest_of_every_four_input_channels():
    proto = _model()
    m = lift(proto)
    rec = run_pass(m, "prune-nm", n=2, m=4)
    w1, o1 = _w(m, "conv1"), _init(proto, "w1")
    groups = np.moveaxis(w1, 1, -1).reshape(-1, 4)
    orig = np.moveaxis(o1, 1, -1).reshape(-1, 4)
    assert np.all((groups != 0).sum(axis=1) == 2)
    kept = np.sort(np.abs(orig), axis=1)[:, 2:]
    np.testing.assert_array_equal(np.sort(np.abs(groups), axis=1)[:, 2:], kept)
    fc = _w(m, "fc")  # transB: the K axis is 1
    assert np.all((fc.reshape(5, -1, 4) != 0).sum(axis=2) == 2)
    # conv2 is grouped with 4 input channels per group: 2:4 applies
    assert np.all((np.moveaxis(_w(m, "conv2"), 1, -1).reshape(-1, 4) != 0).sum(axis=1) == 2)
    assert rec.stats["layers"] == 3
    _same_as_zeroed(proto, m)


def test_nm_skips_layers_whose_channels_do_not_divide():
    proto = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c", group=3)],
        {"x": (F, [1, 3, 3, 3])},
        {"y": (F, [1, 3, 3, 3])},
        {"w": r(3, 1, 1, 1)},
    )
    m = lift(proto)
    rec = run_pass(m, "prune-nm")
    assert not rec.changed
    assert rec.notes == ["c: skipped, 1 input channels is not a multiple of 4"]


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("prune-magnitude", {"sparsity": 1.0}, "sparsity must be in"),
        ("prune-nm", {"n": 4, "m": 4}, "1 <= n < m"),
        ("prune-nm", {"n": 0}, "1 <= n < m"),
    ],
)
def test_impossible_targets_are_errors(name, options, message):
    with pytest.raises(PassError, match=message):
        run_pass(lift(_model()), name, **options)


def test_cli_impossible_sparsity_exits_2(cli, tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(_model().SerializeToString())
    code, _, err = cli(
        "compile", src, "--passes", "prune-magnitude{sparsity=2}", "-o", tmp_path / "o.onnx"
    )
    assert code == 2 and "sparsity must be in [0, 1)" in err
