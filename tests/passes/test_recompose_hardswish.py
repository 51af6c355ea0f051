"""recompose-hardswish: the decomposed forms become one HardSwish (opset 14+)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from tests.conftest import assert_same_outputs, lift, make_model, ops, run_pass

F = TensorProto.FLOAT
f32 = lambda v: np.array(v, np.float32)  # noqa: E731


def paddle(opset):
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["h"]),
            helper.make_node("Add", ["h", "three"], ["a"]),
            helper.make_node("Clip", ["a", "zero", "six"], ["cl"]),
            helper.make_node("Mul", ["h", "cl"], ["m"]),
            helper.make_node("Div", ["m", "six"], ["y"]),
        ],
        {"x": (F, [2, 8])},
        {"y": (F, [2, 8])},
        {"three": f32(3), "zero": f32(0), "six": f32(6)},
        opset=opset,
    )


def test_paddle_form_becomes_hardswish():
    proto = paddle(17)
    m = lift(proto)
    rec = run_pass(m, "recompose-hardswish")
    assert ops(m) == ["Relu", "HardSwish"] and rec.stats == {"recomposed": 1}
    assert m.graph.outputs[0].name == "y" and m.graph.initializers == {}
    feeds = {"x": np.linspace(-8, 8, 16, dtype=np.float32).reshape(2, 8)}
    assert_same_outputs(proto, m, feeds, rtol=1e-6, atol=1e-6)


def test_hardsigmoid_form_and_old_opsets():
    proto = make_model(
        [
            helper.make_node("HardSigmoid", ["x"], ["s"], alpha=1 / 6, beta=0.5),
            helper.make_node("Mul", ["x", "s"], ["y"]),
        ],
        {"x": (F, [4])},
        {"y": (F, [4])},
    )
    m = lift(proto)
    run_pass(m, "recompose-hardswish")
    assert ops(m) == ["HardSwish"]
    m = lift(paddle(13))
    rec = run_pass(m, "recompose-hardswish")
    assert not rec.changed and rec.notes == ["skipped: HardSwish needs opset 14"]
