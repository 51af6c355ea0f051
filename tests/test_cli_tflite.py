"""`qcc compile ... -o x.tflite`: the backend selection, the target block's io and layout
settings, and the file's metadata, through the command line on the shipped example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits"


def _io(path: Path):
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it, it.get_input_details()[0], it.get_output_details()[0]


def test_tflite_output_runs_the_default_recipe_and_agrees_with_fp32(cli, tmp_path):
    out = tmp_path / "d.tflite"
    code, stdout, stderr = cli(
        "compile", DIGITS / "model.onnx", "--calib", DIGITS / "calib.npy", "-o", out
    )
    assert code == 0, stderr
    assert "int8-tflite.q" in stdout  # the pass lines name the built-in recipe
    it, inp, outp = _io(out)
    assert list(inp["shape"]) == [1, 8, 8, 1] and inp["dtype"] == np.float32  # NHWC, float I/O
    x = np.load(DIGITS / "calib.npy")[:16]
    s = ort.InferenceSession(str(DIGITS / "model.onnx"), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    agree = 0
    for xi in x:
        it.set_tensor(inp["index"], xi.transpose(0, 2, 3, 1))
        it.invoke()
        agree += int(it.get_tensor(outp["index"]).argmax() == s.run(None, {name: xi})[0].argmax())
    assert agree >= 15, agree
    data = out.read_bytes()
    assert b"qcc.version" in data and b"int8_tflite" in data


def test_recipe_variables_set_int8_io_and_nchw_layout(cli, tmp_path):
    out = tmp_path / "d.tflite"
    code, _, stderr = cli(
        "compile",
        DIGITS / "model.onnx",
        "-r",
        "int8-tflite",
        "-D",
        "io=int8",
        "-D",
        "layout=nchw",
        "--calib",
        DIGITS / "calib.npy",
        "-o",
        out,
    )
    assert code == 0, stderr
    _, inp, outp = _io(out)
    assert list(inp["shape"]) == [1, 1, 8, 8] and inp["dtype"] == np.int8
    assert outp["dtype"] == np.int8 and outp["quantization"][0] > 0


def test_writing_onnx_with_a_tflite_recipe_gives_its_int8_qdq_model(cli, tmp_path):
    out = tmp_path / "d.onnx"
    code, _, stderr = cli(
        "compile",
        DIGITS / "model.onnx",
        "-r",
        "int8-tflite",
        "--calib",
        DIGITS / "calib.npy",
        "-o",
        out,
    )
    assert code == 0, stderr
    import onnx

    m = onnx.load(str(out))
    zps = [i for i in m.graph.initializer if i.name.endswith("zero_point")]
    types = {z.data_type for z in zps}  # int8 activations and weights, int32 biases
    assert types == {onnx.TensorProto.INT8, onnx.TensorProto.INT32}


def test_compile_verify_checks_the_tflite_against_litert_before_writing(cli, tmp_path):
    out = tmp_path / "d.tflite"
    code, stdout, stderr = cli(
        "compile", DIGITS / "model.onnx", "--calib", DIGITS / "calib.npy", "-o", out, "--verify"
    )
    assert code == 0, stderr
    assert "verified against LiteRT on 8 calibration samples: 11/11 integer tensors" in stdout
    assert out.exists()


def test_compile_verify_writes_nothing_when_an_integer_tensor_differs(cli, tmp_path, monkeypatch):
    from qcc.interp.tflite.registry import _REG

    specs = [*_REG["MAX_POOL_2D"]]
    monkeypatch.setitem(_REG, "MAX_POOL_2D", specs)
    for i, spec in enumerate(specs):  # every arithmetic's kernel one LSB up at one element
        specs[i] = type(spec)(spec.op, _plus_one(spec.fn), spec.arith, spec.exact)
    out = tmp_path / "d.tflite"
    code, _, stderr = cli(
        "compile", DIGITS / "model.onnx", "--calib", DIGITS / "calib.npy", "-o", out, "--verify"
    )
    assert code == 1
    assert "integer tensor(s) differ between LiteRT and the interpreter" in stderr
    assert "nothing was written" in stderr
    assert list(tmp_path.iterdir()) == []


def _plus_one(fn):
    def wrapped(*args, **kwargs):
        y = np.array(fn(*args, **kwargs))
        y.flat[0] = y.flat[0] + 1 if y.flat[0] < 127 else 126
        return y

    return wrapped
