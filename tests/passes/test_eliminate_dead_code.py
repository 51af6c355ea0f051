"""eliminate-dead-code: dead chains and constants go; interface and subgraph reads stay."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from tests.conftest import assert_same_outputs, lift, make_model, ops, run_pass

F = TensorProto.FLOAT


def test_dead_chain_and_its_constants_are_removed_inputs_kept():
    proto = make_model(
        [
            helper.make_node("Relu", ["x"], ["y"], name="live"),
            helper.make_node("Mul", ["x", "k"], ["d1"], name="dead1"),
            helper.make_node("Neg", ["d1"], ["d2"], name="dead2"),
        ],
        {"x": (F, [3]), "unused": (F, [3])},
        {"y": (F, [3])},
        {"k": np.ones(3, np.float32), "orphan": np.zeros(3, np.float32)},
    )
    m = lift(proto)
    rec = run_pass(m, "eliminate-dead-code")
    assert ops(m) == ["Relu"]
    assert m.graph.initializers == {}
    assert [v.name for v in m.graph.inputs] == ["x", "unused"]
    assert rec.stats == {"nodes": 2, "constants": 2, "bytes": 24}
    assert rec.notes == ["removed Mul x1, Neg x1"]
    assert_same_outputs(proto, m)


def test_value_read_only_inside_a_subgraph_stays_alive():
    then = helper.make_graph(
        [helper.make_node("Identity", ["h"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", F, [2])],
    )
    els = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", F, [2])],
    )
    proto = make_model(
        [
            helper.make_node("Neg", ["x"], ["h"], name="only_used_in_then"),
            helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=els),
        ],
        {"x": (F, [2]), "c": (TensorProto.BOOL, [])},
        {"y": (F, [2])},
    )
    m = lift(proto)
    rec = run_pass(m, "eliminate-dead-code")
    assert ops(m) == ["Neg", "If"]
    assert not rec.changed
    feeds = {"x": np.array([1.0, -2.0], np.float32), "c": np.array(True)}
    assert_same_outputs(proto, m, feeds)
