"""The ONNX side of the TFLite backend: static shapes, constants and use lists of a QDQ model.

:func:`load` fixes symbolic batch dimensions (batch becomes 1 unless the caller gives input
shapes), folds every node whose inputs are all constant (shape plumbing such as
``Shape -> Gather -> Concat -> Reshape``, ``Constant`` nodes, quantized constants) except
``DequantizeLinear`` (its consumers want the integer weight), then runs ONNX shape inference
(``data_prop=True``) so that every activation has a static shape. The lowering reads the graph
only through :class:`OnnxGraph`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from qcc.errors import QccError


@dataclasses.dataclass
class OnnxGraph:
    """A topologically sorted ONNX graph with constants, static shapes and use lists."""

    source: str
    nodes: list[onnx.NodeProto]
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]
    inputs: list[str]
    outputs: list[str]
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]]

    def where(self, node: onnx.NodeProto) -> str:
        return f"'{node.name or node.output[0]}' ({node.op_type})"

    def error(self, node: onnx.NodeProto | None, message: str) -> QccError:
        return QccError(message, path=self.source, node=self.where(node) if node else None)

    def shape(self, name: str, node: onnx.NodeProto | None = None) -> tuple[int, ...]:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        s = self.shapes.get(name)
        if s is None:
            raise self.error(node, f"the shape of tensor '{name}' is unknown (not static)")
        return s

    def uses(self, name: str) -> list[tuple[onnx.NodeProto, int]]:
        return self.consumers.get(name, [])


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes as Python values."""
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _fix_inputs(
    model: onnx.ModelProto, source: str, input_shapes: Mapping[str, Sequence[int]]
) -> None:
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if vi.name in input_shapes:
            want = list(input_shapes[vi.name])
            if len(want) != len(dims):
                raise QccError(
                    f"input '{vi.name}' has rank {len(dims)}, the shape given has {len(want)}",
                    path=source,
                )
            for d, v in zip(dims, want, strict=False):
                d.dim_value = int(v)
            continue
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if i == 0:
                d.dim_value = 1  # a symbolic batch becomes 1
                continue
            raise QccError(
                f"input '{vi.name}' has a symbolic dimension {i} "
                f"('{d.dim_param}'); TFLite needs static shapes",
                path=source,
                hint="give the input a fixed shape (input_shapes=...)",
            )


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray:
    a = attrs(node)
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    if "value_float" in a:
        return np.array(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.array(a["value_floats"], dtype=np.float32)
    if "value_int" in a:
        return np.array(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.array(a["value_ints"], dtype=np.int64)
    raise ValueError("unsupported Constant attribute")


def _fold(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """Fold constant subgraphs (not DequantizeLinear) into initializers."""
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes = _shapes(model)
    kept = []
    opset = _opset(model)
    for node in g.node:
        if node.domain not in ("", "ai.onnx"):
            kept.append(node)
            continue
        ins = [n for n in node.input if n]
        value: list[np.ndarray] | None = None
        try:
            if node.op_type == "Constant":
                value = [_constant_node_value(node)]
            elif node.op_type == "Shape" and node.input[0] in shapes and not attrs(node):
                value = [np.array(shapes[node.input[0]], dtype=np.int64)]
            elif node.op_type == "Size" and node.input[0] in shapes:
                value = [np.array(int(np.prod(shapes[node.input[0]])), dtype=np.int64)]
            elif (
                node.op_type != "DequantizeLinear"
                and ins
                and all(n in consts for n in ins)
                and not node.op_type.startswith("Random")
            ):
                from onnx.reference import ReferenceEvaluator  # ~0.05 s: only when used

                value = _evaluate(ReferenceEvaluator, node, consts, opset)
        except Exception as exc:  # an unfoldable node stays in the graph
            del exc
            value = None
        if value is None:
            kept.append(node)
            continue
        for name, v in zip(node.output, value, strict=False):
            if name:
                consts[name] = np.asarray(v)
    used = {n for node in kept for n in node.input} | {o.name for o in g.output}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    del out.graph.initializer[:]
    out.graph.initializer.extend(
        numpy_helper.from_array(np.asarray(v), name) for name, v in consts.items() if name in used
    )
    del out.graph.value_info[:]
    return out


def _evaluate(
    evaluator: Any, node: onnx.NodeProto, consts: Mapping[str, np.ndarray], opset: int
) -> list[np.ndarray]:
    ins = [n for n in node.input if n]
    graph = onnx.helper.make_graph(
        [node],
        "fold",
        [],
        [
            onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
            for o in node.output
            if o
        ],
        initializer=[numpy_helper.from_array(np.asarray(consts[n]), n) for n in dict.fromkeys(ins)],
    )
    m = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    return list(evaluator(m).run(None, {}))


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if all(d >= 0 for d in dims):
            out[vi.name] = tuple(dims)
    return out


def _dtypes(model: onnx.ModelProto) -> dict[str, np.dtype]:
    out: dict[str, np.dtype] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        et = vi.type.tensor_type.elem_type
        if et:
            out[vi.name] = onnx.helper.tensor_dtype_to_np_dtype(et)
    return out


def _infer(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # ONNX raises several exception types here
        raise QccError(f"ONNX shape inference failed: {exc}", path=source) from exc


def _topo(nodes: Sequence[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's algorithm, stable in the file's node order."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [{producer[x] for x in n.input if x in producer and x not in available} for n in nodes]
    users: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    count = [len(d) for d in deps]
    import heapq

    ready = [i for i, c in enumerate(count) if c == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for u in users.get(i, []):
            count[u] -= 1
            if count[u] == 0:
                heapq.heappush(ready, u)
    return order


def load(
    model: onnx.ModelProto,
    source: str = "model",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> OnnxGraph:
    """Prepare ``model`` (not modified) for lowering: static shapes, folded constants, uses."""
    if not isinstance(model, onnx.ModelProto):
        raise QccError("convert() takes an onnx.ModelProto", path=source)
    opset = _opset(model)
    if opset < 13:
        raise QccError(
            f"the model imports ai.onnx opset {opset}; the TFLite backend needs opset 13 or later "
            "(per-channel DequantizeLinear)",
            path=source,
        )
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _fix_inputs(m, source, input_shapes or {})
    # Declared output shapes may be stale or hold -1 (paddle2onnx); inference recomputes them.
    for vi in m.graph.output:
        vi.type.tensor_type.ClearField("shape")
    del m.graph.value_info[:]
    m = _infer(m, source)
    m = _fold(m, source)
    m = _infer(m, source)
    g = m.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    inputs = [vi.name for vi in g.input if vi.name not in consts]
    nodes = _topo(list(g.node), set(consts) | set(inputs))
    if len(nodes) != len(g.node):
        raise QccError("the graph has a cycle or reads an undefined tensor", path=source)
    producer = {o: n for n in nodes for o in n.output if o}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in nodes:
        for i, x in enumerate(n.input):
            if x:
                consumers.setdefault(x, []).append((n, i))
    return OnnxGraph(
        source=source,
        nodes=nodes,
        consts=consts,
        shapes=_shapes(m),
        dtypes=_dtypes(m),
        inputs=inputs,
        outputs=[o.name for o in g.output],
        producer=producer,
        consumers=consumers,
    )
