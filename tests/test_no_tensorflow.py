"""qcc never imports TensorFlow or PyTorch: not at import time, not while compiling a .tflite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits"

SCRIPT = """
import sys
from qcc.compiler import compile_model
import qcc.cli, qcc.verify, qcc.backend.tflite, qcc.interp.tflite
compile_model({model!r}, {out!r}, calib={calib!r})
from ai_edge_litert.interpreter import Interpreter
Interpreter(model_path={out!r}).allocate_tensors()
banned = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "torch", "tf_keras"))
print("BANNED", banned)
"""


def test_compiling_a_tflite_imports_no_tensorflow(tmp_path):
    out = tmp_path / "digits.tflite"
    script = SCRIPT.format(
        model=str(DIGITS / "model.onnx"), out=str(out), calib=str(DIGITS / "calib.npy")
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "BANNED []" in proc.stdout
    assert out.read_bytes()[4:8] == b"TFL3"
