"""fold-batchnorm: the algebra for each producer kind, standalone BN, and when it must not fire."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import assert_same_outputs, lift, make_model, ops, run_pass

F = TensorProto.FLOAT
TOL = {"rtol": 1e-5, "atol": 1e-5}


def bn_params(c: int, rng) -> dict[str, np.ndarray]:
    return {
        "g": rng.uniform(0.5, 1.5, c).astype(np.float32),
        "be": rng.standard_normal(c).astype(np.float32),
        "mu": rng.standard_normal(c).astype(np.float32),
        "var": rng.uniform(0.2, 2.0, c).astype(np.float32),
    }


BN = ["g", "be", "mu", "var"]


@pytest.mark.parametrize("with_bias", [True, False])
def test_conv_bn_folds_into_conv(with_bias):
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), **bn_params(4, rng)}
    conv_in = ["x", "w"]
    if with_bias:
        inits["b"] = rng.standard_normal(4).astype(np.float32)
        conv_in.append("b")
    proto = make_model(
        [
            helper.make_node("Conv", conv_in, ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", ["c", *BN], ["bn_out"], name="bn", epsilon=1e-3),
            helper.make_node("Relu", ["bn_out"], ["y"]),
        ],
        {"x": (F, [2, 3, 5, 5])},
        {"y": (F, [2, 4, 5, 5])},
        inits,
    )
    m = lift(proto)
    rec = run_pass(m, "fold-batchnorm")
    assert ops(m) == ["Conv", "Relu"]
    conv = m.graph.nodes[0]
    assert conv.name == "conv" and conv.output.name == "bn_out"  # names survive
    assert conv.origin.sources == ("conv", "bn") and conv.origin.pass_name == "fold-batchnorm"
    assert len(conv.inputs) == 3 and conv.inputs[2].const.shape == (4,)
    assert rec.stats == {"folded-into-Conv": 1}
    assert set(m.graph.initializers) == {conv.inputs[1].name, conv.inputs[2].name}  # old ones gone
    assert_same_outputs(proto, m, **TOL)


def test_grouped_conv_transpose_bn():
    rng = np.random.default_rng(1)
    # ConvTranspose weight [Cin, Cout/g, k, k], g=2: output channel c reads W[:, c % 3] of its group
    inits = {"w": rng.standard_normal((4, 3, 2, 2)).astype(np.float32), **bn_params(6, rng)}
    proto = make_model(
        [
            helper.make_node("ConvTranspose", ["x", "w"], ["c"], group=2, strides=[2, 2]),
            helper.make_node("BatchNormalization", ["c", *BN], ["y"]),
        ],
        {"x": (F, [1, 4, 3, 3])},
        {"y": (F, [1, 6, 6, 6])},
        inits,
    )
    m = lift(proto)
    run_pass(m, "fold-batchnorm")
    assert ops(m) == ["ConvTranspose"]
    assert_same_outputs(proto, m, **TOL)


@pytest.mark.parametrize("trans_b,with_c", [(0, True), (1, True), (1, False)])
def test_gemm_bn(trans_b, with_c):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 8) if trans_b else (8, 5)).astype(np.float32)
    inits = {"w": w, **bn_params(5, rng)}
    gemm_in = ["x", "w"]
    if with_c:
        inits["c"] = rng.standard_normal(5).astype(np.float32)
        gemm_in.append("c")
    proto = make_model(
        [
            helper.make_node("Gemm", gemm_in, ["g_out"], transB=trans_b, alpha=0.7, beta=1.3),
            helper.make_node("BatchNormalization", ["g_out", *BN], ["y"]),
        ],
        {"x": (F, [3, 8])},
        {"y": (F, [3, 5])},
        inits,
    )
    m = lift(proto)
    run_pass(m, "fold-batchnorm")
    assert ops(m) == ["Gemm"]
    assert m.graph.nodes[0].attr("beta") is None  # C now carries beta
    assert_same_outputs(proto, m, **TOL)


def test_matmul_bn_becomes_matmul_plus_bias():
    rng = np.random.default_rng(3)
    proto = make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["mm"]),
            helper.make_node("BatchNormalization", ["mm", *BN], ["y"]),
        ],
        {"x": (F, [4, 6])},
        {"y": (F, [4, 3])},
        {"w": rng.standard_normal((6, 3)).astype(np.float32), **bn_params(3, rng)},
    )
    m = lift(proto)
    run_pass(m, "fold-batchnorm")
    assert ops(m) == ["MatMul", "Add"]
    assert_same_outputs(proto, m, **TOL)


def test_bn_with_a_shared_producer_becomes_mul_add():
    rng = np.random.default_rng(4)
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
            helper.make_node("BatchNormalization", ["c", *BN], ["y"], name="bn"),
            helper.make_node("Relu", ["c"], ["z"]),  # a second user of the conv output
        ],
        {"x": (F, [1, 2, 4, 4])},
        {"y": (F, [1, 3, 4, 4]), "z": (F, [1, 3, 4, 4])},
        {"w": rng.standard_normal((3, 2, 1, 1)).astype(np.float32), **bn_params(3, rng)},
    )
    m = lift(proto)
    rec = run_pass(m, "fold-batchnorm")
    assert ops(m) == ["Conv", "Mul", "Add", "Relu"]
    assert m.graph.nodes[1].inputs[1].const.shape == (3, 1, 1)
    assert rec.stats == {"standalone-to-mul-add": 1}
    assert "'conv' (Conv)'s output has other users" in rec.notes[0]
    assert_same_outputs(proto, m, **TOL)
    m = lift(proto)
    rec = run_pass(m, "fold-batchnorm", standalone=False)
    assert ops(m) == ["Conv", "BatchNormalization", "Relu"] and not rec.changed


def test_training_mode_and_non_constant_params_are_left_alone():
    rng = np.random.default_rng(5)
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node(
                "BatchNormalization", ["c", "g", "be", "mu", "var"], ["y"], training_mode=1
            ),
            helper.make_node("BatchNormalization", ["y", "gx", "be", "mu", "var"], ["z"]),
        ],
        {"x": (F, [1, 2, 4, 4]), "gx": (F, [3])},
        {"z": (F, [1, 3, 4, 4])},
        {"w": rng.standard_normal((3, 2, 1, 1)).astype(np.float32), **bn_params(3, rng)},
    )
    m = lift(proto)
    rec = run_pass(m, "fold-batchnorm")
    assert ops(m) == ["Conv", "BatchNormalization", "BatchNormalization"]
    assert not rec.changed


def test_params_from_constant_nodes_paddle_style():
    rng = np.random.default_rng(6)
    params = bn_params(3, rng)
    consts = [
        helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v))
        for k, v in params.items()
    ]
    consts.append(
        helper.make_node(
            "Constant",
            [],
            ["w"],
            value=numpy_helper.from_array(rng.standard_normal((3, 2, 1, 1)).astype(np.float32)),
        )
    )
    proto = make_model(
        [
            *consts,
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("BatchNormalization", ["c", *BN], ["y"]),
        ],
        {"x": (F, [1, 2, 4, 4])},
        {"y": (F, [1, 3, 4, 4])},
    )
    m = lift(proto)
    run_pass(m, "fold-batchnorm")
    assert ops(m) == ["Conv"]  # the Constant nodes it used are gone too
    assert_same_outputs(proto, m, **TOL)
