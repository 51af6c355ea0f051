"""Lift an ``onnx.ModelProto`` into qcc's IR.

Values are wired by name in two steps (create every node's outputs, then connect inputs) so
graphs stored out of topological order load; the graph is then sorted, and a cycle, a value
produced twice or an input that nothing defines is a :class:`~qcc.errors.ModelError` naming the
node. Subgraphs are lifted recursively; their references to enclosing values become ordinary
uses. Intermediate ``value_info`` (from the file or from shape inference) sets value types and
is not written back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from qcc.errors import IRError, ModelError
from qcc.ir import Attr, AttrType, DType, Graph, Model, NameAuthority, Node, Value

_A = onnx.AttributeProto


def lift_model(proto: onnx.ModelProto, *, path: Path | None = None) -> Model:
    names = NameAuthority()
    opsets = {
        (op.domain if op.domain != "ai.onnx" else ""): op.version for op in proto.opset_import
    }
    lifter = _Lifter(names, opsets, path)
    graph = lifter.graph(proto.graph, outer={})
    model = Model(graph, ir_version=proto.ir_version)
    model.producer_name = proto.producer_name
    model.producer_version = proto.producer_version
    model.domain = proto.domain
    model.model_version = proto.model_version
    model.doc_string = proto.doc_string
    model.metadata_props = {p.key: p.value for p in proto.metadata_props}
    model.functions = [_copy(f) for f in proto.functions]
    if proto.training_info:
        model.opaque["training_info"] = [_copy(t) for t in proto.training_info]
    model.path = str(path) if path is not None else None
    return model


def _copy(msg):
    c = type(msg)()
    c.CopyFrom(msg)
    return c


def type_from_proto(v: Value, tp: onnx.TypeProto) -> None:
    """Set ``v``'s dtype and shape from a TypeProto (non-tensor types stay opaque)."""
    if tp.HasField("tensor_type"):
        tt = tp.tensor_type
        v.dtype = DType(tt.elem_type) if tt.elem_type else None
        if tt.HasField("shape"):
            dims: list[int | str | None] = []
            for d in tt.shape.dim:
                if d.HasField("dim_value"):
                    dims.append(int(d.dim_value))
                elif d.HasField("dim_param") and d.dim_param:
                    dims.append(d.dim_param)
                else:
                    dims.append(None)
            v.shape = tuple(dims)
        else:
            v.shape = None
        v.opaque_type = None
    elif tp.WhichOneof("value") is not None:
        v.opaque_type = _copy(tp)
        v.dtype = None
        v.shape = None


