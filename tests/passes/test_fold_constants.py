"""fold-constants: Constant nodes, evaluation in onnxruntime, static Shape, and what it keeps."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import assert_same_outputs, lift, make_model, ops, run_pass

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def test_constant_nodes_become_constants_with_their_names():
    proto = make_model(
        [
            helper.make_node(
                "Constant",
                [],
                ["k"],
                value=numpy_helper.from_array(np.array([1.5, -2.0], np.float32)),
            ),
            helper.make_node("Add", ["x", "k"], ["y"]),
        ],
        {"x": (F, [2])},
        {"y": (F, [2])},
    )
    m = lift(proto)
    rec = run_pass(m, "fold-constants")
    assert ops(m) == ["Add"]
    assert m.graph.nodes[0].inputs[1].name == "k"
    assert m.graph.initializers["k"].const.tolist() == [1.5, -2.0]
    assert rec.stats["constant-nodes"] == 1
    assert_same_outputs(proto, m)


def test_shape_arithmetic_folds_to_a_constant_shape():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape, on a statically shaped input
    proto = make_model(
        [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
            helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
            helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
            helper.make_node("Reshape", ["x", "shape"], ["y"]),
        ],
        {"x": (F, [2, 3, 4])},
        {"y": (F, [2, 12])},
        {
            "zero": np.array(0, np.int64),
            "zero1": np.array([0], np.int64),
            "minus1": np.array([-1], np.int64),
        },
    )
    m = lift(proto)
    rec = run_pass(m, "fold-constants")
    assert ops(m) == ["Reshape"]
    assert m.graph.nodes[0].inputs[1].const.tolist() == [2, -1]
    assert rec.stats["static-shape"] == 1
    assert sorted(m.graph.initializers) == ["shape"]  # the helpers' constants were removed
    assert_same_outputs(proto, m)


def test_folded_values_are_what_onnxruntime_computes():
    a = np.linspace(0.1, 3.0, 7, dtype=np.float32)
    proto = make_model(
        [
            helper.make_node("Sqrt", ["a"], ["s"]),
            helper.make_node("Div", ["s", "three"], ["d"]),
            helper.make_node("Mul", ["x", "d"], ["y"]),
        ],
        {"x": (F, [7])},
        {"y": (F, [7])},
        {"a": a, "three": np.array(3.0, np.float32)},
    )
    m = lift(proto)
    run_pass(m, "fold-constants")
    assert ops(m) == ["Mul"]
    assert_same_outputs(proto, m)  # bit for bit


def test_quantization_structure_random_ops_and_outputs_are_kept():
    proto = make_model(
        [
            helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"]),
            helper.make_node("Mul", ["x", "w"], ["y"]),
            helper.make_node("RandomNormal", [], ["r"], shape=[3]),
            helper.make_node("Add", ["y", "r"], ["z"]),
            helper.make_node("Neg", ["ws"], ["negs"]),  # a graph output computed from constants
        ],
        {"x": (F, [3])},
        {"z": (F, [3]), "negs": (F, [])},
        {
            "wq": np.array([1, 2, 3], np.int8),
            "ws": np.array(0.5, np.float32),
            "wz": np.array(0, np.int8),
        },
    )
    m = lift(proto)
    rec = run_pass(m, "fold-constants")
    assert ops(m) == ["DequantizeLinear", "Mul", "RandomNormal", "Add", "Neg"]
    assert not rec.changed


def test_max_bytes_keeps_a_node_that_would_bloat_the_file():
    proto = make_model(
        [
            helper.make_node(
                "ConstantOfShape",
                ["shape"],
                ["big"],
                value=numpy_helper.from_array(np.array([1.0], np.float32)),
            ),
            helper.make_node("Add", ["x", "big"], ["y"]),
        ],
        {"x": (F, [1000])},
        {"y": (F, [1000])},
        {"shape": np.array([1000], np.int64)},
    )
    m = lift(proto)
    rec = run_pass(m, "fold-constants", **{"max-bytes": 100})
    assert ops(m) == ["ConstantOfShape", "Add"]
    assert rec.stats == {"skipped-too-large": 1}
    assert "kept" in rec.notes[0] and "max-bytes=100" in rec.notes[0]
    m = lift(proto)
    run_pass(m, "fold-constants")  # default limit (16 MiB) folds it
    assert ops(m) == ["Add"]


def test_a_node_onnxruntime_cannot_run_does_not_stop_the_others():
    proto = make_model(
        [
            helper.make_node("Neg", ["c"], ["n"]),
            helper.make_node("Mul", ["x", "n"], ["y"]),
        ],
        {"x": (F, [2])},
        {"y": (F, [2])},
        {"c": np.array([1.0, 2.0], np.float32)},
    )
    m = lift(proto)
    bogus = m.graph.nodes[0]
    # an ai.onnx op onnxruntime does not know: the batch fails, the fallback keeps just this one
    from qcc.ir import Node

    extra = Node("NotARealOp", [m.graph.initializers["c"]], name="bogus")
    m.graph.insert_after(bogus, extra)
    keep = Node("Add", [m.graph.nodes[-1].output, extra.output], name="keep")
    m.graph.append(keep)
    m.graph.outputs[0] = keep.output
    m.graph.verify()
    rec = run_pass(m, "fold-constants")
    assert ops(m) == ["NotARealOp", "Mul", "Add"]
    assert rec.stats["folded"] == 1
