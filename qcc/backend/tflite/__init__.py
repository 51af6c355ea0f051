"""The TFLite backend: an INT8 QDQ ONNX model lowered to NHWC and written as a .tflite flatbuffer.

``convert(model)`` returns the bytes of the .tflite; it never writes files (the caller writes
atomically). See docs/tflite.md for the lowering rules, the layout algorithm and the op table.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence

import onnx

from qcc.backend.tflite.graph import load
from qcc.backend.tflite.lower import lower

__all__ = ["convert"]

log = logging.getLogger(__name__)


def convert(
    model: onnx.ModelProto,
    *,
    io: str = "float32",
    keep_nchw: Collection[str] = (),
    metadata: Mapping[str, str] | None = None,
    source: str = "model",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> bytes:
    """Lower a QDQ INT8 ONNX model (opset >= 13) to .tflite bytes.

    ``io``: ``"float32"`` keeps float graph inputs and outputs with QUANTIZE / DEQUANTIZE at the
    boundary; ``"int8"`` makes the int8 tensors themselves the graph inputs and outputs.
    ``keep_nchw``: graph inputs / outputs that stay NCHW (every other rank-4 one becomes NHWC).
    ``metadata``: written into ``Model.metadata`` (name -> buffer). ``source`` names the model
    in error messages. ``input_shapes`` fixes symbolic input dimensions (a symbolic batch
    becomes 1 otherwise). Unsupported ops raise :class:`qcc.errors.QccError` naming the node.
    """
    g = load(model, source, input_shapes)
    m, transposes = lower(g, io, keep_nchw)
    if transposes:
        log.info(
            "%s: layout lowering wrote %d TRANSPOSE op(s), for %s",
            source,
            len(transposes),
            ", ".join(transposes),
        )
    for key, value in (metadata or {}).items():
        m.metadata[str(key)] = str(value)
    return m.serialize()