def tensor_to_array(t: onnx.TensorProto, base: Path | None = None) -> np.ndarray:
    """A TensorProto as numpy; external data is memory-mapped read-only from ``base``."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return _map_external(t, base)
    arr = numpy_helper.to_array(t)
    if arr.dtype.kind in "US":
        arr = arr.astype(object)
    return arr


def _map_external(t: onnx.TensorProto, base: Path | None) -> np.ndarray:
    if base is None:
        raise ValueError("external data needs the model's directory")
    info = external_data_helper.ExternalDataInfo(t)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
    shape = tuple(int(d) for d in t.dims)
    count = int(np.prod(shape, dtype=np.int64))
    if t.data_type in _PACKED:  # sub-byte types: let onnx unpack them
        c = onnx.TensorProto()
        c.CopyFrom(t)
        external_data_helper.load_external_data_for_tensor(c, str(base))
        return numpy_helper.to_array(c)
    nbytes = count * np.dtype(dtype).itemsize
    if info.length and int(info.length) != nbytes:
        raise ValueError(f"external data holds {info.length} bytes, the tensor needs {nbytes}")
    if count == 0:
        return np.zeros(shape, dtype)
    return np.memmap(
        base / info.location, dtype=dtype, mode="r", offset=int(info.offset or 0), shape=shape
    )


_PACKED = frozenset(
    {onnx.TensorProto.INT4, onnx.TensorProto.UINT4}
    | {
        getattr(onnx.TensorProto, n)
        for n in ("FLOAT4E2M1", "INT2", "UINT2")
        if hasattr(onnx.TensorProto, n)
    }
)


def sparse_to_array(sp: onnx.SparseTensorProto) -> np.ndarray:
    """Densify a SparseTensorProto (indices either linear ``[NNZ]`` or ``[NNZ, rank]``)."""
    values = numpy_helper.to_array(sp.values)
    idx = numpy_helper.to_array(sp.indices).astype(np.int64)
    shape = tuple(sp.dims)
    dense = np.zeros(shape, dtype=values.dtype)
    if idx.ndim == 1:
        dense.reshape(-1)[idx] = values.reshape(-1)
    else:
        dense[tuple(idx.T)] = values.reshape(-1)
    return dense


class _Lifter:
    def __init__(self, names: NameAuthority, opsets: dict[str, int], path: Path | None) -> None:
        self.names = names
        self.opsets = opsets
        self.path = path
        self.base = path.parent if path is not None else None

    def error(self, msg: str, node: Node | None = None, hint: str | None = None) -> ModelError:
        return ModelError(msg, path=self.path, node=node.describe() if node else None, hint=hint)

    def graph(self, gp: onnx.GraphProto, outer: dict[str, Value], parent: str = "") -> Graph:
        g = Graph(gp.name, names=self.names, opset_imports=self.opsets)
        g.doc_string = gp.doc_string
        where = f" in subgraph {gp.name!r}" if parent else ""
        local: dict[str, Value] = {}
        types: dict[str, onnx.TypeProto] = {}
        for vi in list(gp.value_info) + list(gp.input) + list(gp.output):
            if vi.HasField("type"):
                types[vi.name] = vi.type

        for t in gp.initializer:
            if t.name in local:
                raise self.error(f"initializer {t.name!r}{where} is defined twice")
            v = Value(t.name)
            try:
                v.const = _readonly(tensor_to_array(t, self.base))
            except Exception as e:
                raise self.error(f"cannot read initializer {t.name!r}{where}: {e}") from None
            g.add_initializer(v)
            local[t.name] = v
        for sp in gp.sparse_initializer:
            name = sp.values.name
            if name in local:
                raise self.error(f"initializer {name!r}{where} is defined twice")
            v = Value(name)
            v.const = _readonly(sparse_to_array(sp))
            g.add_initializer(v)
            local[name] = v
        for vi in gp.input:
            v = local.get(vi.name)
            if v is None:
                v = Value(vi.name)
                local[vi.name] = v
                type_from_proto(v, vi.type)
            v.doc_string = vi.doc_string
            g.add_input(v)

        # step 1: nodes and their outputs
        nodes: list[tuple[Node, onnx.NodeProto]] = []
        for npb in gp.node:
            node = Node(
                npb.op_type,
                domain=npb.domain,
                outputs=list(npb.output),
                name=npb.name,
                overload=npb.overload,
            )
            node.doc_string = npb.doc_string
            if npb.metadata_props:
                node.meta["onnx_metadata_props"] = {p.key: p.value for p in npb.metadata_props}
            for out in node.outputs:
                if not out.name:
                    continue
                if out.name in local:
                    other = local[out.name]
                    by = other.producer.describe() if other.producer else "a graph input"
                    raise self.error(
                        f"value {out.name!r}{where} is defined twice (also by {by})", node
                    )
                local[out.name] = out
                if out.name in types:
                    type_from_proto(out, types[out.name])
            nodes.append((node, npb))

        # step 2: inputs and attributes (subgraphs see every value of this scope)
        scope = {**outer, **local}
        for node, npb in nodes:
            inputs: list[Value | None] = []
            for name in npb.input:
                if not name:
                    inputs.append(None)
                    continue
                v = scope.get(name)
                if v is None:
                    raise self.error(
                        f"input {name!r}{where} is not produced by any node, graph input or "
                        "initializer (a missing initializer?)",
                        node,
                    )
                inputs.append(v)
            node.set_inputs(inputs)
            for a in npb.attribute:
                node.attrs[a.name] = self.attr(a, scope, node)
            g.append(node)

        try:
            g.sort()
        except IRError as e:
            raise self.error(e.message) from None

        for vi in gp.output:
            v = local.get(vi.name) or outer.get(vi.name)
            if v is None:
                raise self.error(f"graph output {vi.name!r}{where} is not produced by any node")
            if vi.HasField("type") and (v.dtype is None or v.shape is None):
                type_from_proto(v, vi.type)
            g.outputs.append(v)
        g.opaque["output_doc"] = {vi.name: vi.doc_string for vi in gp.output if vi.doc_string}
        return g

    def attr(self, a: onnx.AttributeProto, scope: dict[str, Value], node: Node) -> Attr:
        t = AttrType(a.type)
        try:
            if t is AttrType.FLOAT:
                val = float(a.f)
            elif t is AttrType.INT:
                val = int(a.i)
            elif t is AttrType.STRING:
                val = a.s.decode("utf-8", "surrogateescape")
            elif t is AttrType.TENSOR:
                val = _readonly(tensor_to_array(a.t, self.base))
            elif t is AttrType.GRAPH:
                val = self.graph(a.g, scope, parent=node.name)
            elif t is AttrType.FLOATS:
                val = tuple(float(x) for x in a.floats)
            elif t is AttrType.INTS:
                val = tuple(int(x) for x in a.ints)
            elif t is AttrType.STRINGS:
                val = tuple(s.decode("utf-8", "surrogateescape") for s in a.strings)
            elif t is AttrType.TENSORS:
                val = tuple(_readonly(tensor_to_array(x, self.base)) for x in a.tensors)
            elif t is AttrType.GRAPHS:
                val = tuple(self.graph(x, scope, parent=node.name) for x in a.graphs)
            else:  # sparse tensors, type protos, undefined: carried through as they are
                val = _copy(a)
        except ModelError:
            raise
        except Exception as e:
            raise self.error(f"cannot read attribute {a.name!r}: {e}", node) from None
        return Attr(a.name, t, val, ref_attr_name=a.ref_attr_name, doc_string=a.doc_string)


def _readonly(arr: np.ndarray) -> np.ndarray:
    """Freshly converted (or memory-mapped) arrays are owned by the IR: freeze them without
    copying."""
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr) if arr.ndim else arr.copy()
    if arr.flags.writeable:
        arr.flags.writeable = False
    return arr
