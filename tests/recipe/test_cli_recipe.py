"""The recipe commands end to end: compile -r / -D / --explain, check, fmt, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.conftest import make_model, ort_run

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits" / "model.onnx"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_compile_with_builtin_recipe_names_each_pass_and_line(cli, tmp_path):
    out = tmp_path / "d.onnx"
    code, stdout, stderr = cli("compile", DIGITS, "-r", "fp32-optimize", "-o", out)
    assert code == 0, stderr
    assert "[1/7] fold-constants (qcc:common/cleanup.q:17:3) changed" in stdout
    assert (
        "[7/7] fuse-activations (qcc:fp32-optimize.q:17:3) changed: conv-clip=1, conv-relu=4"
        in stdout
    )
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["qcc.recipe"] == "fp32_optimize"
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    assert (
        ort_run(onnx.load(out), {"input": x})[0].tobytes()
        == ort_run(onnx.load(DIGITS), {"input": x})[0].tobytes()
    )


def test_defines_and_explain(cli, tmp_path):
    r = write(
        tmp_path,
        "r.q",
        "let rules = [conv-relu, conv-clip]\n"
        "pipeline {\n"
        '  fuse-activations $rules on op(Conv) exclude name("/features/features.3/*")\n'
        "}\n",
    )
    code, stdout, stderr = cli(
        "compile",
        DIGITS,
        "-r",
        r,
        "-D",
        "rules=[conv-relu]",
        "-o",
        tmp_path / "o.onnx",
        "--explain",
    )
    assert code == 0, stderr
    assert 'on op(Conv) exclude name("/features/features.3/*") selected 3 nodes:' in stdout
    assert "'/features/features.0/Conv' (Conv)" in stdout
    assert "changed: conv-relu=2;" in stdout  # -D dropped conv-clip; features.3 was excluded


def test_bad_recipe_gives_exit_2_diagnostics_and_no_file(cli, tmp_path):
    r = write(tmp_path, "r.q", "pipeline {\n  fold-batchnorm on op(Cnov)\n}\n")
    out = tmp_path / "o.onnx"
    code, stdout, stderr = cli("compile", DIGITS, "-r", r, "-o", out)
    assert code == 2 and not out.exists()
    assert stderr.splitlines() == [
        f"{r}:2:21: error[E400]: op(Cnov) matches no node: the graph has no Cnov",
        "2 |   fold-batchnorm on op(Cnov)",
        "  |                     ^^^^^^^^",
        "  = help: closest: 'Conv'",
    ]
    code, stdout, _ = cli("compile", DIGITS, "-r", r, "-o", out, "--format", "json")
    assert code == 2
    (d,) = json.loads(stdout)["diagnostics"]
    assert (d["code"], d["line"], d["column"], d["help"]) == ("E400", 2, 21, "closest: 'Conv'")


def test_recipe_errors_come_before_reading_the_model(cli, tmp_path):
    r = write(tmp_path, "r.q", "pipeline { fold-constnts }\n")
    code, _, stderr = cli("compile", tmp_path / "missing.onnx", "-r", r, "-o", tmp_path / "o.onnx")
    assert code == 2 and "error[E300]: unknown pass 'fold-constnts'" in stderr
    assert "no such file" not in stderr


def test_bad_define_and_conflicting_options(cli, tmp_path):
    r = write(tmp_path, "r.q", "let n = 1\npipeline { fold-constants max-bytes = $n }\n")
    code, _, stderr = cli("compile", DIGITS, "-r", r, "-D", "m=2", "-o", tmp_path / "o.onnx")
    assert code == 2
    assert "error[E211]: -D m: the recipe defines no variable 'm'" in stderr
    code, _, stderr = cli("compile", DIGITS, "-r", r, "-D", "n", "-o", tmp_path / "o.onnx")
    assert code == 2 and "-D n: write -D NAME=VALUE" in stderr
    code, _, stderr = cli(
        "compile", DIGITS, "-r", r, "--passes", "fold-constants", "-o", tmp_path / "o.onnx"
    )
    assert code == 2 and "not both" in stderr
    t = write(tmp_path, "t.q", "pipeline { fold-constants }\ntarget onnx\n")
    code, _, stderr = cli("compile", DIGITS, "-r", t, "-o", tmp_path / "o.tflite")
    assert code == 2
    assert (
        "the recipe targets onnx, and o.tflite is a .tflite: use a recipe with `target " in stderr
    )
    assert not (tmp_path / "o.tflite").exists()
    code, _, stderr = cli("compile", DIGITS, "-r", t, "-o", tmp_path / "o.pb")
    assert code == 2 and "cannot write .pb: qcc writes .onnx and .tflite models" in stderr


def test_unknown_builtin_recipe(cli, tmp_path):
    code, _, stderr = cli("compile", DIGITS, "-r", "fp32-optimise", "-o", tmp_path / "o.onnx")
    assert code == 2
    assert "no recipe file 'fp32-optimise' and no built-in recipe of that name" in stderr
    assert "did you mean 'fp32-optimize'?" in stderr


def test_target_opset_converts_the_model(cli, tmp_path):
    proto = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        {"x": (TensorProto.FLOAT, [2])},
        {"y": (TensorProto.FLOAT, [2])},
        opset=11,
    )
    src = tmp_path / "m.onnx"
    onnx.save(proto, src)
    r = write(tmp_path, "r.q", "pipeline { eliminate-dead-code }\ntarget onnx { opset = 13 }\n")
    code, _, stderr = cli("compile", src, "-r", r, "-o", tmp_path / "o.onnx")
    assert code == 0, stderr
    assert {o.domain: o.version for o in onnx.load(tmp_path / "o.onnx").opset_import}[""] == 13


def test_check_exit_codes_and_json(cli, tmp_path):
    good = write(tmp_path, "good.q", "pipeline { fold-constants }\n")
    bad = write(tmp_path, "bad.q", "pipeline { fold-constants max-bytes = x }\n")
    code, stdout, _ = cli("check", good)
    assert code == 0 and stdout.startswith(
        f"{good}: ok\nrecipe (unnamed)\npipeline:\n  1. fold-constants"
    )
    code, _, stderr = cli("check", bad)
    assert code == 1 and "error[E302]" in stderr
    code, _, stderr = cli("check", tmp_path / "nope.q")
    assert code == 2 and "error[E203]" in stderr
    code, stdout, _ = cli("check", bad, "--format", "json")
    data = json.loads(stdout)
    assert code == 1 and data["ok"] is False and data["diagnostics"][0]["code"] == "E302"
    sel = write(tmp_path, "sel.q", "pipeline { fuse-activations on op(Conv) }\n")
    assert cli("check", sel, "--model", DIGITS)[0] == 0
    sel2 = write(tmp_path, "sel2.q", "pipeline { fuse-activations on op(Softmax) }\n")
    code, _, stderr = cli("check", sel2, "--model", DIGITS)
    assert code == 1 and "op(Softmax) matches no node" in stderr
    code, _, stderr = cli("check", sel2, "--model", tmp_path / "nope.onnx")
    assert code == 2 and "no such file" in stderr


def test_fmt_print_check_write(cli, tmp_path):
    r = write(tmp_path, "r.q", "pipeline{fold-constants max-bytes=3}  # keep me\n")
    code, stdout, _ = cli("fmt", r)
    assert code == 0
    assert stdout == "pipeline {\n  fold-constants max-bytes = 3  # keep me\n}\n"
    assert cli("fmt", r, "--check")[0] == 1
    assert cli("fmt", r, "--write")[0] == 0
    assert r.read_text() == stdout
    assert cli("fmt", r, "--check")[0] == 0
    bad = write(tmp_path, "bad.q", "pipeline {\n")
    code, _, stderr = cli("fmt", bad)
    assert code == 2 and "error[E103]" in stderr
