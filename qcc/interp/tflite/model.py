"""Read a .tflite flatbuffer into a small plain structure the TFLite interpreter executes.

The parse uses the ``tflite`` schema package (flatc-generated readers; ``import tflite.X``
yields the class ``X``). Only the main subgraph (index 0) is read: its tensors with their
constant data and quantization, its operators with their builtin options as a ``dict`` of
snake_case keys (``stride_w``, ``fused_activation_function`` as a name such as ``"RELU6"``,
``padding`` as ``"SAME"``/``"VALID"``), its inputs and outputs, and the model metadata.

Anything malformed (not a flatbuffer, no subgraph, an index out of range, a buffer that does
not fit the tensor) is a :class:`qcc.errors.ModelError` naming the file.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcc.errors import ModelError

# tflite TensorType -> numpy dtype (schema.fbs order)
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype(np.float32),
    1: np.dtype(np.float16),
    2: np.dtype(np.int32),
    3: np.dtype(np.uint8),
    4: np.dtype(np.int64),
    6: np.dtype(np.bool_),
    7: np.dtype(np.int16),
    9: np.dtype(np.int8),
    10: np.dtype(np.float64),
    12: np.dtype(np.uint64),
    15: np.dtype(np.uint32),
    16: np.dtype(np.uint16),
}

ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
PADDINGS = {0: "SAME", 1: "VALID"}


@dataclass(frozen=True)
class QParams:
    """Affine quantization of a tensor: ``real = scale * (q - zero_point)`` along ``dim``."""

    scale: np.ndarray  # float32, 1-D
    zero_point: np.ndarray  # int64, 1-D, same length
    dim: int = 0

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1

    @property
    def s(self) -> float:
        """The per-tensor scale (a Python float holding the float32 value)."""
        return float(self.scale[0])

    @property
    def zp(self) -> int:
        return int(self.zero_point[0])


@dataclass
class Tensor:
    """One tensor of the subgraph. ``data`` is set for constants (weights, bias, shapes)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None = None
    quant: QParams | None = None
    shape_signature: tuple[int, ...] | None = None

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def q(self) -> QParams:
        if self.quant is None:
            raise ModelError(f"tensor {self.name!r} has no quantization parameters")
        return self.quant

    def describe(self) -> str:
        q = ""
        if self.quant is not None:
            q = (
                f" s={self.quant.s:g} zp={self.quant.zp}"
                if self.quant.per_tensor
                else f" per-channel[{self.quant.scale.size}] dim {self.quant.dim}"
            )
        return f"{self.name} {self.dtype}{list(self.shape)}{q}"


@dataclass
class Operator:
    """One operator: builtin name (``"CONV_2D"``), tensor indices (-1: absent), options."""

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    @property
    def activation(self) -> str:
        return self.options.get("fused_activation_function", "NONE")

    @property
    def name(self) -> str:
        return f"#{self.index}"


@dataclass
class TFLiteModel:
    """The main subgraph of a .tflite, plus the model's description and metadata."""

    path: str
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    description: str = ""
    version: int = 3
    metadata: dict[str, bytes] = field(default_factory=dict)
    subgraphs: int = 1
    content: bytes = b""

    def describe(self, op: Operator) -> str:
        """``'name' (OP)`` of an operator, named after its first output tensor."""
        out = self.tensors[op.outputs[0]].name if op.outputs else op.name
        return f"{op.index} {out!r} ({op.op})"


# --------------------------------------------------------------------------- parsing


@functools.cache
def _enum_names(cls_name: str) -> dict[int, str]:
    import tflite

    cls = getattr(tflite, cls_name)
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", s).lower()


@functools.cache
def _option_fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """``(method, key, is_vector)`` of a generated options table class."""
    skip = {"Init", "GetRootAs"}
    names = [m for m in vars(cls) if m[:1].isupper() and callable(getattr(cls, m))]
    out = []
    for m in names:
        if m in skip or m.startswith("GetRootAs") or m.endswith("BufferHasIdentifier"):
            continue
        if m.endswith(("AsNumpy", "Length", "IsNone")):
            continue
        vector = f"{m}AsNumpy" in names or f"{m}Length" in names
        out.append((m, _snake(m), vector))
    return tuple(out)


def _read_options(table: Any, type_id: int, enum_cls: str) -> dict[str, Any]:
    import tflite

    if not type_id or table is None:
        return {}
    name = _enum_names(enum_cls).get(type_id)
    if name is None or not hasattr(tflite, name):
        return {}
    cls = getattr(tflite, name)
    opt = cls()
    opt.Init(table.Bytes, table.Pos)
    res: dict[str, Any] = {}
    for meth, key, vector in _option_fields(cls):
        if vector:
            arr = getattr(opt, f"{meth}AsNumpy", None)
            v = arr() if arr is not None else None
            res[key] = [] if isinstance(v, int) or v is None else [int(x) for x in v]
        else:
            v = getattr(opt, meth)()
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            res[key] = v
    if "fused_activation_function" in res:
        res["fused_activation_function"] = ACTIVATIONS.get(
            res["fused_activation_function"], str(res["fused_activation_function"])
        )
    if "padding" in res:
        res["padding"] = PADDINGS.get(res["padding"], str(res["padding"]))
    return res


