"""Element types of IR values, numbered exactly as ONNX's ``TensorProto.DataType``.

The IR must not depend on the ``onnx`` package, so it keeps its own enum; the numbering is
ONNX's so the frontend and backend convert with ``DType(int)`` and ``int(dtype)``.
"""

from __future__ import annotations

import enum

import numpy as np


class DType(enum.IntEnum):
    """Tensor element type; values equal ONNX ``TensorProto.DataType``."""

    UNDEFINED = 0
    FLOAT = 1
    UINT8 = 2
    INT8 = 3
    UINT16 = 4
    INT16 = 5
    INT32 = 6
    INT64 = 7
    STRING = 8
    BOOL = 9
    FLOAT16 = 10
    DOUBLE = 11
    UINT32 = 12
    UINT64 = 13
    COMPLEX64 = 14
    COMPLEX128 = 15
    BFLOAT16 = 16
    FLOAT8E4M3FN = 17
    FLOAT8E4M3FNUZ = 18
    FLOAT8E5M2 = 19
    FLOAT8E5M2FNUZ = 20
    UINT4 = 21
    INT4 = 22
    FLOAT4E2M1 = 23
    FLOAT8E8M0 = 24
    UINT2 = 25
    INT2 = 26

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype that holds this type (``ml_dtypes`` for the exotic float/int types)."""
        if self in _TO_NUMPY:
            return _TO_NUMPY[self]
        name = _ML_DTYPES_NAMES.get(self)
        if name is not None:
            import ml_dtypes  # an onnx dependency; only needed for exotic types

            return np.dtype(getattr(ml_dtypes, name))
        raise ValueError(f"no numpy dtype for {self.name}")

    @property
    def is_float(self) -> bool:
        return self in _FLOATS

    @property
    def is_integer(self) -> bool:
        return self in _INTEGERS

    @property
    def itemsize(self) -> float:
        """Bytes per element (fractional for the 4-bit and 2-bit types)."""
        if self in (DType.UINT4, DType.INT4, DType.FLOAT4E2M1):
            return 0.5
        if self in (DType.UINT2, DType.INT2):
            return 0.25
        if self is DType.STRING:
            return 0.0
        return float(self.numpy.itemsize)

    @classmethod
    def from_numpy(cls, dtype: np.dtype | type) -> DType:
        dt = np.dtype(dtype)
        if dt.kind in ("U", "S", "O"):
            return cls.STRING
        for k, v in _TO_NUMPY.items():
            if v == dt:
                return k
        for k, name in _ML_DTYPES_NAMES.items():
            if dt.name == name:
                return k
        raise ValueError(f"numpy dtype {dt} has no ONNX element type")

    @property
    def short(self) -> str:
        """Lower-case name used in reports (``float32``, ``int8``...)."""
        return _SHORT.get(self, self.name.lower())


_TO_NUMPY: dict[DType, np.dtype] = {
    DType.FLOAT: np.dtype(np.float32),
    DType.UINT8: np.dtype(np.uint8),
    DType.INT8: np.dtype(np.int8),
    DType.UINT16: np.dtype(np.uint16),
    DType.INT16: np.dtype(np.int16),
    DType.INT32: np.dtype(np.int32),
    DType.INT64: np.dtype(np.int64),
    DType.STRING: np.dtype(object),
    DType.BOOL: np.dtype(np.bool_),
    DType.FLOAT16: np.dtype(np.float16),
    DType.DOUBLE: np.dtype(np.float64),
    DType.UINT32: np.dtype(np.uint32),
    DType.UINT64: np.dtype(np.uint64),
    DType.COMPLEX64: np.dtype(np.complex64),
    DType.COMPLEX128: np.dtype(np.complex128),
}

_ML_DTYPES_NAMES: dict[DType, str] = {
    DType.BFLOAT16: "bfloat16",
    DType.FLOAT8E4M3FN: "float8_e4m3fn",
    DType.FLOAT8E4M3FNUZ: "float8_e4m3fnuz",
    DType.FLOAT8E5M2: "float8_e5m2",
    DType.FLOAT8E5M2FNUZ: "float8_e5m2fnuz",
    DType.UINT4: "uint4",
    DType.INT4: "int4",
    DType.FLOAT4E2M1: "float4_e2m1fn",
    DType.FLOAT8E8M0: "float8_e8m0fnu",
    DType.UINT2: "uint2",
    DType.INT2: "int2",
}

_FLOATS = frozenset(
    {
        DType.FLOAT,
        DType.FLOAT16,
        DType.DOUBLE,
        DType.BFLOAT16,
        DType.FLOAT8E4M3FN,
        DType.FLOAT8E4M3FNUZ,
        DType.FLOAT8E5M2,
        DType.FLOAT8E5M2FNUZ,
        DType.FLOAT4E2M1,
        DType.FLOAT8E8M0,
    }
)
_INTEGERS = frozenset(
    {
        DType.UINT8,
        DType.INT8,
        DType.UINT16,
        DType.INT16,
        DType.INT32,
        DType.INT64,
        DType.UINT32,
        DType.UINT64,
        DType.UINT4,
        DType.INT4,
        DType.UINT2,
        DType.INT2,
    }
)
_SHORT = {DType.FLOAT: "float32", DType.DOUBLE: "float64", DType.FLOAT16: "float16"}
