"""What a model costs: parameters, multiply-accumulates of its linear layers, bytes.

Parameters are the elements of every constant a node reads that can hold weights (float, and
integers of at most 32 bits: quantized weights and biases; int64 shape constants are not
counted). MACs are counted for Conv
(``N * C_out * prod(out spatial) * C_in/group * prod(kernel)``), ConvTranspose (``N * C_in *
prod(in spatial) * C_out/group * prod(kernel)``), Gemm and MatMul (``prod(out) * K``); they
need concrete shapes, so the model's inputs are given concrete dimensions (those of a
calibration sample, or the declared static ones with a dynamic batch of 1) and ONNX shape
inference propagates them; other dynamic dimensions leave the MAC count unknown.
Bytes are the size of the serialized model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from qcc.frontend import lower_model
from qcc.ir import Model, constant_value


@dataclasses.dataclass(frozen=True)
class Cost:
    params: int
    macs: int | None  # None when shapes are not known
    bytes: int


def model_cost(model: Model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> Cost:
    """The cost of ``model`` with its inputs shaped ``input_shapes`` (declared shapes if None)."""
    params = 0
    seen: set[int] = set()
    for node in model.graph:
        for v in node.inputs:
            c = constant_value(v)
            if c is not None and id(v) not in seen and c.dtype.kind in "fiu" and c.itemsize <= 4:
                seen.add(id(v))
                params += int(c.size)
    proto = lower_model(model)
    try:
        size = proto.ByteSize()
    except Exception:  # above protobuf's 2 GB: count the tensors
        size = sum(int(constant_value(v).nbytes) for v in model.graph.initializers.values())
    return Cost(params, _macs(proto, input_shapes), size)


def _macs(proto: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None) -> int | None:
    inits = {t.name for t in proto.graph.initializer}
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        want = input_shapes.get(vi.name) if input_shapes else None
        for i, d in enumerate(dims):
            if want is not None and i < len(want):
                d.ClearField("dim_param")
                d.dim_value = int(want[i])
            elif want is None and i == 0 and not d.HasField("dim_value"):
                d.ClearField("dim_param")
                d.dim_value = 1  # a dynamic batch: count per sample
    for d in [*proto.graph.value_info]:
        proto.graph.value_info.remove(d)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:
        return None
    shapes: dict[str, list[int | None]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [
                d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim
            ]
    weights = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    weights[n.output[0]] = tuple(a.t.dims)
    total = 0
    for n in proto.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or n.domain:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        w = weights.get(n.input[1]) or tuple(shapes.get(n.input[1]) or ())
        x = shapes.get(n.input[0])
        y = shapes.get(n.output[0])
        if not w or any(d is None for d in (x or [None])) or any(d is None for d in (y or [None])):
            return None
        if n.op_type == "Conv":
            total += int(np.prod(y)) * int(np.prod(w[1:]))
        elif n.op_type == "ConvTranspose":
            total += int(np.prod(x)) * int(np.prod(w[1:]))
        elif n.op_type == "Gemm":
            k = x[0] if attrs.get("transA", 0) else x[1]
            total += int(np.prod(y)) * int(k)
        else:
            total += int(np.prod(y)) * int(x[-1])
    return total
