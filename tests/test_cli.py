"""The qcc command line: bad input gives exit 2 and one clear message, no file; reports;
determinism; ``passes`` and ``inspect``."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcc.pipeline import PassResult, register_pass
from tests.conftest import make_model, ort_run, random_feeds

F = TensorProto.FLOAT


def conv_bn_relu(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    return make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], name="bn"),
            helper.make_node("Identity", ["n"], ["i"], name="ident"),
            helper.make_node("Relu", ["i"], ["y"], name="relu"),
        ],
        {"x": (F, [1, 2, 6, 6])},
        {"y": (F, [1, 4, 6, 6])},
        {
            "w": rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
            "g": rng.uniform(0.5, 1.5, 4).astype(np.float32),
            "b": rng.standard_normal(4).astype(np.float32),
            "m": rng.standard_normal(4).astype(np.float32),
            "v": rng.uniform(0.5, 2, 4).astype(np.float32),
        },
    )


@pytest.fixture
def model_file(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(conv_bn_relu(), p)
    return p


PIPE = "fold-constants,eliminate-identity,fold-batchnorm,eliminate-dead-code"


def test_compile_reports_each_pass_and_matches_fp32(cli, model_file, tmp_path):
    out = tmp_path / "o.onnx"
    code, stdout, stderr = cli("compile", model_file, "--passes", PIPE, "-o", out)
    assert code == 0, stderr
    for name in PIPE.split(","):
        assert name in stdout
    assert "Conv x1" not in stdout  # nothing folds a Conv
    assert "removed Identity x1" in stdout
    assert "folded 'bn' (BatchNormalization) into 'conv' (Conv)" in stdout
    m = onnx.load(out)
    assert [n.op_type for n in m.graph.node] == ["Conv", "Relu"]
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["qcc.pipeline"] == PIPE
    feeds = random_feeds(conv_bn_relu())
    np.testing.assert_allclose(
        ort_run(m, feeds)[0], ort_run(conv_bn_relu(), feeds)[0], rtol=1e-5, atol=1e-5
    )


def test_compile_json_report(cli, model_file, tmp_path):
    code, stdout, _ = cli(
        "compile", model_file, "--passes", PIPE, "-o", tmp_path / "o.onnx", "--format", "json"
    )
    assert code == 0
    rep = json.loads(stdout)
    assert [p["name"] for p in rep["passes"]] == PIPE.split(",")
    bn = rep["passes"][2]
    assert bn["changed"] is True and bn["stats"] == {"folded-into-Conv": 1}
    assert rep["passes"][0]["location"] == "--passes"


def test_compile_twice_gives_identical_bytes(cli, model_file, tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert cli("compile", model_file, "--passes", PIPE, "-o", a)[0] == 0
    assert cli("compile", model_file, "--passes", PIPE, "-o", b)[0] == 0
    assert a.read_bytes() == b.read_bytes()


def _bad_models(tmp_path):
    good = conv_bn_relu().SerializeToString()
    files = {}
    files["trunc"] = good[: len(good) // 2]
    files["text"] = b"hello, this is not a model\n"
    files["empty"] = b""
    x = helper.make_tensor_value_info("x", F, [1])
    y = helper.make_tensor_value_info("y", F, [1])
    cyc = helper.make_graph(
        [
            helper.make_node("Add", ["x", "b"], ["a"], name="add1"),
            helper.make_node("Neg", ["a"], ["b"], name="neg1"),
            helper.make_node("Relu", ["a"], ["y"], name="relu1"),
        ],
        "g",
        [x],
        [y],
    )
    files["cycle"] = helper.make_model(
        cyc, opset_imports=[helper.make_opsetid("", 17)], ir_version=9
    )
    miss = helper.make_graph(
        [helper.make_node("Conv", ["x4", "W"], ["y"], name="conv1")],
        "g",
        [helper.make_tensor_value_info("x4", F, [1, 1, 3, 3])],
        [y],
    )
    files["missing"] = helper.make_model(
        miss, opset_imports=[helper.make_opsetid("", 17)], ir_version=9
    )
    t = numpy_helper.from_array(np.ones(4, np.float32), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../secret.bin")
    ext = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"], name="add")],
        "g",
        [helper.make_tensor_value_info("x", F, [4])],
        [helper.make_tensor_value_info("y", F, [4])],
        initializer=[t],
    )
    files["extout"] = helper.make_model(
        ext, opset_imports=[helper.make_opsetid("", 17)], ir_version=9
    )
    t2 = onnx.TensorProto()
    t2.CopyFrom(t)
    t2.external_data[0].value = "/etc/passwd"
    ext_abs = onnx.GraphProto()
    ext_abs.CopyFrom(ext)
    ext_abs.initializer[0].CopyFrom(t2)
    files["extabs"] = helper.make_model(
        ext_abs, opset_imports=[helper.make_opsetid("", 17)], ir_version=9
    )
    relu = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x], [y])
    files["opset5"] = helper.make_model(
        relu, opset_imports=[helper.make_opsetid("", 5)], ir_version=3
    )
    files["opset27"] = helper.make_model(
        relu, opset_imports=[helper.make_opsetid("", 27)], ir_version=10
    )
    for k, v in files.items():
        (tmp_path / f"{k}.onnx").write_bytes(v if isinstance(v, bytes) else v.SerializeToString())
    return tmp_path


NOT_ONNX = (
    "not an ONNX model: the file does not parse as an ONNX protobuf (Error parsing message with "
    "type 'onnx.ModelProto': Wire format was corrupt); it may be truncated or of another format"
)
BAD = {
    "trunc": NOT_ONNX,
    "text": NOT_ONNX,
    "empty": "the file is empty, not an ONNX model",
    "cycle": "the graph has a cycle: 'add1' (Add) -> 'neg1' (Neg) -> 'add1' (Add)",
    "missing": "node 'conv1' (Conv): input 'W' is not produced by any node, graph input or "
    "initializer (a missing initializer?)",
    "extout": "tensor 'w' points at external data '../secret.bin' outside the model's directory; "
    "refusing it (path traversal)",
    "extabs": "tensor 'w' points at external data by absolute path '/etc/passwd'; refusing it "
    "(external data must live beside the model)",
    "opset5": "unsupported opset: ai.onnx version 5; qcc supports opsets 7 to 26",
    "opset27": "unsupported opset: ai.onnx version 27; qcc supports opsets 7 to 26",
    "nonexistent": "no such file",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_exit_2_one_message_no_file(cli, tmp_path, kind):
    d = _bad_models(tmp_path)
    src = d / f"{kind}.onnx"
    out = d / "out.onnx"
    code, _stdout, stderr = cli("compile", src, "--passes", PIPE, "-o", out)
    assert code == 2
    assert stderr.splitlines()[0] == f"error: {src}: {BAD[kind]}"
    assert "Traceback" not in stderr and len(stderr.splitlines()) <= 3
    assert not out.exists()
    assert not [p for p in d.iterdir() if "qcc-tmp" in p.name]


def test_inspect_also_rejects_bad_input(cli, tmp_path):
    d = _bad_models(tmp_path)
    code, _, stderr = cli("inspect", d / "cycle.onnx")
    assert code == 2 and "the graph has a cycle" in stderr


def test_unknown_pass_and_bad_option_fail_before_reading_the_model(cli, tmp_path):
    out = tmp_path / "o.onnx"
    code, _, stderr = cli(
        "compile", tmp_path / "nope.onnx", "--passes", "fold-batchnrom", "-o", out
    )
    assert code == 2
    assert (
        stderr.splitlines()[0]
        == "error: unknown pass 'fold-batchnrom'; did you mean 'fold-batchnorm'?"
    )
    code, _, stderr = cli(
        "compile", tmp_path / "nope.onnx", "--passes", "fold-constants{max-bytez=3}", "-o", out
    )
    assert stderr.splitlines()[0] == (
        "error: pass 'fold-constants' has no option 'max-bytez'; did you mean 'max-bytes'? "
        "(options: max-bytes)"
    )
    code, _, stderr = cli(
        "compile", tmp_path / "nope.onnx", "--passes", "fold-constants{max-bytes=lots}", "-o", out
    )
    assert stderr.splitlines()[0] == (
        "error: pass 'fold-constants': option 'max-bytes' expects int, got 'lots'"
    )


@register_pass("test-cli-crash")
def _crash(graph, ctx) -> PassResult:
    """A pass that fails (for tests)."""
    raise RuntimeError("boom")


def test_failing_pass_is_named_with_passes_before_and_no_traceback(cli, model_file, tmp_path):
    out = tmp_path / "o.onnx"
    out.write_bytes(b"old")
    code, _, stderr = cli(
        "compile", model_file, "--passes", "fold-constants,test-cli-crash", "-o", out
    )
    assert code == 2
    assert stderr.splitlines()[0] == (
        "error: pass 'test-cli-crash' failed: internal error: RuntimeError: boom"
    )
    assert "passes that ran before: fold-constants" in stderr
    assert "Traceback" not in stderr
    assert out.read_bytes() == b"old"
    code, _, stderr = cli("--debug", "compile", model_file, "--passes", "test-cli-crash", "-o", out)
    assert "Traceback" in stderr


def test_output_suffix_and_directory_are_checked(cli, model_file, tmp_path):
    code, _, stderr = cli("compile", model_file, "-o", tmp_path / "x.txt")
    assert code == 2 and "cannot write .txt: qcc writes .onnx and .tflite models" in stderr
    # a .tflite output runs the default TFLite recipe, which calibrates
    code, _, stderr = cli("compile", model_file, "-o", tmp_path / "x.tflite")
    assert code == 2 and "a pass reads calibration data but no calibration data is given" in stderr
    assert not (tmp_path / "x.tflite").exists()
    code, _, stderr = cli("compile", model_file, "-o", tmp_path / "nodir" / "x.onnx")
    assert code == 2 and "output directory" in stderr and "does not exist" in stderr


def test_passes_lists_every_pass_with_options(cli):
    code, stdout, _ = cli("passes", "--format", "json")
    assert code == 0
    data = {p["name"]: p for p in json.loads(stdout)}
    for name in (
        "fold-constants",
        "eliminate-dead-code",
        "eliminate-identity",
        "fold-batchnorm",
        "fuse-activations",
    ):
        assert name in data and data[name]["summary"]
    opt = data["fold-constants"]["options"][0]
    assert opt == {
        "name": "max-bytes",
        "type": "int",
        "default": 16 << 20,
        "help": "do not fold a node whose output is larger than this many bytes and larger than "
        "its inputs (default 16 MiB).",
    }
    code, stdout, _ = cli("passes", "fold-batchnorm")
    assert code == 0 and "standalone" in stdout and "Algebra" not in stdout


def test_inspect_shows_io_ops_and_unknown_shapes(cli, tmp_path):
    g = helper.make_graph(
        [
            helper.make_node("Mystery", ["x"], ["m"], domain="com.example", name="mystery"),
            helper.make_node("Relu", ["m"], ["y"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", F, ["N", 3])],
        [helper.make_tensor_value_info("y", F, None)],
    )
    m = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
        ir_version=9,
    )
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    code, stdout, _ = cli("inspect", p, "--format", "json")
    assert code == 0
    info = json.loads(stdout)
    assert info["inputs"] == [{"name": "x", "type": "float32[N,3]"}]
    assert info["ops"] == {"Relu": 1, "com.example::Mystery": 1}
    assert info["opsets"] == {"ai.onnx": 17, "com.example": 1}
    assert {"value": "m", "node": "'mystery' (com.example::Mystery)"} in info["unknown_shapes"]
    code, stdout, _ = cli("inspect", p)
    assert "shape inference could not resolve 2 values" in stdout