def _vec(v: Any) -> np.ndarray:
    return np.zeros(0, np.int64) if isinstance(v, int) or v is None else np.asarray(v)


def _buffer_data(model: Any, buf: bytes, index: int) -> bytes | None:
    if index <= 0 or index >= model.BuffersLength():
        return None
    b = model.Buffers(index)
    off, size = b.Offset(), b.Size()
    if off > 1:
        if off + size > len(buf):
            raise ValueError(f"buffer {index} lies outside the file")
        return bytes(buf[off : off + size])
    data = b.DataAsNumpy()
    if isinstance(data, int) or data is None or len(data) == 0:
        return None
    return data.tobytes()


def parse(content: bytes, path: str = "<bytes>") -> TFLiteModel:
    """Parse .tflite ``content``; a :class:`ModelError` naming ``path`` when malformed."""
    try:
        return _parse(content, path)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"not a valid .tflite model: {type(e).__name__}: {e}", path=path) from None


def _parse(content: bytes, path: str) -> TFLiteModel:
    import tflite

    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ModelError("not a .tflite model (no 'TFL3' file identifier)", path=path)
    m = tflite.Model.GetRootAsModel(content, 0)
    if m.SubgraphsLength() < 1:
        raise ModelError("the model has no subgraph", path=path)
    g = m.Subgraphs(0)
    op_names = _enum_names("BuiltinOperator")
    codes = []
    for i in range(m.OperatorCodesLength()):
        c = m.OperatorCodes(i)
        code = max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
        name = op_names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            cc = c.CustomCode()
            name = f"CUSTOM:{cc.decode() if cc else '?'}"
        codes.append((name, c.Version()))
    tensors: list[Tensor] = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        tname = (t.Name() or b"").decode("utf-8", "replace") or f"tensor_{i}"
        ttype = t.Type()
        if ttype not in _DTYPES:
            raise ModelError(f"tensor {tname!r} has unsupported type {ttype}", path=path)
        dtype = _DTYPES[ttype]
        shape = tuple(int(x) for x in _vec(t.ShapeAsNumpy()))
        sig = _vec(t.ShapeSignatureAsNumpy())
        q = t.Quantization()
        quant = None
        if q is not None:
            sc = _vec(q.ScaleAsNumpy())
            if sc.size:
                zp = _vec(q.ZeroPointAsNumpy()).astype(np.int64)
                if zp.size == 0:
                    zp = np.zeros(sc.size, np.int64)
                if zp.size != sc.size:
                    raise ModelError(
                        f"tensor {tname!r} has {sc.size} scales but {zp.size} zero points",
                        path=path,
                    )
                quant = QParams(sc.astype(np.float32), zp, int(q.QuantizedDimension()))
        raw = _buffer_data(m, content, t.Buffer())
        data = None
        if raw is not None:
            n = math.prod(shape)
            if len(raw) != n * dtype.itemsize:
                raise ModelError(
                    f"tensor {tname!r}: buffer of {len(raw)} bytes does not hold "
                    f"{dtype}{list(shape)}",
                    path=path,
                )
            data = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
            data.setflags(write=False)
        tensors.append(
            Tensor(i, tname, shape, dtype, data, quant, tuple(int(x) for x in sig) or None)
        )
    nt = len(tensors)

    def idx(v: Any, what: str) -> tuple[int, ...]:
        r = tuple(int(x) for x in _vec(v))
        bad = [x for x in r if x >= nt or x < -1]
        if bad:
            raise ModelError(f"{what} refers to tensor {bad[0]}, the subgraph has {nt}", path=path)
        return r

    ops: list[Operator] = []
    for i in range(g.OperatorsLength()):
        o = g.Operators(i)
        ci = o.OpcodeIndex()
        if ci >= len(codes):
            raise ModelError(f"operator {i} has opcode index {ci} of {len(codes)}", path=path)
        name, version = codes[ci]
        opts = _read_options(o.BuiltinOptions(), o.BuiltinOptionsType(), "BuiltinOptions")
        ops.append(
            Operator(
                i,
                name,
                idx(o.InputsAsNumpy(), f"operator {i}"),
                idx(o.OutputsAsNumpy(), f"operator {i}"),
                opts,
                version,
            )
        )
    meta: dict[str, bytes] = {}
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        data = _buffer_data(m, content, md.Buffer())
        meta[(md.Name() or b"").decode("utf-8", "replace")] = data or b""
    return TFLiteModel(
        path=path,
        tensors=tensors,
        operators=ops,
        inputs=list(idx(g.InputsAsNumpy(), "subgraph inputs")),
        outputs=list(idx(g.OutputsAsNumpy(), "subgraph outputs")),
        description=(m.Description() or b"").decode("utf-8", "replace"),
        version=m.Version(),
        metadata=meta,
        subgraphs=m.SubgraphsLength(),
        content=bytes(content),
    )


def read(path_or_bytes: str | os.PathLike[str] | bytes) -> TFLiteModel:
    """Read a .tflite file (or its bytes)."""
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        return parse(bytes(path_or_bytes))
    p = Path(path_or_bytes)
    try:
        content = p.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read the model: {e.strerror or e}", path=p) from None
    return parse(content, str(p))
