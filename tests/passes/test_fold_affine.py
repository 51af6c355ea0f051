"""fold-affine: constant Mul/Div/Add/Sub into the linear op before it, and when it must not."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.conftest import assert_same_outputs, lift, make_model, ops, run_pass

F = TensorProto.FLOAT
TOL = {"rtol": 1e-5, "atol": 1e-5}
RNG = np.random.default_rng(0)


def r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_conv_mul_add_chain_folds_twice():
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
            helper.make_node("Mul", ["s", "c"], ["m"]),  # constant first works for Mul
            helper.make_node("Add", ["m", "t"], ["a"]),
            helper.make_node("Div", ["a", "d"], ["y"]),
        ],
        {"x": (F, [1, 2, 5, 5])},
        {"y": (F, [1, 3, 5, 5])},
        {
            "w": r(3, 2, 3, 3),
            "b": r(3),
            "s": np.array([1.7], np.float32),
            "t": r(1, 3, 1, 1),
            "d": r(3, 1, 1),
        },
    )
    m = lift(proto)
    rec = run_pass(m, "fold-affine")
    assert ops(m) == ["Conv"]
    assert m.graph.nodes[0].output.name == "y" and m.graph.nodes[0].name == "conv"
    assert rec.stats == {"Add-into-Conv": 1, "Div-into-Conv": 1, "Mul-into-Conv": 1}
    assert_same_outputs(proto, m, **TOL)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_sub_and_matmul_mul(trans_b):
    proto = make_model(
        [
            helper.make_node("Gemm", ["x", "w"], ["g"], transB=trans_b),
            helper.make_node("Sub", ["g", "c"], ["s"]),
            helper.make_node("MatMul", ["s", "w2"], ["mm"]),
            helper.make_node("Mul", ["mm", "k"], ["y"]),
        ],
        {"x": (F, [2, 4])},
        {"y": (F, [2, 6])},
        {"w": r(5, 4) if trans_b else r(4, 5), "c": r(5), "w2": r(5, 6), "k": r(1, 6)},
    )
    m = lift(proto)
    run_pass(m, "fold-affine")
    assert ops(m) == ["Gemm", "MatMul"]
    assert_same_outputs(proto, m, **TOL)


def test_what_must_not_fold():
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("Mul", ["c", "spatial"], ["m"]),  # varies along H: not per channel
            helper.make_node("MatMul", ["f", "w2"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["a"]),  # MatMul has no bias input
            helper.make_node("Conv", ["x", "w"], ["c2"]),
            helper.make_node("Sub", ["k", "c2"], ["s"]),  # k - y
            helper.make_node("Conv", ["x", "w"], ["c3"]),
            helper.make_node("Mul", ["c3", "k"], ["y3"]),
            helper.make_node("Relu", ["c3"], ["y4"]),  # c3 has another user
        ],
        {"x": (F, [1, 2, 4, 4]), "f": (F, [2, 3])},
        {
            "m": (F, [1, 3, 4, 4]),
            "a": (F, [2, 5]),
            "s": (F, [1, 3, 4, 4]),
            "y3": (F, [1, 3, 4, 4]),
            "y4": (F, [1, 3, 4, 4]),
        },
        {"w": r(3, 2, 1, 1), "spatial": r(1, 1, 4, 1), "w2": r(3, 5), "b": r(5), "k": r(1)},
    )
    m = lift(proto)
    rec = run_pass(m, "fold-affine")
    assert not rec.changed
    assert ops(m) == ["Conv", "Mul", "MatMul", "Add", "Conv", "Sub", "Conv", "Mul", "Relu"]
