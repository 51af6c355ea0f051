"""Write a ModelProto atomically: temporary file, ``onnx.checker``, then rename into place.

The model (and its external-data file, for models above 2 GB or when asked) is written into a
temporary directory beside the destination, checked with ``onnx.checker.check_model`` on the
path (which handles external data), and only then moved over the destination with
``os.replace``. A failed check, an exception or Ctrl-C leaves the destination untouched and no
temporary file behind. Serialization is deterministic.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx
from onnx import external_data_helper

from qcc.errors import ModelError, QccError

# Above this serialized size the tensors go to an external-data file (protobuf's limit is 2 GiB;
# keep a margin for the graph itself).
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26


def write_model(
    proto: onnx.ModelProto,
    path: str | os.PathLike[str],
    *,
    external_data: bool | None = None,
    check: bool = True,
) -> list[Path]:
    """Write ``proto`` to ``path``; return the files written (model, then data file if any).

    ``external_data``: True forces an external-data file ``<name>.data`` beside the model,
    False forbids it, None (default) uses it only when the model would exceed 2 GB.
    """
    dest = Path(path)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise QccError(f"output directory {str(parent)!r} does not exist", path=dest)
    if dest.is_dir():
        raise QccError("output path is a directory", path=dest)
    size = proto.ByteSize()
    if external_data is None:
        external_data = size > EXTERNAL_DATA_THRESHOLD
    elif not external_data and size > EXTERNAL_DATA_THRESHOLD:
        raise QccError(
            f"the model is {size / 2**30:.1f} GB, above protobuf's 2 GB limit; "
            "write it with external data",
            path=dest,
        )
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".qcc-tmp", dir=parent))
    try:
        tmp_model = tmpdir / dest.name
        data_name = dest.name + ".data"
        if external_data:
            proto = _copy(proto)
            external_data_helper.convert_model_to_external_data(
                proto,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
                convert_attribute=False,
            )
            external_data_helper.write_external_data_tensors(proto, str(tmpdir))
        tmp_model.write_bytes(proto.SerializeToString(deterministic=True))
        if check:
            try:
                onnx.checker.check_model(str(tmp_model), full_check=False)
            except onnx.checker.ValidationError as e:
                first = str(e).strip().splitlines()[0]
                raise ModelError(
                    f"the output model fails onnx.checker, so nothing was written: {first}",
                    path=dest,
                ) from None
        written = []
        if external_data and (tmpdir / data_name).exists():
            os.replace(tmpdir / data_name, parent / data_name)
            written.append(parent / data_name)
        os.replace(tmp_model, dest)
        written.insert(0, dest)
        return written
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    c = onnx.ModelProto()
    c.CopyFrom(proto)
    return c
