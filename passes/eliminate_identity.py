"""``eliminate-identity``: remove nodes that return their input unchanged.

Rewrite ``y = op(x)`` to ``y := x`` (every use of ``y`` reads ``x``) when ``op`` is

* ``Identity``;
* ``Dropout`` in inference mode (no ``training_mode`` input, or a constant false one) whose
  mask output is unused;
* ``Cast`` to the element type ``x`` already has;
* ``Transpose`` with the identity permutation (and a known rank);
* ``Reshape``/``Flatten``/``Squeeze``/``Unsqueeze``/``Expand`` whose input and output shapes are
  the same fully static shape (so the node cannot change anything).

If ``y`` is a graph output, ``x`` takes over the output's name; when ``x`` cannot (it is a graph
input, a constant, or already a graph output) the node is kept, because ONNX needs a node to
give one tensor two interface names.

Does not fire on nodes inside subgraphs, on a Dropout in training mode or with a used mask,
or when a type or shape is unknown.
"""

from __future__ import annotations

import collections

from qcc.ir import Graph, Node, Value, constant_value
from qcc.pipeline import PassContext, PassResult, register_pass

_SAME_SHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand")


@register_pass("eliminate-identity", selectable=True)
def eliminate_identity(graph: Graph, ctx: PassContext) -> PassResult:
    """Remove Identity, inference Dropout, same-type Cast, identity Transpose and no-op reshapes.

    With ``on``/``exclude``, only the selected nodes are considered.
    """
    result = PassResult()
    removed: collections.Counter[str] = collections.Counter()
    kept_for_output = 0
    for node in graph:
        if node.domain or not ctx.selected(node):
            continue
        x = _passthrough_input(node)
        if x is None:
            continue
        y = node.outputs[0]
        if y.is_graph_output and (x.producer is None or x.graph is not graph or x.is_graph_output):
            kept_for_output += 1
            continue
        graph.replace_value(y, x)
        graph.remove(node)
        removed[node.op_type] += 1
    if removed:
        result.count("removed", sum(removed.values()))
        result.note("removed " + ", ".join(f"{op} x{n}" for op, n in sorted(removed.items())))
    if kept_for_output:
        result.stats["kept-for-graph-output"] = kept_for_output
    return result


def _passthrough_input(node: Node) -> Value | None:
    """The input ``node`` passes through unchanged, or None if it may change anything."""
    op = node.op_type
    x = node.input(0)
    if x is None:
        return None
    if op == "Identity":
        return x
    if op == "Dropout":
        if len(node.outputs) > 1 and (
            node.outputs[1].has_uses() or node.outputs[1].is_graph_output
        ):
            return None
        training = node.input(2)
        if training is not None:
            t = constant_value(training)
            if t is None or bool(t.reshape(-1)[0]):
                return None
        if node.attr("is_test", 1) == 0 and "is_test" in node.attrs:  # opset < 7 training mode
            return None
        return x
    if op == "Cast":
        to = node.attr("to")
        return x if x.dtype is not None and to is not None and int(x.dtype) == to else None
    if op == "Transpose":
        perm = node.attr("perm")
        if perm is None or x.shape is None:
            return None
        return x if tuple(perm) == tuple(range(len(x.shape))) else None
    if op in _SAME_SHAPE_OPS:
        y = node.outputs[0]
        if _static(x.shape) and _static(y.shape) and tuple(x.shape) == tuple(y.shape):
            return x if x.dtype == y.dtype or y.dtype is None else None
    return None


def _static(shape) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)
