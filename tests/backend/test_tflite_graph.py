"""The TFLite backend's graph loading (graph.load): constant folding, initializers, node order.

``graph.load`` folds constant nodes (shape plumbing: Cast, Concat, Gather, Reshape, Slice,
Squeeze, Unsqueeze, Identity) with onnxruntime; each case below is checked against
``onnx.reference.ReferenceEvaluator``. Initializers are read with a fast path for plain
``raw_data``, checked against ``numpy_helper.to_array``. Nodes come out in a stable topological
order, the file's when it is one.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh
from onnx.reference import ReferenceEvaluator

from qcc.backend.tflite import graph

I64 = np.iinfo(np.int64)
X = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
V = np.array([1, 3, 224, 224], dtype=np.int64)

CASES = {
    "cast_int_to_float": ("Cast", [V], {"to": TensorProto.FLOAT}),
    "cast_float_to_int": ("Cast", [X - 11.5], {"to": TensorProto.INT32}),
    "cast_to_bool": ("Cast", [V - 1], {"to": TensorProto.BOOL}),
    "concat": ("Concat", [V[:1], V[2:], np.array([7], np.int64)], {"axis": 0}),
    "concat_negative_axis": ("Concat", [X, X[:, :1]], {"axis": -2}),
    "gather_scalar": ("Gather", [V, np.array(2, np.int64)], {}),
    "gather_negative": ("Gather", [V, np.array([-1, 0], np.int64)], {"axis": 0}),
    "gather_axis1_2d": ("Gather", [X, np.array([[2, 0]], np.int32)], {"axis": 1}),
    "reshape_zero_copies": ("Reshape", [X, np.array([0, -1], np.int64)], {}),
    "reshape_allowzero": ("Reshape", [X, np.array([2, 12], np.int64)], {"allowzero": 1}),
    "slice_to_end": ("Slice", [V, np.array([1]), np.array([I64.max])], {}),
    "slice_axes_steps": (
        "Slice",
        [X, np.array([2, 0]), np.array([0, 3]), np.array([-1, 1]), np.array([-1, 2])],
        {},
    ),
    "slice_min_end": ("Slice", [V, np.array([-1]), np.array([I64.min]), None, np.array([-1])], {}),
    "squeeze_axes": ("Squeeze", [X[:1, :, :1], np.array([0, -1])], {}),
    "squeeze_all": ("Squeeze", [X[:1, :, :1]], {}),
    "unsqueeze": ("Unsqueeze", [V, np.array([0, -1])], {}),
    "unsqueeze_scalar": ("Unsqueeze", [np.array(5, np.int64), np.array([0])], {}),
    "identity": ("Identity", [V], {}),
}


def _node(op: str, inputs: list[np.ndarray | None], attrs: dict) -> tuple[onnx.NodeProto, dict]:
    names = [f"in{i}" if x is not None else "" for i, x in enumerate(inputs)]
    consts = {n: x for n, x in zip(names, inputs, strict=True) if n}
    return oh.make_node(op, names, ["out"], **attrs), consts


def _reference(node: onnx.NodeProto, consts: dict, opset: int) -> np.ndarray:
    g = oh.make_graph(
        [node],
        "ref",
        [],
        [oh.make_tensor_value_info("out", TensorProto.UNDEFINED, None)],
        initializer=[numpy_helper.from_array(v, n) for n, v in consts.items()],
    )
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])
    return np.asarray(ReferenceEvaluator(m).run(None, {})[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_folds_agree_with_the_reference_evaluator(name: str) -> None:
    op, inputs, attrs = CASES[name]
    node, consts = _node(op, inputs, attrs)
    got = np.asarray(graph._evaluate(node, consts, 17)[0])
    want = _reference(node, consts, 17)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_a_node_onnxruntime_cannot_fold_stays_in_the_graph() -> None:
    # Concat without its required axis: not foldable, so load leaves it for the lowering to
    # report, instead of failing while folding
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [oh.make_node("Concat", ["a", "a"], ["c"]), oh.make_node("Add", ["x", "c"], ["y"])]
    a = numpy_helper.from_array(np.ones(1, np.float32), "a")
    model = oh.make_model(
        oh.make_graph(nodes, "g", [x], [y], initializer=[a]),
        opset_imports=[oh.make_opsetid("", 17)],
    )
    with pytest.raises(Exception):  # noqa: B017 (whatever onnxruntime raises)
        graph._evaluate(nodes[0], {"a": np.ones(1, np.float32)}, 17)
    assert [n.op_type for n in graph.load(model).nodes] == ["Concat", "Add"]


def test_shape_plumbing_folds_into_a_constant_reshape() -> None:
    """Shape -> Slice -> Concat -> Cast -> Reshape: only the Reshape (with a constant shape) is
    left, and the graph reads the folded shape."""
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        oh.make_node("Shape", ["x"], ["s"]),
        oh.make_node("Slice", ["s", "zero", "two"], ["s01"]),
        oh.make_node("Concat", ["s01", "minus1"], ["s3"], axis=0),
        oh.make_node("Cast", ["s3"], ["s3f"], to=TensorProto.FLOAT),
        oh.make_node("Cast", ["s3f"], ["shape"], to=TensorProto.INT64),
        oh.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
    ]
    model = oh.make_model(
        oh.make_graph(nodes, "g", [x], [y], initializer=inits),
        opset_imports=[oh.make_opsetid("", 17)],
    )
    g = graph.load(model)
    assert [n.op_type for n in g.nodes] == ["Reshape"]
    np.testing.assert_array_equal(g.consts["shape"], [1, 3, -1])
    assert list(g.consts) == ["shape"]  # the plumbing's own constants are gone
    assert g.shapes["y"] == (1, 3, 16)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(-6, 6, dtype=np.int8).reshape(3, 4),
        np.linspace(-1, 1, 7, dtype=np.float32),
        np.array(3, dtype=np.int64),
        np.array([True, False]),
        np.zeros((2, 0, 3), np.float16),
        np.array([1.5, 2.5], np.float64),
    ],
)
@pytest.mark.parametrize("raw", [True, False])
def test_initializers_read_as_numpy_helper_reads_them(array: np.ndarray, raw: bool) -> None:
    t = numpy_helper.from_array(array, "t")
    if not raw:  # the typed fields instead of raw_data: numpy_helper's own path
        t = oh.make_tensor("t", t.data_type, array.shape, array.reshape(-1).tolist())
    got, want = graph._to_array(t), numpy_helper.to_array(t)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_nodes_come_out_in_stable_topological_order() -> None:
    """A file already in order keeps it; one out of order is sorted, stable in file order."""
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, None)
    z = oh.make_tensor_value_info("z", TensorProto.FLOAT, None)
    relu = oh.make_node("Relu", ["x"], ["a"], name="relu")
    neg = oh.make_node("Neg", ["x"], ["b"], name="neg")
    add = oh.make_node("Add", ["a", "b"], ["y"], name="add")
    abs_ = oh.make_node("Abs", ["b"], ["z"], name="abs")

    def order(nodes: list[onnx.NodeProto]) -> list[str]:
        g = oh.make_graph(nodes, "g", [x], [y, z])
        model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
        return [n.name for n in graph.load(model).nodes]

    assert order([neg, abs_, relu, add]) == ["neg", "abs", "relu", "add"]
    assert order([add, abs_, relu, neg]) == ["relu", "neg", "add", "abs"]
