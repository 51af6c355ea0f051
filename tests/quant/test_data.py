"""Calibration data: every source kind, and clear errors (exit 2) before calibration starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from qcc.quant.data import CalibrationError, open_calibration
from qcc.recipe.resolve import Preprocess
from tests.conftest import lift, make_model

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


def model(shape=("N", 3, 4, 4), names=("x",)):
    return lift(
        make_model(
            [helper.make_node("Sum", list(names), ["y"])],
            {n: (TensorProto.FLOAT, list(shape)) for n in names},
            {"y": (TensorProto.FLOAT, list(shape))},
        )
    )


def test_npy_npz_folder_glob_and_sampling(tmp_path):
    arr = np.arange(10 * 1 * 3 * 4 * 4, dtype=np.float32).reshape(10, 1, 3, 4, 4)
    np.save(tmp_path / "c.npy", arr)
    s = open_calibration(tmp_path / "c.npy", model())
    assert s.count == 10 and s.get(3)["x"].tolist() == arr[3].tolist()
    s = open_calibration(tmp_path / "c.npy", model(), samples=4, seed=1)
    picked = [int(s.get(i)["x"].reshape(-1)[0]) // 48 for i in range(4)]
    assert len(set(picked)) == 4 and picked == sorted(picked)
    assert picked == [int(s.get(i)["x"].reshape(-1)[0]) // 48 for i in range(4)]  # stable
    np.savez(tmp_path / "two.npz", a=arr, b=arr * 2)
    s = open_calibration(tmp_path / "two.npz", model(names=("a", "b")))
    assert s.get(1)["b"].tolist() == (arr[1] * 2).tolist()
    d = tmp_path / "folder"
    d.mkdir()
    for i in range(3):
        np.save(d / f"s{i}.npy", arr[i])  # one sample per file
    assert open_calibration(d, model()).count == 3
    assert open_calibration(str(d / "s[01].npy"), model()).count == 2
    batches = list(open_calibration(tmp_path / "c.npy", model()).batches(4))
    assert [n for n, _ in batches] == [4, 4, 2] and batches[0][1]["x"].shape == (4, 3, 4, 4)


def test_images_with_preprocessing(tmp_path):
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.full((10, 12, 3), 60 * i, np.uint8)).save(tmp_path / f"im{i}.png")
    pre = Preprocess(resize=(4, 4), scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    s = open_calibration(tmp_path, model(shape=(1, 3, 4, 4)), preprocess=pre)
    x = s.get(1)["x"]
    assert x.shape == (1, 3, 4, 4) and np.allclose(x, (60 / 255 - 0.5) / 0.5)
    with pytest.raises(CalibrationError, match="image calibration data needs preprocessing"):
        open_calibration(tmp_path, model(shape=(1, 3, 4, 4)))


def test_callable(tmp_path, monkeypatch):
    (tmp_path / "mycalib.py").write_text(
        "import numpy as np\ndef load():\n    return [np.zeros((1, 3, 4, 4), np.float32)] * 5\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert open_calibration("mycalib:load", model()).count == 5
    with pytest.raises(CalibrationError, match="cannot load calibration callable 'mycalib:nope'"):
        open_calibration("mycalib:nope", model())


@pytest.mark.parametrize(
    "arr,message",
    [
        (np.zeros((2, 1, 3, 4, 4), np.float64), "input 'x' is float64, the model wants float32"),
        (
            np.zeros((2, 1, 3, 5, 4), np.float32),
            "input 'x' has shape [1, 3, 5, 4], the model wants [?, 3, 4, 4]",
        ),
        (
            np.zeros((2, 3, 4), np.float32),
            "input 'x' has shape [2, 3, 4], the model wants [?, 3, 4, 4]",
        ),
    ],
)
def test_wrong_data_is_named(tmp_path, arr, message):
    np.save(tmp_path / "c.npy", arr)
    with pytest.raises(CalibrationError) as e:
        open_calibration(tmp_path / "c.npy", model())
    assert message in e.value.message


def test_missing_and_wrong_sources(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        open_calibration(tmp_path / "nope.npy", model())
    np.savez(tmp_path / "k.npz", a=np.zeros((2, 1, 3, 4, 4), np.float32))
    with pytest.raises(CalibrationError, match=r"missing input\(s\) 'b'"):
        open_calibration(tmp_path / "k.npz", model(names=("a", "b")))
    np.save(tmp_path / "one.npy", np.zeros((2, 1, 3, 4, 4), np.float32))
    with pytest.raises(CalibrationError, match=r"use an \.npz"):
        open_calibration(tmp_path / "one.npy", model(names=("a", "b")))
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(CalibrationError, match="cannot read calibration file"):
        open_calibration(tmp_path / "bad.npy", model())


def test_cli_calibration_error_exits_2_before_calibrating(cli, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 1, 1, 8, 8), np.float64))
    out = tmp_path / "o.onnx"
    code, stdout, stderr = cli(
        "compile",
        DIGITS / "model.onnx",
        "-r",
        "int8-ort-fast",
        "--calib",
        tmp_path / "bad.npy",
        "-o",
        out,
    )
    assert code == 2 and not out.exists()
    assert "input 'input' is float64, the model wants float32" in stderr
    assert "calibrate" not in stdout  # no pass ran
    code, _, stderr = cli("compile", DIGITS / "model.onnx", "-r", "int8-ort-fast", "-o", out)
    assert code == 2 and "no calibration data is given: pass --calib PATH" in stderr
