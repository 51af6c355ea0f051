"""decompose-hardsigmoid and decompose-hardswish: the graph after the passes and its numerics
against onnxruntime."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from qcc.frontend import lower_model
from qcc.pipeline import PassInvocation, PassManager
from tests.conftest import lift, make_model, ort_run

F = TensorProto.FLOAT


def test_hardsigmoid_becomes_mul_add_clip_with_the_same_values():
    proto = make_model(
        [
            helper.make_node("HardSigmoid", ["x"], ["h"], alpha=0.2, beta=0.5),
            helper.make_node("HardSigmoid", ["x"], ["y2"]),  # defaults
            helper.make_node("Mul", ["x", "h"], ["y"]),
        ],
        {"x": (F, [2, 64])},
        {"y": (F, [2, 64]), "y2": (F, [2, 64])},
    )
    m = lift(proto)
    (record,) = PassManager([PassInvocation("decompose-hardsigmoid")], verify_each=True).run(m)
    assert record.stats == {"decomposed": 2}
    assert [n.op_type for n in m.graph] == ["Mul", "Add", "Clip", "Mul", "Add", "Clip", "Mul"]
    mul, add, clip = list(m.graph)[:3]
    assert float(mul.input(1).const) == np.float32(0.2)
    assert float(add.input(1).const) == 0.5
    assert (float(clip.input(1).const), float(clip.input(2).const)) == (0.0, 1.0)
    assert [v.name for v in m.graph.outputs] == ["y", "y2"]
    x = np.linspace(-4, 4, 128, dtype=np.float32).reshape(2, 64)
    want = ort_run(proto, {"x": x})
    got = ort_run(lower_model(m), {"x": x})
    for w, g in zip(want, got, strict=True):  # alpha*x and +beta round separately: 1 ulp
        np.testing.assert_allclose(g, w, rtol=0, atol=1.2e-7)
    assert want[0][0, 0] == 0.0 and want[1][1, -1] == 1.0  # both clamps exercised


def test_hardswish_becomes_x_times_its_hardsigmoid_then_mul_add_clip():
    proto = make_model(
        [helper.make_node("HardSwish", ["x"], ["y"])],
        {"x": (F, [2, 64])},
        {"y": (F, [2, 64])},
        opset=14,
    )
    m = lift(proto)
    steps = [PassInvocation("decompose-hardswish"), PassInvocation("decompose-hardsigmoid")]
    records = PassManager(steps, verify_each=True).run(m)
    assert [r.stats for r in records] == [{"decomposed": 1}, {"decomposed": 1}]
    assert [n.op_type for n in m.graph] == ["Mul", "Add", "Clip", "Mul"]
    assert float(next(iter(m.graph)).input(1).const) == np.float32(1 / 6)
    x = np.linspace(-5, 5, 128, dtype=np.float32).reshape(2, 64)
    want = ort_run(proto, {"x": x})[0]
    got = ort_run(lower_model(m), {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-7)  # two roundings instead of one
    assert want[0, 0] == 0.0 and want[1, -1] == 5.0  # both sides of the clamp exercised
