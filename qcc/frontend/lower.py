"""Lower qcc's IR back to an ``onnx.ModelProto``.

The result depends only on the IR (no ids, no clocks), so the same IR always serializes to the
same bytes. Graph inputs and outputs keep their declared types; intermediate value types are
not written (onnxruntime and ONNX re-infer them, and a stale annotation would be worse than
none). Constants are written with ``numpy_helper.from_array`` (raw data), which preserves every
bit of every value.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
import onnx
from onnx import numpy_helper

from qcc.errors import ModelError
from qcc.ir import Attr, AttrType, DType, Graph, Model, Node, Value


class ExternalSink:
    """Streams large constants into one external-data file while a model is lowered, so a
    model above 2 GB never exists as one protobuf message. Offsets are page-aligned (onnxruntime
    can then map the file) and deterministic."""

    def __init__(self, file: BinaryIO, location: str, *, threshold: int = 1024, align: int = 4096):
        self.file = file
        self.location = location
        self.threshold = threshold
        self.align = align

    def wants(self, arr: np.ndarray) -> bool:
        return arr.dtype != object and arr.nbytes >= self.threshold

    def put(self, arr: np.ndarray, name: str) -> onnx.TensorProto:
        pad = -self.file.tell() % self.align
        if pad:
            self.file.write(b"\0" * pad)
        offset = self.file.tell()
        np.require(arr, requirements="C").tofile(self.file)
        t = onnx.TensorProto(name=name, data_type=int(DType.from_numpy(arr.dtype)))
        t.dims.extend(int(d) for d in arr.shape)
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (
            ("location", self.location),
            ("offset", str(offset)),
            ("length", str(arr.nbytes)),
        ):
            t.external_data.add(key=k, value=v)
        return t


def lower_model(model: Model, *, sink: ExternalSink | None = None) -> onnx.ModelProto:
    """The ModelProto of ``model``; with ``sink``, large constants go to its file."""
    mp = onnx.ModelProto()
    mp.ir_version = model.ir_version
    mp.producer_name = model.producer_name
    mp.producer_version = model.producer_version
    mp.domain = model.domain
    mp.model_version = model.model_version
    mp.doc_string = model.doc_string
    for domain, version in model.opset_imports.items():
        mp.opset_import.append(onnx.helper.make_opsetid(domain, version))
    for k, v in model.metadata_props.items():
        mp.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    mp.graph.CopyFrom(lower_graph(model.graph, sink))
    for f in model.functions:
        mp.functions.append(f)
    for t in model.opaque.get("training_info", ()):
        mp.training_info.append(t)
    return mp


def array_to_tensor(
    arr: np.ndarray, name: str, sink: ExternalSink | None = None
) -> onnx.TensorProto:
    if sink is not None and sink.wants(arr):
        return sink.put(arr, name)
    if arr.dtype == object:
        return onnx.helper.make_tensor(
            name,
            onnx.TensorProto.STRING,
            arr.shape,
            [s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s for s in arr.flat],
        )
    return numpy_helper.from_array(np.require(arr, requirements="C"), name)


def value_info(v: Value) -> onnx.ValueInfoProto:
    vi = onnx.ValueInfoProto(name=v.name, doc_string=v.doc_string)
    if v.opaque_type is not None:
        vi.type.CopyFrom(v.opaque_type)
        return vi
    if v.dtype is None:
        raise ModelError(f"cannot write graph input/output {v.name!r}: its element type is unknown")
    tt = vi.type.tensor_type
    tt.elem_type = int(v.dtype)
    if v.shape is not None:
        shape = tt.shape
        shape.SetInParent()  # a scalar has a shape with no dims, which is not "no shape"
        for d in v.shape:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            elif isinstance(d, str):
                dim.dim_param = d
    return vi


def lower_graph(g: Graph, sink: ExternalSink | None = None) -> onnx.GraphProto:
    gp = onnx.GraphProto(name=g.name, doc_string=g.doc_string)
    for v in g.initializers.values():
        gp.initializer.append(array_to_tensor(v.const, v.name, sink))
    for v in g.inputs:
        gp.input.append(value_info(v))
    docs = g.opaque.get("output_doc", {})
    for v in g.outputs:
        vi = value_info(v)
        if not vi.doc_string and v.name in docs:
            vi.doc_string = docs[v.name]
        gp.output.append(vi)
    for n in g:
        gp.node.append(lower_node(n, sink))
    return gp


def lower_node(n: Node, sink: ExternalSink | None = None) -> onnx.NodeProto:
    np_ = onnx.NodeProto(op_type=n.op_type, domain=n.domain, name=n.name, doc_string=n.doc_string)
    if n.overload:
        np_.overload = n.overload
    np_.input.extend(v.name if v is not None else "" for v in n.inputs)
    np_.output.extend(v.name for v in n.outputs)
    for a in n.attrs.values():
        np_.attribute.append(lower_attr(a, sink))
    for k, val in n.meta.get("onnx_metadata_props", {}).items():
        np_.metadata_props.append(onnx.StringStringEntryProto(key=k, value=val))
    return np_


def lower_attr(a: Attr, sink: ExternalSink | None = None) -> onnx.AttributeProto:
    """An attribute; tensors in attributes stay inline (only subgraph constants use ``sink``)."""
    if isinstance(a.value, onnx.AttributeProto):  # opaque kinds read by the frontend
        ap = onnx.AttributeProto()
        ap.CopyFrom(a.value)
        return ap
    ap = onnx.AttributeProto(name=a.name, type=int(a.type), doc_string=a.doc_string)
    if a.ref_attr_name:
        ap.ref_attr_name = a.ref_attr_name
    t = a.type
    if t is AttrType.FLOAT:
        ap.f = a.value
    elif t is AttrType.INT:
        ap.i = a.value
    elif t is AttrType.STRING:
        ap.s = a.value.encode("utf-8", "surrogateescape")
    elif t is AttrType.TENSOR:
        ap.t.CopyFrom(array_to_tensor(a.value, ""))
    elif t is AttrType.GRAPH:
        ap.g.CopyFrom(lower_graph(a.value, sink))
    elif t is AttrType.FLOATS:
        ap.floats.extend(a.value)
    elif t is AttrType.INTS:
        ap.ints.extend(a.value)
    elif t is AttrType.STRINGS:
        ap.strings.extend(s.encode("utf-8", "surrogateescape") for s in a.value)
    elif t is AttrType.TENSORS:
        ap.tensors.extend(array_to_tensor(x, "") for x in a.value)
    elif t is AttrType.GRAPHS:
        ap.graphs.extend(lower_graph(x, sink) for x in a.value)
    else:
        raise ModelError(f"cannot write attribute {a.name!r} of type {t.name}")
    return ap
