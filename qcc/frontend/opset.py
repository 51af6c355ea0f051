"""Convert a model to another ai.onnx opset with ONNX's own version converter.

A recipe's ``target onnx { opset = 17 }`` asks for it (per-channel DequantizeLinear needs opset
13, for instance). The conversion happens on load, before any pass runs, so passes see the
opset the output will have: :func:`convert_proto` converts the file's own protobuf before it
is lifted (:func:`qcc.frontend.reader.read_model` with ``opset=``), and :func:`convert_opset`
converts a lifted model (lowered, converted, re-lifted and verified) where that could not be
done, a model with external data.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.version_converter

from qcc.errors import ModelError
from qcc.frontend.lift import lift_model
from qcc.frontend.lower import lower_model
from qcc.frontend.reader import infer_shapes
from qcc.ir import Model


def convert_proto(
    proto: onnx.ModelProto, opset: int, *, source: int, path: Path | None
) -> onnx.ModelProto:
    """``proto`` (at ai.onnx ``source``) converted to ai.onnx ``opset`` by ONNX's converter;
    its failure is a :class:`ModelError` naming ``path``."""
    try:
        return onnx.version_converter.convert_version(proto, opset)
    except Exception as e:  # the converter raises RuntimeError/ValueError with C++ text
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"cannot convert the model from opset {source} to {opset}: {first}", path=path
        ) from None


def convert_opset(model: Model, opset: int) -> Model:
    """``model`` converted to ai.onnx ``opset`` (a new Model; the input is not modified)."""
    if model.opset == opset:
        return model
    converted = convert_proto(lower_model(model), opset, source=model.opset, path=model.path)
    converted, report = infer_shapes(converted)
    out = lift_model(converted)
    out.path = model.path
    out.opaque["shape_report"] = report
    out.verify()
    return out
