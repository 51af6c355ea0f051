"""Write models atomically: temporary directory, ``onnx.checker``, then rename into place.

The model (and its external-data file, for models above 2 GB or when asked) is written into a
temporary directory beside the destination, checked with ``onnx.checker.check_model`` on the
path (which handles external data), and only then moved over the destination with
``os.replace``, data file first. A failed check, an exception or Ctrl-C leaves the destination
untouched and no temporary file behind. Serialization is deterministic.

:func:`save_model` lowers an IR model and streams its large constants straight into the data
file (:class:`~qcc.frontend.lower.ExternalSink`), so a model above 2 GB never exists as one
protobuf message; :func:`write_model` writes an existing ModelProto.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import EncodeError
from onnx import external_data_helper

from qcc.errors import ModelError, QccError
from qcc.frontend.lower import ExternalSink, lower_model
from qcc.ir import Graph, Model

# Above this size the constants go to an external-data file (protobuf's limit is 2 GiB; keep a
# margin for the graph itself).
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26


def save_model(
    model: Model,
    path: str | os.PathLike[str],
    *,
    external_data: bool | None = None,
    check: bool = True,
) -> list[Path]:
    """Lower ``model`` and write it to ``path``; return the files written (model first).

    ``external_data``: True forces an external-data file ``<name>.data`` beside the model,
    False forbids it, None (default) uses it only when the constants exceed 2 GB.
    """
    dest = _destination(path)
    size = _constant_bytes(model.graph)
    if external_data is None:
        external_data = size > EXTERNAL_DATA_THRESHOLD
    elif not external_data and size > EXTERNAL_DATA_THRESHOLD:
        raise _too_big(size, dest)
    with _staging(dest) as stage:
        if external_data:
            with open(stage.data, "wb") as f:
                proto = lower_model(model, sink=ExternalSink(f, stage.data.name))
        else:
            proto = lower_model(model)
        return stage.commit(proto, check)


def write_model(
    proto: onnx.ModelProto,
    path: str | os.PathLike[str],
    *,
    external_data: bool | None = None,
    check: bool = True,
) -> list[Path]:
    """Write an existing ModelProto to ``path`` (same options as :func:`save_model`)."""
    dest = _destination(path)
    try:
        size = proto.ByteSize()
    except EncodeError:  # protobuf cannot even measure a message above 2 GB
        size = EXTERNAL_DATA_THRESHOLD + 1
    if external_data is None:
        external_data = size > EXTERNAL_DATA_THRESHOLD
    elif not external_data and size > EXTERNAL_DATA_THRESHOLD:
        raise _too_big(size, dest)
    with _staging(dest) as stage:
        if external_data:
            proto = _copy(proto)
            external_data_helper.convert_model_to_external_data(
                proto,
                all_tensors_to_one_file=True,
                location=stage.data.name,
                size_threshold=1024,
                convert_attribute=False,
            )
            external_data_helper.write_external_data_tensors(proto, str(stage.dir))
        return stage.commit(proto, check)


class _Stage:
    def __init__(self, dest: Path, tmpdir: Path) -> None:
        self.dest = dest
        self.dir = tmpdir
        self.model = tmpdir / dest.name
        self.data = tmpdir / (dest.name + ".data")

    def commit(self, proto: onnx.ModelProto, check: bool) -> list[Path]:
        self.model.write_bytes(proto.SerializeToString(deterministic=True))
        if check:
            try:
                onnx.checker.check_model(str(self.model), full_check=False)
            except onnx.checker.ValidationError as e:
                first = str(e).strip().splitlines()[0]
                raise ModelError(
                    f"the output model fails onnx.checker, so nothing was written: {first}",
                    path=self.dest,
                ) from None
        written = [self.dest]
        if self.data.exists():
            final_data = self.dest.parent / self.data.name
            os.replace(self.data, final_data)
            written.append(final_data)
        os.replace(self.model, self.dest)
        return written


@contextlib.contextmanager
def _staging(dest: Path) -> Iterator[_Stage]:
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".qcc-tmp", dir=dest.parent))
    try:
        yield _Stage(dest, tmpdir)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _destination(path: str | os.PathLike[str]) -> Path:
    dest = Path(path)
    if not dest.parent.is_dir():
        raise QccError(f"output directory {str(dest.parent)!r} does not exist", path=dest)
    if dest.is_dir():
        raise QccError("output path is a directory", path=dest)
    return dest


def _too_big(size: int, dest: Path) -> QccError:
    return QccError(
        f"the model is {size / 2**30:.1f} GB, above protobuf's 2 GB limit; "
        "write it with external data",
        path=dest,
    )


def _constant_bytes(graph: Graph) -> int:
    total = sum(int(v.const.nbytes) for v in graph.initializers.values())
    for n in graph:
        for g in n.subgraphs():
            total += _constant_bytes(g)
    return total


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    c = onnx.ModelProto()
    c.CopyFrom(proto)
    return c


def save_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` (a .tflite flatbuffer ...) to ``path`` atomically."""
    dest = _destination(path)
    with _staging(dest) as stage:
        tmp = stage.dir / "out.bin"
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return dest


def save_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to an .npz at ``path`` atomically (a temporary file, then a rename)."""
    dest = _destination(path)
    with _staging(dest) as stage:
        tmp = stage.dir / "out.npz"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, dest)
    return dest
