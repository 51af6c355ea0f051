"""``qcc verify`` / ``qcc run`` on .tflite models, and the reader.

The models are built here with LiteRT's schema object API: a float input quantized, a per-channel
CONV_2D with RELU, a LOGISTIC, an ADD of two branches and a DEQUANTIZE to a float output.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from qcc.interp.tflite import TFLiteInterpreter, read
from qcc.interp.tflite import kernels as K
from qcc.interp.tflite.registry import _REG
from tests.interp.tflite.builder import Builder, litert


def small_model() -> bytes:
    rng = np.random.default_rng(0)
    b = Builder()
    x = b.tensor("input", [1, 6, 6, 3], np.float32)
    xq = b.tensor("xq", [1, 6, 6, 3], np.int8, scale=0.02, zp=1)
    b.op("QUANTIZE", [x], [xq])
    ws = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
    w = b.const("w", rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), scale=ws, zp=0)
    bias = b.const("b", rng.integers(-900, 900, 4).astype(np.int32), scale=ws * 0.02, zp=0)
    y = b.tensor("conv", [1, 6, 6, 4], np.int8, scale=0.05, zp=-20)
    b.op(
        "CONV_2D",
        [xq, w, bias],
        [y],
        "Conv2DOptions",
        padding=0,
        strideW=1,
        strideH=1,
        fusedActivationFunction=1,
    )
    s = b.tensor("sig", [1, 6, 6, 4], np.int8, scale=1 / 256, zp=-128)
    b.op("LOGISTIC", [y], [s])
    a = b.tensor("add", [1, 6, 6, 4], np.int8, scale=0.06, zp=-10)
    b.op("ADD", [y, s], [a], "AddOptions")
    z = b.tensor("out", [1, 6, 6, 4], np.float32)
    b.op("DEQUANTIZE", [a], [z])
    return b.build([x], [z])


@pytest.fixture
def model_file(tmp_path):
    p = tmp_path / "m.tflite"
    p.write_bytes(small_model())
    return p


@pytest.fixture
def data_file(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.random.default_rng(1).uniform(-2, 2, (3, 1, 6, 6, 3)).astype(np.float32))
    return p


def test_reader(model_file):
    m = read(model_file)
    names = [t.name for t in m.tensors]
    assert [m.tensors[i].name for i in m.inputs] == ["input"]
    assert [m.tensors[i].name for i in m.outputs] == ["out"]
    assert [o.op for o in m.operators] == ["QUANTIZE", "CONV_2D", "LOGISTIC", "ADD", "DEQUANTIZE"]
    conv = m.operators[1]
    assert conv.options["padding"] == "SAME" and conv.activation == "RELU"
    assert conv.options["stride_w"] == 1
    w = m.tensors[names.index("w")]
    assert w.data.shape == (4, 3, 3, 3) and w.data.dtype == np.int8
    assert w.q.scale.tolist() == pytest.approx([0.01, 0.02, 0.03, 0.04])
    assert m.tensors[names.index("sig")].q.zp == -128
    assert m.description == "qcc test"


def test_malformed_file_is_exit_2_naming_it(cli, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x0c\x00\x00\x00TFL3" + b"\xff" * 40)
    code, _out, err = cli("verify", bad)
    assert code == 2
    assert "bad.tflite" in err and "not a valid .tflite model" in err
    bad.write_bytes(b"hello world, not a flatbuffer")
    code, _out, err = cli("run", bad, "--data", bad, "-o", tmp_path / "o.npz")
    assert code == 2 and "no 'TFL3' file identifier" in err


@pytest.mark.parametrize("profile", ["tflite-xnnpack", "tflite-ref"])
def test_verify_exact(cli, model_file, data_file, profile):
    code, out, _err = cli(
        "verify", model_file, "--profile", profile, "--data", data_file, "--tensors", "all"
    )
    assert code == 0, out
    assert f"interpreter ({profile}) vs LiteRT" in out
    assert "integer tensors: 5/5 bit-exact" in out
    code, out, _err = cli("verify", model_file, "--profile", profile, "--json", "--tensors", "all")
    rep = json.loads(out)
    assert code == 0 and rep["ok"] and rep["samples"] == 4 and rep["delegation_differs"] == []
    assert [t["tensor"] for t in rep["tensors"]] == ["xq", "conv", "sig", "add", "out"]
    assert all(t["mismatches"] == 0 for t in rep["tensors"])


def test_default_profile_of_a_tflite_is_xnnpack(cli, model_file):
    code, out, _err = cli("verify", model_file, "--json")
    assert code == 0 and json.loads(out)["profile"] == "tflite-xnnpack"


def test_one_lsb_off_is_exit_1_naming_the_tensor(cli, model_file, monkeypatch):
    spec = next(k for k in _REG["LOGISTIC"])
    idx = _REG["LOGISTIC"].index(spec)

    def off_by_one(call, x):
        y = K.logistic(call, x).astype(np.int16)
        return np.clip(y + (y < 127), -128, 127).astype(np.int8)

    monkeypatch.setitem(_REG, "LOGISTIC", [*_REG["LOGISTIC"]])
    _REG["LOGISTIC"][idx] = type(spec)(spec.op, off_by_one, spec.arith, spec.exact)
    code, out, _err = cli("verify", model_file, "--tensors", "all", "--json")
    rep = json.loads(out)
    assert code == 1 and not rep["ok"]
    bad = [t for t in rep["tensors"] if t["mismatches"]]
    # teacher forcing: only the perturbed tensor fails, not everything after it
    assert [t["tensor"] for t in bad] == ["sig"]
    assert bad[0]["max_diff"] == 1.0
    code, out, _err = cli("verify", model_file, "--tensors", "all")
    assert code == 1 and "first mismatch in sig" in out and "MISMATCH" in out


def test_run_never_creates_a_litert_interpreter(cli, model_file, data_file, tmp_path, monkeypatch):
    x = np.load(data_file)
    want = np.stack([litert(model_file.read_bytes(), [x[i]], "tflite-ref")[0] for i in range(3)])

    def forbidden(*a, **k):
        raise AssertionError("qcc run created a LiteRT interpreter")

    import ai_edge_litert.interpreter as li

    monkeypatch.setattr(li, "Interpreter", forbidden)
    out = tmp_path / "o.npz"
    code, _out, err = cli(
        "run", model_file, "--data", data_file, "--profile", "tflite-ref", "-o", out
    )
    assert code == 0, err
    got = np.load(out)
    assert list(got.files) == ["out"]
    assert got["out"].shape == (3, 1, 6, 6, 4)
    assert got["out"].tobytes() == want.tobytes()


def test_run_rejects_wrong_data(cli, model_file, tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((2, 1, 6, 6, 3), np.float64))
    code, _out, err = cli("run", model_file, "--data", p, "-o", tmp_path / "o.npz")
    assert code == 2 and "input tensor 'input' is float32, data is float64" in err
    np.save(p, np.zeros((2, 6, 3, 6), np.float32))
    code, _out, err = cli("run", model_file, "--data", p, "-o", tmp_path / "o.npz")
    assert code == 2 and "data must be [N, 1, 6, 6, 3]" in err
    np.save(p, np.float32(1.0))
    code, _out, err = cli("run", model_file, "--data", p, "-o", tmp_path / "o.npz")
    assert code == 2 and "data must be [N, 1, 6, 6, 3], got a scalar" in err
    code, _out, err = cli(
        "run", model_file, "--data", p, "--profile", "ort-x86", "-o", tmp_path / "o.npz"
    )
    assert code == 2 and "does not run .tflite models" in err


def test_interpreter_error_names_the_operator(model_file):
    it = TFLiteInterpreter(model_file, "tflite-ref")
    with pytest.raises(Exception, match="input tensor 'input' has shape"):
        it.run({"input": np.zeros((1, 6, 6, 2), np.float32)})


def test_missing_kernel_is_a_clear_error():
    b = Builder()
    x = b.tensor("x", [4], np.float32)
    y = b.tensor("y", [4], np.float32)
    b.op("FLOOR_MOD", [x, x], [y])
    with pytest.raises(
        Exception,
        match=r"no kernel in profile 'tflite-ref' for operator 0 'y' "
        r"\(FLOOR_MOD\)",
    ):
        TFLiteInterpreter(b.build([x], [y]), "tflite-ref")


def test_a_model_litert_refuses_is_an_error_naming_the_file(cli, tmp_path):
    b = Builder()
    x1 = b.tensor("x1", [1, 2, 2, 3], np.int8, scale=0.05, zp=2)
    x2 = b.tensor("x2", [1, 2, 2, 5], np.int8, scale=0.11, zp=-7)
    y = b.tensor("y", [1, 2, 2, 8], np.int8, scale=0.05, zp=2)
    b.op("CONCATENATION", [x1, x2], [y], "ConcatenationOptions", axis=3)
    p = tmp_path / "refused.tflite"
    p.write_bytes(b.build([x1, x2], [y]))
    code, _out, err = cli("verify", p)
    assert code != 0 and "Traceback" not in err
    assert "refused.tflite" in err and "LiteRT cannot load the model" in err
