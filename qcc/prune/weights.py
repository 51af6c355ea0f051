"""The weights unstructured pruning works on, and their input-channel axis.

A prunable weight is the constant float weight of a Conv, ConvTranspose, Gemm or MatMul (its
second input); biases are never pruned. The input-channel axis (the axis a layer sums over
with its input's channels, along which N:M groups run) is 1 for Conv (``[O, I/g, k...]``),
0 for ConvTranspose (``[I, O/g, k...]``), the K axis of Gemm's B (0, or 1 with ``transB``) and
the second-to-last axis of MatMul's right operand. A constant read by several nodes is pruned
once, and only when every node reading it is selected.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qcc.ir import Graph, Node, Value, constant_value

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclasses.dataclass(eq=False)
class Weight:
    """One prunable weight: the value, the nodes reading it (first one names it), its axis."""

    value: Value
    nodes: list[Node]
    in_axis: int

    @property
    def name(self) -> str:
        n = self.nodes[0]
        return n.name or n.describe()

    @property
    def array(self) -> np.ndarray:
        return constant_value(self.value)


def prunable_weights(graph: Graph, selected) -> list[Weight]:
    """Every prunable weight whose readers are all ``selected`` (a predicate), graph order."""
    found: dict[Value, Weight] = {}
    for node in graph:
        if node.domain or node.op_type not in WEIGHTED_OPS:
            continue
        v = node.input(1)
        w = constant_value(v)
        if w is None or not np.issubdtype(w.dtype, np.floating) or w.ndim < 2:
            continue
        if node.op_type == "Conv":
            axis = 1
        elif node.op_type == "ConvTranspose":
            axis = 0
        elif node.op_type == "Gemm":
            axis = 1 if node.attr("transB", 0) else 0
        else:
            axis = w.ndim - 2
        entry = found.get(v)
        if entry is None:
            found[v] = Weight(v, [node], axis)
        elif entry.in_axis != axis:
            entry.in_axis = -1  # read along different axes: not N:M-prunable
            entry.nodes.append(node)
        else:
            entry.nodes.append(node)
    out = []
    for w in found.values():
        readers = [u.node for u in w.value.uses]
        if all(selected(n) for n in readers) and not w.value.is_graph_output:
            out.append(w)
    return out


def replace_weight(graph: Graph, weight: Weight, array: np.ndarray) -> None:
    """Make every reader of ``weight`` read a new constant holding ``array``."""
    new = graph.add_constant(array.astype(weight.array.dtype), weight.value.name)
    for use in list(weight.value.uses):
        use.node.replace_input(use.index, new)
    graph.remove_unused_constants([weight.value])
