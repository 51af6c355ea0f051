"""The ONNX side of the TFLite backend: static shapes, constants and use lists of a QDQ model.

:func:`load` fixes symbolic batch dimensions (batch becomes 1 unless the caller gives input
shapes), folds every node whose inputs are all constant (shape plumbing such as
``Shape -> Gather -> Concat -> Reshape``, ``Constant`` nodes, quantized constants) except
``DequantizeLinear`` (its consumers want the integer weight), then runs ONNX shape inference
(``data_prop=True``) so that every activation has a static shape. Constant nodes fold with
onnxruntime; shape inference runs before folding too when a ``Shape`` or ``Size`` node needs
it. The lowering reads the graph only through :class:`OnnxGraph`.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
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


# ONNX element types that are plain numpy dtypes (not float8, bfloat16, 4-bit or strings).
_PLAIN_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.INT8,
    onnx.TensorProto.INT16,
    onnx.TensorProto.INT32,
    onnx.TensorProto.INT64,
    onnx.TensorProto.UINT8,
    onnx.TensorProto.UINT16,
    onnx.TensorProto.UINT32,
    onnx.TensorProto.UINT64,
    onnx.TensorProto.BOOL,
}


def _to_array(t: onnx.TensorProto) -> np.ndarray:
    """``numpy_helper.to_array(t)``, without its generic dispatch (~10 us a tensor, a third of
    reading the initializers) in the common case: a plain numpy type in ``raw_data``."""
    if (
        t.data_type not in _PLAIN_TYPES
        or not t.HasField("raw_data")
        or t.data_location == onnx.TensorProto.EXTERNAL
        or t.HasField("segment")
        or sys.byteorder != "little"
    ):
        return numpy_helper.to_array(t)
    return np.frombuffer(t.raw_data, dtype=_np_dtype(t.data_type)).reshape(t.dims)


# The ops folded from the inferred shape of their input (not from constants).
_SHAPE_READERS = ("Shape", "Size")


def _fold(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Fold constant subgraphs (not DequantizeLinear) into initializers, in place.

    Returns the constants the remaining graph reads, name -> value, in initializer order (the
    model's initializers are exactly these afterwards)."""
    g = model.graph
    consts = {i.name: _to_array(i) for i in g.initializer}
    shapes: dict[str, tuple[int, ...]] | None = None
    opset = _opset(model)
    folded = []
    for index, node in enumerate(g.node):
        if node.domain not in ("", "ai.onnx"):
            continue
        ins = [n for n in node.input if n]
        value: list[np.ndarray] | None = None
        shape = None
        try:
            if node.op_type in _SHAPE_READERS:
                if shapes is None:
                    shapes = _types(model)[0]
                shape = shapes.get(node.input[0])
            if node.op_type == "Constant":
                value = [_constant_node_value(node)]
            elif node.op_type == "Shape" and shape is not None and not attrs(node):
                value = [np.array(shape, dtype=np.int64)]
            elif node.op_type == "Size" and shape is not None:
                value = [np.array(int(np.prod(shape)), dtype=np.int64)]
            elif (
                node.op_type != "DequantizeLinear"
                and ins
                and all(n in consts for n in ins)
                and not node.op_type.startswith("Random")
            ):
                value = _evaluate(node, consts, opset)
        except Exception as exc:  # an unfoldable node stays in the graph
            del exc
            value = None
        if value is None:
            continue
        folded.append(index)
        for name, v in zip(node.output, value, strict=False):
            if name:
                # an owned C-ordered copy, as a TensorProto round trip would give
                consts[name] = np.array(v, order="C")
    for index in reversed(folded):
        del g.node[index]
    used = {n for node in g.node for n in node.input} | {o.name for o in g.output}
    stored = set()
    for index in reversed(range(len(g.initializer))):
        if g.initializer[index].name in used:
            stored.add(g.initializer[index].name)
        else:
            del g.initializer[index]
    out = {name: v for name, v in consts.items() if name in used}
    g.initializer.extend(
        numpy_helper.from_array(v, name) for name, v in out.items() if name not in stored
    )
    del g.value_info[:]
    return out


def _evaluate(
    node: onnx.NodeProto, consts: Mapping[str, np.ndarray], opset: int
) -> list[np.ndarray]:
    """The outputs of ``node``, whose inputs are all constants, from onnxruntime (already
    loaded for calibration; ~0.7 ms a node, where onnx's reference evaluator costs ~0.05 s
    to import and ~1 ms a node to build)."""
    import onnxruntime as ort

    from qcc.frontend.ort_eval import session_options

    ins = [n for n in node.input if n]
    graph = onnx.helper.make_graph(
        [node],
        "fold",
        [],
        [onnx.ValueInfoProto(name=o) for o in node.output if o],
        initializer=[numpy_helper.from_array(np.asarray(consts[n]), n) for n in dict.fromkeys(ins)],
    )
    opsets = [onnx.helper.make_opsetid("", opset)]
    # the oldest IR version the opset allows: onnxruntime may not know the onnx package's newest
    ir_version = onnx.helper.find_min_ir_version_for(opsets)
    m = onnx.helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)
    sess = ort.InferenceSession(
        m.SerializeToString(), session_options(threads=1), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, {})


def _types(model: onnx.ModelProto) -> tuple[dict[str, tuple[int, ...]], dict[str, np.dtype]]:
    """The static shapes and the element types the model declares (inputs, value_info, outputs)."""
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, np.dtype] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if t.elem_type:
            dtypes[vi.name] = _np_dtype(t.elem_type)
        if not t.HasField("shape"):
            continue
        dims = []
        for d in t.shape.dim:  # a dim_param, an unset or a negative dim is not static
            if d.WhichOneof("value") != "dim_value" or d.dim_value < 0:
                break
            dims.append(d.dim_value)
        else:
            shapes[vi.name] = tuple(dims)
    return shapes, dtypes


@functools.cache
def _np_dtype(elem_type: int) -> np.dtype:
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type)


def _infer(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # ONNX raises several exception types here
        raise QccError(f"ONNX shape inference failed: {exc}", path=source) from exc


def _topo(nodes: Sequence[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's algorithm, stable in the file's node order."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    if all(
        producer[x] < i
        for i, n in enumerate(nodes)
        for x in n.input
        if x in producer and x not in available
    ):
        return list(nodes)  # already sorted (as files usually are): Kahn's order is this one
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
    if any(n.op_type in _SHAPE_READERS for n in m.graph.node):
        m = _infer(m, source)  # what they fold from
    consts = _fold(m)
    m = _infer(m, source)
    g = m.graph
    inputs = [vi.name for vi in g.input if vi.name not in consts]
    nodes = _topo(list(g.node), set(consts) | set(inputs))
    if len(nodes) != len(g.node):
        raise QccError("the graph has a cycle or reads an undefined tensor", path=source)
    producer = {o: n for n in nodes for o in n.output if o}
    shapes, dtypes = _types(m)
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in nodes:
        for i, x in enumerate(n.input):
            if x:
                consumers.setdefault(x, []).append((n, i))
    return OnnxGraph(
        source=source,
        nodes=nodes,
        consts=consts,
        shapes=shapes,
        dtypes=dtypes,
        inputs=inputs,
        outputs=[o.name for o in g.output],
        producer=producer,
        consumers=consumers,
    )
