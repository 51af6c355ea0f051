"""The TFLite side of the reference interpreter: executes .tflite models bit for bit like LiteRT.

``TFLiteInterpreter(path_or_bytes, profile)`` with profile ``tflite-xnnpack`` (LiteRT's default
resolver, XNNPACK delegate) or ``tflite-ref`` (``BUILTIN_REF``); :mod:`.model` reads the
flatbuffer, :mod:`.kernels` holds one numpy kernel per builtin operator.
"""

from __future__ import annotations

from qcc.interp.tflite.model import TFLiteModel, read
from qcc.interp.tflite.run import PROFILES, TFLiteInterpreter

__all__ = ["PROFILES", "TFLiteInterpreter", "TFLiteModel", "read"]
