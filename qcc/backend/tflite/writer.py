"""The .tflite flatbuffer writer: a small in-memory model serialized with the ``tflite`` schema.

The lowering (``lower.py``) fills a :class:`TFLiteModel` (tensors, constant buffers, operators,
graph inputs and outputs, metadata); :meth:`TFLiteModel.serialize` turns it into bytes with the
builder functions of the ``tflite`` PyPI package (flatc-generated Python for TFLite's schema).
``import tflite.X`` yields the class of the same name, so the builder modules are loaded by
name (:func:`_mod`).

File conventions (what the TFLite converter writes and what LiteRT expects): file identifier
``TFL3``, schema version 3, buffer 0 empty (tensors without data point at it), constant data
16-byte aligned, ``deprecated_builtin_code = min(code, 127)`` next to ``builtin_code``. One
subgraph, with a ``serving_default`` signature. Everything is emitted in creation order, so the
same model always gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np

TENSOR_TYPES: dict[str, int] = {
    "float32": 0,
    "float16": 1,
    "int32": 2,
    "uint8": 3,
    "int64": 4,
    "bool": 6,
    "int16": 7,
    "int8": 9,
}

ACTIVATIONS: dict[str, int] = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PADDING: dict[str, int] = {"SAME": 0, "VALID": 1}


@functools.cache
def _mod(name: str) -> Any:
    """A module of the ``tflite`` schema package (``tflite.Model`` is the class, not the module).

    The package's ``__init__`` imports all of its ~200 modules (~0.1 s) and the writer needs
    about 20, so unless the package is already loaded each module file is loaded on its own
    (the generated builder modules import nothing but ``flatbuffers``)."""
    if "tflite" in sys.modules:
        return importlib.import_module(f"tflite.{name}")
    spec = importlib.util.find_spec("tflite")
    if spec is None or not spec.submodule_search_locations:
        return importlib.import_module(f"tflite.{name}")
    path = Path(next(iter(spec.submodule_search_locations))) / f"{name}.py"
    mod_spec = importlib.util.spec_from_file_location(f"_qcc_tflite_schema.{name}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def builtin_code(op: str) -> int:
    """The ``BuiltinOperator`` enum value of ``op`` (e.g. ``"CONV_2D"``)."""
    return int(getattr(_mod("BuiltinOperator").BuiltinOperator, op))


@dataclasses.dataclass(frozen=True)
class Quant:
    """Quantization parameters of one tensor: per tensor (one scale) or per channel on ``axis``."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @classmethod
    def of(cls, scale: Any, zero_point: Any, axis: int = 0) -> Quant:
        s = np.asarray(scale, dtype=np.float32).reshape(-1)
        z = np.asarray(zero_point, dtype=np.int64).reshape(-1)
        if z.size == 1 and s.size > 1:
            z = np.repeat(z, s.size)
        # one scale: quantized_dimension 0. LiteRT's kernels ignore the field on a per-tensor
        # tensor, but its XNNPACK delegate refuses an 8-bit activation whose field is not 0
        # (xnnpack_delegate.cc, CheckTensor*Type): an ONNX DQ's axis copied here kept every
        # ADD/SUB/MUL with a per-tensor constant out of XNNPACK.
        return cls(tuple(s.tolist()), tuple(z.tolist()), int(axis) if s.size > 1 else 0)

    @property
    def per_tensor(self) -> bool:
        return len(self.scale) == 1


