"""eliminate-identity: which no-op nodes go, and how graph-output names are kept."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from tests.conftest import assert_same_outputs, lift, make_model, ops, run_pass

F = TensorProto.FLOAT


def test_identity_chain_removed_and_output_name_kept():
    proto = make_model(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Identity", ["r"], ["i1"]),
            helper.make_node("Identity", ["i1"], ["out"]),
        ],
        {"x": (F, [4])},
        {"out": (F, [4])},
    )
    m = lift(proto)
    rec = run_pass(m, "eliminate-identity")
    assert ops(m) == ["Relu"]
    assert m.graph.outputs[0].name == "out" and m.graph.outputs[0].producer.op_type == "Relu"
    assert rec.stats == {"removed": 2}
    assert_same_outputs(proto, m)


def test_identity_from_input_to_output_is_kept():
    proto = make_model(
        [helper.make_node("Identity", ["x"], ["y"])], {"x": (F, [2])}, {"y": (F, [2])}
    )
    m = lift(proto)
    rec = run_pass(m, "eliminate-identity")
    assert ops(m) == ["Identity"]
    assert not rec.changed and rec.stats == {"kept-for-graph-output": 1}


def test_dropout_cast_transpose_reshape_noops():
    proto = make_model(
        [
            helper.make_node("Dropout", ["x"], ["d"], name="drop"),
            helper.make_node("Cast", ["d"], ["c"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["c"], ["t"], perm=[0, 1]),
            helper.make_node("Reshape", ["t", "shape"], ["r"]),
            helper.make_node("Relu", ["r"], ["y"]),
        ],
        {"x": (F, [2, 3])},
        {"y": (F, [2, 3])},
        {"shape": np.array([2, 3], np.int64)},
    )
    m = lift(proto)
    rec = run_pass(m, "eliminate-identity")
    assert ops(m) == ["Relu"]
    assert rec.notes == ["removed Cast x1, Dropout x1, Reshape x1, Transpose x1"]
    assert_same_outputs(proto, m)


def test_nodes_that_change_something_are_kept():
    proto = make_model(
        [
            helper.make_node("Dropout", ["x", "ratio", "train"], ["d"]),  # training mode
            helper.make_node("Dropout", ["d"], ["d2", "mask"]),  # mask is used
            helper.make_node("Cast", ["d2"], ["c"], to=TensorProto.DOUBLE),  # changes type
            helper.make_node("Transpose", ["c"], ["t"], perm=[1, 0]),
            helper.make_node("Reshape", ["t", "shape"], ["y"]),  # changes shape
        ],
        {"x": (F, [2, 3])},
        {"y": (TensorProto.DOUBLE, [6]), "mask": (TensorProto.BOOL, [2, 3])},
        {
            "ratio": np.array(0.5, np.float32),
            "train": np.array(True),
            "shape": np.array([6], np.int64),
        },
    )
    m = lift(proto)
    rec = run_pass(m, "eliminate-identity")
    assert ops(m) == ["Dropout", "Dropout", "Cast", "Transpose", "Reshape"]
    assert not rec.changed
