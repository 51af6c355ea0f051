"""Read an ONNX file safely into a ModelProto, then lift it into the IR.

Order of work, chosen so that bad input fails early and cheaply:

1. parse the protobuf without external data (a truncated or non-ONNX file fails here);
2. check the opsets (unsupported versions fail here);
3. run ONNX shape inference on the still-small proto (external tensors are not loaded yet, so
   this also works for models above 2 GB) and remember which values it could not type;
4. check every external-data reference (relative, inside the model's directory after resolving
   symlinks, within the file);
5. lift to the IR (:mod:`qcc.frontend.lift`), which reports dangling inputs and cycles and
   memory-maps external tensors straight into read-only numpy arrays, so a model above 2 GB is
   never held in a protobuf message (protobuf cannot serialize one) nor copied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from qcc.errors import ModelError
from qcc.ir import Model

log = logging.getLogger(__name__)

# ai.onnx opsets qcc accepts. 7 is the oldest onnxruntime runs; 26 is the newest that both the
# onnx and onnxruntime versions pinned in pyproject.toml support (tests/test_reader.py checks
# that onnxruntime still loads it).
MIN_OPSET = 7
MAX_OPSET = 26

_PROTOBUF_LIMIT = 2**31 - 1


@dataclasses.dataclass
class ShapeReport:
    """What ONNX shape inference could not resolve."""

    error: str | None = None  # inference failed as a whole
    unknown: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (value, node)
    partial: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # rank known only


def read_model(
    path: str | os.PathLike[str], *, opset: Callable[[int], int | None] | None = None
) -> Model:
    """Read, check and lift the ONNX model at ``path``. Raises :class:`ModelError`.

    ``opset``, called with the file's ai.onnx version, returns the version to convert the
    model to (None: keep it). The protobuf is converted before it is lifted, which saves a
    second lift and shape inference. A model with external data, or one the converter
    refuses, is lifted as it is: the caller converts the lifted model with
    :func:`qcc.frontend.opset.convert_opset`, after the model's own checks, so a broken
    model gets their diagnostic rather than the converter's.
    """
    from qcc.frontend.lift import lift_model

    p = Path(path)
    proto = load_proto(p)
    check_opsets(proto, p)
    source = _ai_onnx_version(proto)
    want = opset(source) if opset is not None and source is not None else None
    if want is not None and want != source and not _has_external_data(proto):
        from qcc.frontend.opset import convert_proto

        # a refusal is reported by the caller's convert_opset, after the model's own checks
        with contextlib.suppress(ModelError):
            proto = convert_proto(proto, want, source=source, path=p)
    proto, report = infer_shapes(proto)
    check_external_data(proto, p)
    model = lift_model(proto, path=p)
    model.opaque["shape_report"] = report
    _fill_shape_report(model, report)
    return model


def load_proto(path: Path) -> onnx.ModelProto:
    """Parse ``path`` as a ModelProto without loading external data."""
    if not path.exists():
        raise ModelError("no such file", path=path)
    if path.is_dir():
        raise ModelError("is a directory, not an ONNX file", path=path)
    try:
        size = path.stat().st_size
        if size > _PROTOBUF_LIMIT:
            raise ModelError(
                f"the file is {size / 2**30:.1f} GB; a single protobuf file cannot exceed 2 GB",
                path=path,
                hint="save the model with external data (onnx.save_model(..., "
                "save_as_external_data=True))",
            )
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read the file: {e.strerror}", path=path) from None
    if not data:
        raise ModelError("the file is empty, not an ONNX model", path=path)
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelError(
            f"not an ONNX model: the file does not parse as an ONNX protobuf ({e}); it may be "
            "truncated or of another format",
            path=path,
        ) from None
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise ModelError(
            "not an ONNX model: no graph or no IR version (the file may be of another format)",
            path=path,
        )
    if not proto.opset_import:
        raise ModelError("the model declares no opset_import; the file may be truncated", path=path)
    if proto.ir_version > onnx.IR_VERSION:
        raise ModelError(
            f"IR version {proto.ir_version} is newer than this onnx package knows "
            f"({onnx.IR_VERSION})",
            path=path,
        )
    return proto


def _ai_onnx_version(proto: onnx.ModelProto) -> int | None:
    versions = {op.domain or "ai.onnx": op.version for op in proto.opset_import}
    return versions.get("ai.onnx")


def _has_external_data(proto: onnx.ModelProto) -> bool:
    return any(
        t.data_location == onnx.TensorProto.EXTERNAL
        for t in external_data_helper._get_all_tensors(proto)
    )


def check_opsets(proto: onnx.ModelProto, path: Path) -> None:
    v = _ai_onnx_version(proto)
    if v is None:
        return  # only custom domains: nothing standard to check
    if v < MIN_OPSET or v > MAX_OPSET:
        raise ModelError(
            f"unsupported opset: ai.onnx version {v}; qcc supports opsets "
            f"{MIN_OPSET} to {MAX_OPSET}",
            path=path,
            hint="convert the model with onnx.version_converter.convert_version(model, 17)",
        )


def infer_shapes(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, ShapeReport]:
    """Run ONNX shape inference; on failure keep the model's own annotations."""
    report = ShapeReport()
    try:
        inferred = onnx.shape_inference.infer_shapes(
            proto, check_type=False, strict_mode=False, data_prop=True
        )
    except Exception as e:  # onnx raises several unrelated types here
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        report.error = msg
        log.warning("ONNX shape inference failed (%s); using the model's own types", msg)
        return proto, report
    return inferred, report


def _fill_shape_report(model: Model, report: ShapeReport) -> None:
    for node in model.graph:
        for v in node.outputs:
            if not v.name or v.opaque_type is not None:
                continue
            if v.dtype is None or v.shape is None:
                report.unknown.append((v.name, node.describe()))
            elif any(d is None for d in v.shape):
                report.partial.append((v.name, node.describe()))


def check_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Validate every external-data reference before anything is read through it."""
    base = path.parent.resolve()
    for t in external_data_helper._get_all_tensors(proto):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = external_data_helper.ExternalDataInfo(t)
        loc = info.location
        what = f"tensor {t.name!r}" if t.name else "a tensor"
        if not loc:
            raise ModelError(f"{what} is stored externally but names no file", path=path)
        if os.path.isabs(loc) or Path(loc).drive:
            raise ModelError(
                f"{what} points at external data by absolute path {loc!r}; refusing it "
                "(external data must live beside the model)",
                path=path,
            )
        target = (base / loc).resolve()
        if not target.is_relative_to(base):
            raise ModelError(
                f"{what} points at external data {loc!r} outside the model's directory; "
                "refusing it (path traversal)",
                path=path,
            )
        if not target.is_file():
            raise ModelError(f"{what}: external data file {loc!r} does not exist", path=path)
        size = target.stat().st_size
        offset = int(info.offset or 0)
        length = int(info.length) if info.length else size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise ModelError(
                f"{what}: external data range [{offset}, {offset + length}) lies beyond the end "
                f"of {loc!r} ({size} bytes)",
                path=path,
            )