@dataclasses.dataclass
class Tensor:
    """A tensor of the subgraph: physical (NHWC) shape, type, constant buffer, quantization."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer: int = 0
    quant: Quant | None = None


@dataclasses.dataclass
class Operator:
    """One operator: builtin name, tensor indices (-1 = omitted optional input), options."""

    op: str
    inputs: list[int]
    outputs: list[int]
    options: tuple[str, Mapping[str, Any]] | None = None
    version: int = 1


class TFLiteModel:
    """A one-subgraph TFLite model under construction."""

    def __init__(self, description: str = "qcc") -> None:
        self.description = description
        self.buffers: list[bytes] = [b""]
        self.tensors: list[Tensor] = []
        self.operators: list[Operator] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.metadata: dict[str, str] = {}
        self._names: set[str] = set()

    def unique_name(self, name: str) -> str:
        """``name``, or ``name_1``, ``name_2`` ... when it is already taken."""
        if name not in self._names:
            return name
        i = 1
        while f"{name}_{i}" in self._names:
            i += 1
        return f"{name}_{i}"

    def add_tensor(
        self,
        name: str,
        shape: Sequence[int],
        dtype: str,
        *,
        data: np.ndarray | None = None,
        quant: Quant | None = None,
    ) -> int:
        """Add a tensor (a constant when ``data`` is given); returns its index."""
        name = self.unique_name(name)
        self._names.add(name)
        buffer = 0
        if data is not None:
            arr = np.ascontiguousarray(data, dtype=np.dtype(dtype))
            if tuple(arr.shape) != tuple(shape):
                arr = arr.reshape(tuple(shape))
            self.buffers.append(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
            buffer = len(self.buffers) - 1
        self.tensors.append(Tensor(name, tuple(int(d) for d in shape), dtype, buffer, quant))
        return len(self.tensors) - 1

    def add_op(
        self,
        op: str,
        inputs: Sequence[int],
        outputs: Sequence[int],
        options: tuple[str, Mapping[str, Any]] | None = None,
        version: int = 1,
    ) -> Operator:
        """Append an operator (operators must be added in execution order)."""
        o = Operator(op, list(inputs), list(outputs), options, version)
        self.operators.append(o)
        return o

    # -- serialization -------------------------------------------------------------------

    def serialize(self) -> bytes:
        """The flatbuffer bytes of the model (deterministic)."""
        size = sum(len(b) + 16 for b in self.buffers) + 64 * (len(self.tensors) + 16)
        b = flatbuffers.Builder(size + 1024)

        opcodes: dict[tuple[str, int], int] = {}
        for o in self.operators:
            opcodes.setdefault((o.op, o.version), len(opcodes))

        buffers = [self._buffer(b, data) for data in self.buffers]
        tensors = [self._tensor(b, t) for t in self.tensors]
        ops = [self._operator(b, o, opcodes[(o.op, o.version)]) for o in self.operators]

        M = _mod("SubGraph")
        name = b.CreateString("main")
        t_vec = _offsets(b, M.SubGraphStartTensorsVector, tensors)
        o_vec = _offsets(b, M.SubGraphStartOperatorsVector, ops)
        in_vec = _int32s(b, self.inputs)
        out_vec = _int32s(b, self.outputs)
        M.SubGraphStart(b)
        M.SubGraphAddTensors(b, t_vec)
        M.SubGraphAddInputs(b, in_vec)
        M.SubGraphAddOutputs(b, out_vec)
        M.SubGraphAddOperators(b, o_vec)
        M.SubGraphAddName(b, name)
        subgraph = M.SubGraphEnd(b)

        signature = self._signature(b)

        C = _mod("OperatorCode")
        codes = []
        for op, version in opcodes:
            code = builtin_code(op)
            C.OperatorCodeStart(b)
            C.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            C.OperatorCodeAddBuiltinCode(b, code)
            C.OperatorCodeAddVersion(b, version)
            codes.append(C.OperatorCodeEnd(b))

        metas = []
        MD = _mod("Metadata")
        for key, value in self.metadata.items():  # buffers after the model's own
            buffers.append(self._buffer(b, value.encode()))
            n = b.CreateString(key)
            MD.MetadataStart(b)
            MD.MetadataAddName(b, n)
            MD.MetadataAddBuffer(b, len(buffers) - 1)
            metas.append(MD.MetadataEnd(b))

        M = _mod("Model")
        desc = b.CreateString(self.description)
        codes_vec = _offsets(b, M.ModelStartOperatorCodesVector, codes)
        sub_vec = _offsets(b, M.ModelStartSubgraphsVector, [subgraph])
        buf_vec = _offsets(b, M.ModelStartBuffersVector, buffers)
        meta_vec = _offsets(b, M.ModelStartMetadataVector, metas) if metas else None
        sig_vec = _offsets(b, M.ModelStartSignatureDefsVector, [signature])
        M.ModelStart(b)
        M.ModelAddVersion(b, 3)
        M.ModelAddOperatorCodes(b, codes_vec)
        M.ModelAddSubgraphs(b, sub_vec)
        M.ModelAddDescription(b, desc)
        M.ModelAddBuffers(b, buf_vec)
        if meta_vec is not None:
            M.ModelAddMetadata(b, meta_vec)
        M.ModelAddSignatureDefs(b, sig_vec)
        b.Finish(M.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _buffer(b: flatbuffers.Builder, data: bytes) -> int:
        B = _mod("Buffer")
        vec = None
        if data:
            # Buffer.data is force_align 16 in the schema: XNNPACK and mmap readers rely on it.
            b.StartVector(1, len(data), 16)
            b.head -= len(data)
            b.Bytes[b.head : b.head + len(data)] = data
            vec = b.EndVector()
        B.BufferStart(b)
        if vec is not None:
            B.BufferAddData(b, vec)
        return B.BufferEnd(b)

    def _tensor(self, b: flatbuffers.Builder, t: Tensor) -> int:
        T = _mod("Tensor")
        name = b.CreateString(t.name)
        shape = _int32s(b, t.shape)
        quant = None
        if t.quant is not None:
            Q = _mod("QuantizationParameters")
            scale = b.CreateNumpyVector(np.asarray(t.quant.scale, dtype=np.float32))
            zp = b.CreateNumpyVector(np.asarray(t.quant.zero_point, dtype=np.int64))
            Q.QuantizationParametersStart(b)
            Q.QuantizationParametersAddScale(b, scale)
            Q.QuantizationParametersAddZeroPoint(b, zp)
            Q.QuantizationParametersAddQuantizedDimension(b, t.quant.axis)
            quant = Q.QuantizationParametersEnd(b)
        T.TensorStart(b)
        T.TensorAddShape(b, shape)
        T.TensorAddType(b, TENSOR_TYPES[t.dtype])
        T.TensorAddBuffer(b, t.buffer)
        T.TensorAddName(b, name)
        if quant is not None:
            T.TensorAddQuantization(b, quant)
        return T.TensorEnd(b)

    @staticmethod
    def _operator(b: flatbuffers.Builder, o: Operator, opcode: int) -> int:
        opts = None
        opts_type = 0
        if o.options is not None:
            table, fields = o.options
            opts = _options(b, table, fields)
            opts_type = int(getattr(_mod("BuiltinOptions").BuiltinOptions, table))
        op_mod = _mod("Operator")
        ins = _int32s(b, o.inputs)
        outs = _int32s(b, o.outputs)
        op_mod.OperatorStart(b)
        op_mod.OperatorAddOpcodeIndex(b, opcode)
        op_mod.OperatorAddInputs(b, ins)
        op_mod.OperatorAddOutputs(b, outs)
        if opts is not None:
            op_mod.OperatorAddBuiltinOptionsType(b, opts_type)
            op_mod.OperatorAddBuiltinOptions(b, opts)
        return op_mod.OperatorEnd(b)

    def _signature(self, b: flatbuffers.Builder) -> int:
        TM = _mod("TensorMap")

        def maps(indices: list[int]) -> list[int]:
            out = []
            for i in indices:
                n = b.CreateString(self.tensors[i].name)
                TM.TensorMapStart(b)
                TM.TensorMapAddName(b, n)
                TM.TensorMapAddTensorIndex(b, i)
                out.append(TM.TensorMapEnd(b))
            return out

        S = _mod("SignatureDef")
        ins = _offsets(b, S.SignatureDefStartInputsVector, maps(self.inputs))
        outs = _offsets(b, S.SignatureDefStartOutputsVector, maps(self.outputs))
        key = b.CreateString("serving_default")
        S.SignatureDefStart(b)
        S.SignatureDefAddInputs(b, ins)
        S.SignatureDefAddOutputs(b, outs)
        S.SignatureDefAddSignatureKey(b, key)
        S.SignatureDefAddSubgraphIndex(b, 0)
        return S.SignatureDefEnd(b)


def _int32s(b: flatbuffers.Builder, values: Any) -> int:
    """An int32 vector (tensor indices, shapes, option lists)."""
    return b.CreateNumpyVector(np.asarray(values, dtype=np.int32))


def _offsets(b: flatbuffers.Builder, start: Any, items: Sequence[int]) -> int:
    start(b, len(items))
    for off in reversed(items):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _options(b: flatbuffers.Builder, table: str, fields: Mapping[str, Any]) -> int:
    """Build the options table ``table`` (e.g. ``Conv2DOptions``) from ``{Field: value}``."""
    M = _mod(table)
    vectors = {}
    for key, value in fields.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            vectors[key] = _int32s(b, value)
    getattr(M, f"{table}Start")(b)
    for key, value in fields.items():
        add = getattr(M, f"{table}Add{key}")
        add(b, vectors.get(key, value))
    return getattr(M, f"{table}End")(b)
