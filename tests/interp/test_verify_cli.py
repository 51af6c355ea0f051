"""``qcc verify`` and ``qcc run`` end to end: exit codes, the report, and that the check can fail.

The model is the qcc-quantized digits example (compiled once per module with the built-in
``int8-ort`` recipe), so these tests also cover a model qcc made itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from qcc.cli import main

    out = tmp_path_factory.mktemp("q") / "digits.int8.onnx"
    res = CliRunner().invoke(
        main,
        [
            "compile",
            str(DIGITS / "model.onnx"),
            "-r",
            "int8-ort",
            "--calib",
            str(DIGITS / "calib.npy"),
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("d") / "six.npy"
    np.save(p, np.load(DIGITS / "calib.npy")[:6])
    return p


def test_verify_bit_exact_json(cli, quantized, data):
    code, out, err = cli("verify", quantized, "--data", data, "--tensors", "all", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["ok"] and rep["samples"] == 6 and rep["integer_mismatches"] == 0
    tensors = {t["tensor"]: t for t in rep["tensors"]}
    assert tensors["logits"]["kind"] == "output" and tensors["logits"]["elements"] == 60
    ints = [t for t in rep["tensors"] if t["kind"] == "tensor"]
    assert len(ints) >= 8 and all(t["dtype"] in ("uint8", "int8") for t in ints)
    assert all(t["mismatches"] == 0 for t in rep["tensors"])


def test_verify_text_report_and_random_data(cli, quantized):
    code, out, err = cli("verify", quantized, "--samples", "2")
    assert code == 0, err
    assert "random (seed 0)" in out and "bit-exact" in out
    assert "integer tensors: 1/1 bit-exact" in out  # outputs only: the float logits


def test_verify_fails_when_a_kernel_is_one_lsb_off(cli, quantized, data, monkeypatch):
    """Perturb the requantization of one integer kernel by one LSB: verify must exit 1 and
    name the first tensor that kernel produces."""
    from qcc.interp.kernels import quant

    real = quant.requantize

    def off_by_one(acc, scale, zp, dtype):
        y = real(acc, scale, zp, dtype)
        flat = y.reshape(-1)
        flat[0] = flat[0] - 1 if flat[0] > 0 else flat[0] + 1
        return y

    monkeypatch.setattr(quant, "requantize", off_by_one)
    code, out, err = cli("verify", quantized, "--data", data, "--tensors", "all", "--json")
    assert code == 1, err
    rep = json.loads(out)
    first = next(t for t in rep["tensors"] if t["mismatches"])
    m = onnx.load(quantized)
    conv_q = [n.output[0] for n in m.graph.node if n.op_type == "QuantizeLinear"]
    # the first quantized Conv output (the Q after the first Conv) is the first to differ
    assert first["tensor"] == conv_q[1]
    assert first["exact"] and first["max_diff"] == 1.0
    assert first["first_mismatch"] == {"sample": 0, "index": [0, 0, 0, 0]}
    code, out, _ = cli("verify", quantized, "--data", data, "--tensors", "all")
    assert code == 1
    assert f"first mismatch in {conv_q[1]}" in out and "MISMATCH" in out


def test_verify_bad_input_exit_2(cli, quantized, tmp_path):
    code, _, err = cli("verify", tmp_path / "missing.onnx")
    assert code == 2 and "missing.onnx" in err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 1, 1, 3, 3), np.float32))
    code, _, err = cli("verify", quantized, "--data", bad)
    assert code == 2
    assert "has shape [1, 1, 3, 3], the model wants [?, 1, 8, 8]" in err
    code, _, err = cli("verify", quantized, "--profile", "tflite-ref")
    assert code == 2 and "unknown profile 'tflite-ref'" in err


def test_run_saves_stacked_outputs_without_onnxruntime(cli, quantized, data, tmp_path, monkeypatch):
    import onnxruntime

    def forbidden(*a, **k):
        raise AssertionError("qcc run created an onnxruntime session")

    out = tmp_path / "out.npz"
    with monkeypatch.context() as mp:
        mp.setattr(onnxruntime, "InferenceSession", forbidden)
        code, _, err = cli("run", quantized, "--data", data, "-o", out)
    assert code == 0, err
    z = np.load(out)
    assert z.files == ["logits"] and z["logits"].shape == (6, 1, 10)
    sess = onnxruntime.InferenceSession(str(quantized), providers=["CPUExecutionProvider"])
    arr = np.load(data)
    want = np.stack([sess.run(None, {"input": arr[i]})[0] for i in range(6)])
    assert np.array_equal(want, z["logits"])


def test_run_bad_output_path_writes_nothing(cli, quantized, data, tmp_path):
    code, _, err = cli("run", quantized, "--data", data, "-o", tmp_path / "out.txt")
    assert code == 2 and "give -o OUT.npz" in err
    assert not (tmp_path / "out.txt").exists()


def test_interpreter_error_names_the_node(tmp_path):
    from onnx import TensorProto, helper

    from qcc.frontend.lift import lift_model
    from qcc.interp import InterpError, Interpreter

    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.array([4, 4], np.int64), "s")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(InterpError, match=r"while executing node 'bad_reshape' \(Reshape\)"):
        Interpreter(lift_model(m)).run({"x": np.zeros((2, 3), np.float32)})
    g2 = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], name="odd", domain="example.org")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    m2 = helper.make_model(
        g2,
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("example.org", 1)],
        ir_version=8,
    )
    with pytest.raises(InterpError, match=r"no kernel in profile 'ort-x86' for node 'odd'"):
        Interpreter(lift_model(m2))


def test_compile_verify(cli, tmp_path, monkeypatch):
    out = tmp_path / "d.onnx"
    args = ["compile", DIGITS / "model.onnx", "-r", "int8-ort-fast", "--calib"]
    args += [DIGITS / "calib.npy", "-o", out, "--verify"]
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert "verified against onnxruntime on 8 calibration samples" in stdout
    assert "integer tensors bit-exact" in stdout
    out.unlink()

    from qcc.interp.kernels import quant

    real = quant.requantize
    monkeypatch.setattr(quant, "requantize", lambda a, s, z, d: real(a, s, z, d) ^ 1)
    code, _, err = cli(*args)
    assert code == 1
    assert "--verify:" in err and "nothing was written" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
