"""Build single-op .tflite models for the tests with LiteRT's own schema object API.

Independent of qcc's TFLite writer (``qcc.backend.tflite``) on purpose: the tests then check the
interpreter's reader and the backend's writer against each other and against LiteRT.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as s

from qcc.interp.tflite.verify import litert_delegated

TYPES = {
    np.dtype(np.float32): s.TensorType.FLOAT32,
    np.dtype(np.int32): s.TensorType.INT32,
    np.dtype(np.int8): s.TensorType.INT8,
    np.dtype(np.uint8): s.TensorType.UINT8,
    np.dtype(np.int64): s.TensorType.INT64,
    np.dtype(np.int16): s.TensorType.INT16,
}


class Builder:
    """Tensors, buffers and operators of one subgraph; :meth:`build` gives .tflite bytes."""

    def __init__(self) -> None:
        self.tensors: list = []
        self.buffers: list = [s.BufferT()]
        self.ops: list = []
        self.codes: dict[int, int] = {}
        self.opcodes: list = []

    def tensor(self, name, shape, dtype, data=None, scale=None, zp=None, dim=0) -> int:
        t = s.TensorT()
        t.name = name
        t.shape = list(shape)
        t.type = TYPES[np.dtype(dtype)]
        t.buffer = 0
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data, dtype=dtype).tobytes(), np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = [float(x) for x in np.atleast_1d(np.asarray(scale, np.float32))]
            zps = np.atleast_1d(np.asarray(0 if zp is None else zp, np.int64))
            if zps.size == 1 and len(q.scale) > 1:
                zps = np.repeat(zps, len(q.scale))
            q.zeroPoint = [int(x) for x in zps]
            q.quantizedDimension = dim
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name, data, scale=None, zp=None, dim=0) -> int:
        data = np.asarray(data)
        return self.tensor(name, data.shape, data.dtype, data, scale, zp, dim)

    def op(self, opname: str, inputs, outputs, options: str | None = None, version=1, **opts):
        code = getattr(s.BuiltinOperator, opname)
        if code not in self.codes:
            c = s.OperatorCodeT()
            c.builtinCode = code
            c.deprecatedBuiltinCode = min(code, 127)
            c.version = version
            self.codes[code] = len(self.opcodes)
            self.opcodes.append(c)
        o = s.OperatorT()
        o.opcodeIndex = self.codes[code]
        o.inputs = list(inputs)
        o.outputs = list(outputs)
        if options is not None:
            o.builtinOptionsType = getattr(s.BuiltinOptions, options)
            ob = getattr(s, options + "T")()
            for k, v in opts.items():
                if not hasattr(ob, k):
                    raise AttributeError(f"{options} has no field {k}")
                setattr(ob, k, v)
            o.builtinOptions = ob
        self.ops.append(o)

    def build(self, inputs, outputs) -> bytes:
        g = s.SubGraphT()
        g.tensors = self.tensors
        g.inputs = list(inputs)
        g.outputs = list(outputs)
        g.operators = self.ops
        g.name = "main"
        m = s.ModelT()
        m.version = 3
        m.operatorCodes = self.opcodes
        m.subgraphs = [g]
        m.buffers = self.buffers
        m.description = "qcc test"
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


RESOLVERS = {"tflite-xnnpack": "BUILTIN", "tflite-ref": "BUILTIN_REF"}


def litert(content: bytes, feeds: list[np.ndarray], profile: str = "tflite-xnnpack"):
    """Run ``content`` in LiteRT under the resolver of ``profile``; the outputs in order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=content,
        experimental_op_resolver_type=getattr(OpResolverType, RESOLVERS[profile]),
    )
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), feeds, strict=True):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


def delegated_ops(content: bytes) -> set[int]:
    """Indices of the operators LiteRT's default resolver hands to the XNNPACK delegate, read
    from the partition LiteRT reports (the same reading ``qcc verify`` makes)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=content, experimental_op_resolver_type=OpResolverType.AUTO)
    it.allocate_tensors()
    return litert_delegated(it)
