"""ONNX in and out: exact round trips, external data, subgraphs, shape reports, atomic writes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcc.errors import ModelError, QccError
from qcc.frontend import lower_model, read_model, save_model, write_model
from qcc.frontend import writer as writer_mod
from qcc.ir import DType
from qcc.ir.core import constant_value
from tests.conftest import lift, make_model, ort_run, random_feeds

F = TensorProto.FLOAT


def conv_relu(seed: int = 0, co: int = 3) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    return make_model(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ],
        {"x": (F, [1, 2, 5, 5])},
        {"y": (F, [1, co, 5, 5])},
        {
            "w": rng.standard_normal((co, 2, 3, 3)).astype(np.float32),
            "b": rng.standard_normal(co).astype(np.float32),
        },
    )


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    c = onnx.ModelProto()
    c.CopyFrom(proto)
    return c


def test_round_trip_is_bit_exact_and_deterministic(tmp_path):
    proto = conv_relu()
    src = tmp_path / "m.onnx"
    onnx.save(proto, src)
    m = read_model(src)
    m.verify()
    out1, out2 = tmp_path / "a.onnx", tmp_path / "b.onnx"
    save_model(m, out1)
    save_model(read_model(src), out2)
    assert out1.read_bytes() == out2.read_bytes()
    feeds = random_feeds(proto)
    for a, b in zip(ort_run(proto, feeds), ort_run(str(out1), feeds), strict=True):
        assert a.tobytes() == b.tobytes()


def test_float_data_and_negative_zero_survive(tmp_path):
    vals = np.array([-0.0, np.nan, 1e-45, np.inf], np.float32)
    t = helper.make_tensor("c", TensorProto.FLOAT, [4], vals.tolist())  # float_data, not raw
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[t],
    )
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    m = lift(proto)
    back = numpy_helper.to_array(lower_model(m).graph.initializer[0])
    assert back.tobytes() == vals.tobytes()


def test_unsorted_graph_loads_sorted():
    g = helper.make_graph(
        [
            helper.make_node("Neg", ["a"], ["y"], name="second"),
            helper.make_node("Relu", ["x"], ["a"], name="first"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    m = lift(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9))
    assert [n.name for n in m.graph] == ["first", "second"]
    m.verify()


def test_constant_nodes_string_and_bfloat16_tensors_round_trip():
    bf = helper.make_tensor("bf", TensorProto.BFLOAT16, [2], [1.5, -2.0])
    g = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["k"], value=numpy_helper.from_array(np.arange(3, dtype=np.int64))
            ),
            helper.make_node("Constant", [], ["s"], value_strings=["a", "é"]),
            helper.make_node("Cast", ["bf"], ["bff"], to=TensorProto.FLOAT),
            helper.make_node("Identity", ["k"], ["y"]),
        ],
        "g",
        [],
        [
            helper.make_tensor_value_info("y", TensorProto.INT64, [3]),
            helper.make_tensor_value_info("bff", TensorProto.FLOAT, [2]),
        ],
        initializer=[bf],
    )
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    m = lift(proto)
    assert m.graph.initializers["bf"].dtype is DType.BFLOAT16
    back = lower_model(m)
    onnx.checker.check_model(back)
    assert ort_run(back, {})[1].tolist() == [1.5, -2.0]
    s_attr = back.graph.node[1].attribute[0]
    assert list(s_attr.strings) == [b"a", "é".encode()]


def test_if_subgraph_is_carried_through(tmp_path):
    then = helper.make_graph(
        [helper.make_node("Mul", ["h", "two"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])],
    )
    els = helper.make_graph(
        [helper.make_node("Neg", ["h"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])],
    )
    g = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["h"], name="relu"),
            helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=els),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[numpy_helper.from_array(np.full(2, 2.0, np.float32), "two")],
    )
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    m = lift(proto)
    h = m.graph.nodes[0].output
    assert sorted(u.node.op_type for u in h.uses) == ["Mul", "Neg"]
    assert len(m.graph.initializers["two"].uses) == 1  # read inside the then-branch
    back = lower_model(m)
    onnx.checker.check_model(back)
    x = np.array([-1.0, 3.0], np.float32)
    for cond in (True, False):
        feeds = {"x": x, "cond": np.array(cond)}
        assert ort_run(back, feeds)[0].tolist() == ort_run(proto, feeds)[0].tolist()


def test_external_data_is_loaded_and_written(tmp_path):
    proto = conv_relu(co=16)  # a weight above the 1 KiB external-data threshold
    (tmp_path / "sub").mkdir()
    src = tmp_path / "sub" / "m.onnx"
    onnx.save(
        _copy(proto), src, save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    m = read_model(src)
    assert m.graph.initializers["w"].const.shape == (16, 2, 3, 3)
    out = tmp_path / "out.onnx"
    files = save_model(m, out, external_data=True)
    assert files == [out, tmp_path / "out.onnx.data"]
    feeds = random_feeds(proto)
    assert ort_run(str(out), feeds)[0].tobytes() == ort_run(proto, feeds)[0].tobytes()
    leftovers = [p.name for p in tmp_path.iterdir() if "qcc-tmp" in p.name]
    assert leftovers == []


def _squeeze_v11() -> onnx.ModelProto:
    """Squeeze's axes are an attribute at opset 11 and an input from 13 on."""
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Squeeze", ["r"], ["y"], axes=[0], name="squeeze"),
        ],
        {"x": (F, [1, 3])},
        {"y": (F, [3])},
        opset=11,
    )


def test_read_converts_the_protobuf_before_lifting(tmp_path):
    src = tmp_path / "m.onnx"
    onnx.save(_squeeze_v11(), src)
    asked = []
    m = read_model(src, opset=lambda v: asked.append(v) or 14)
    assert asked == [11] and m.opset == 14
    sq = next(n for n in m.graph if n.op_type == "Squeeze")
    assert not sq.attrs and constant_value(sq.input(1)).tolist() == [0]  # axes: now an input
    # the same model the old path (lift, lower, convert, re-lift) gives
    from qcc.frontend import convert_opset

    old = lower_model(convert_opset(read_model(src), 14))
    assert lower_model(m).graph == old.graph
    x = {"x": np.array([[-1.0, 0.5, 2.0]], np.float32)}
    assert ort_run(lower_model(m), x)[0].tolist() == [0.0, 0.5, 2.0]


def test_read_leaves_external_data_models_to_the_caller(tmp_path):
    proto = conv_relu(co=16)
    proto.opset_import[0].version = 11
    src = tmp_path / "m.onnx"
    onnx.save(proto, src, save_as_external_data=True, location="w.bin", size_threshold=0)
    assert read_model(src, opset=lambda v: 14).opset == 11


def test_compile_converts_an_external_data_model_after_reading(cli, tmp_path):
    proto = conv_relu(co=16)
    proto.opset_import[0].version = 11
    src = tmp_path / "m.onnx"
    onnx.save(proto, src, save_as_external_data=True, location="w.bin", size_threshold=0)
    recipe = tmp_path / "r.q"
    recipe.write_text("pipeline { eliminate-dead-code }\ntarget onnx { opset = 13 }\n")
    code, _, stderr = cli("compile", src, "-r", recipe, "-o", tmp_path / "o.onnx")
    assert code == 0, stderr
    out = onnx.load(tmp_path / "o.onnx")
    assert {o.domain: o.version for o in out.opset_import}[""] == 13
    feeds = random_feeds(proto)
    assert ort_run(out, feeds)[0].tobytes() == ort_run(conv_relu(co=16), feeds)[0].tobytes()


def test_a_broken_model_gets_its_own_diagnostic_not_the_converters(cli, tmp_path):
    # opset 11 -> 13 for a TFLite output, and a node reading a value nothing produces: the
    # error names the dangling value, as it does when no conversion is asked for
    proto = _squeeze_v11()
    proto.graph.node[1].input[0] = "nowhere"
    src = tmp_path / "m.onnx"
    onnx.save(proto, src)
    out = tmp_path / "o.onnx"
    code, _, plain = cli("compile", src, "--passes", "eliminate-dead-code", "-o", out)
    recipe = tmp_path / "r.q"
    recipe.write_text("pipeline { eliminate-dead-code }\ntarget onnx { opset = 13 }\n")
    code2, _, converted = cli("compile", src, "-r", recipe, "-o", out)
    assert code == code2 == 2
    assert "nowhere" in plain and converted == plain
    assert not out.exists()


def test_large_models_switch_to_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_mod, "EXTERNAL_DATA_THRESHOLD", 100)
    proto = conv_relu(co=16)
    feeds = random_feeds(proto)
    for i, write in enumerate(
        (lambda p: save_model(lift(proto), p), lambda p: write_model(proto, p))
    ):
        out = tmp_path / f"big{i}.onnx"
        files = write(out)
        assert [f.name for f in files] == [f"big{i}.onnx", f"big{i}.onnx.data"]
        assert ort_run(str(out), feeds)[0].tobytes() == ort_run(proto, feeds)[0].tobytes()
        # read back: external tensors are memory-mapped, not copied
        back = read_model(out)
        assert isinstance(back.graph.initializers["w"].const.base, np.memmap)
    with pytest.raises(QccError, match="above protobuf's 2 GB limit"):
        save_model(lift(proto), tmp_path / "x.onnx", external_data=False)


def test_external_data_symlink_escape_is_refused(tmp_path):
    proto = conv_relu()
    outside = tmp_path / "outside"
    outside.mkdir()
    inside = tmp_path / "model"
    inside.mkdir()
    onnx.save(
        proto, outside / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0
    )
    (inside / "m.onnx").write_bytes((outside / "m.onnx").read_bytes())
    (inside / "w.bin").symlink_to(outside / "w.bin")
    with pytest.raises(
        ModelError,
        match=r"points at external data 'w.bin' outside the model's directory; refusing it",
    ):
        read_model(inside / "m.onnx")


def test_external_data_beyond_file_end_is_refused(tmp_path):
    proto = conv_relu()
    onnx.save(
        proto, tmp_path / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0
    )
    data = (tmp_path / "w.bin").read_bytes()
    (tmp_path / "w.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ModelError, match=r"external data range \[\d+, \d+\) lies beyond the end of 'w.bin'"
    ):
        read_model(tmp_path / "m.onnx")


def test_shape_report_lists_unresolved_values(tmp_path):
    # a custom-domain op stops ONNX shape inference; everything after it is unknown
    g = helper.make_graph(
        [
            helper.make_node("Mystery", ["x"], ["m"], domain="com.example", name="mystery"),
            helper.make_node("Relu", ["m"], ["y"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    proto = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
        ir_version=9,
    )
    onnx.save(proto, tmp_path / "m.onnx")
    m = read_model(tmp_path / "m.onnx")
    report = m.opaque["shape_report"]
    assert ("m", "'mystery' (com.example::Mystery)") in report.unknown


def test_failed_check_leaves_destination_untouched(tmp_path):
    proto = conv_relu()
    m = lift(proto)
    m.graph.nodes[0].op_type = "NoSuchOp"  # passes the IR verifier, fails onnx.checker
    dest = tmp_path / "out.onnx"
    dest.write_bytes(b"previous")
    with pytest.raises(ModelError, match=r"fails onnx\.checker, so nothing was written"):
        save_model(m, dest)
    assert dest.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]


def test_interrupt_during_write_leaves_no_file(tmp_path, monkeypatch):
    proto = conv_relu()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx.checker, "check_model", boom)
    with pytest.raises(KeyboardInterrupt):
        write_model(proto, tmp_path / "out.onnx")
    assert list(tmp_path.iterdir()) == []


def test_scalar_constants_keep_rank_zero():
    proto = make_model(
        [helper.make_node("Add", ["x", "s"], ["y"])],
        {"x": (F, [])},
        {"y": (F, [])},
        {"s": np.array(2.5, np.float32)},
    )
    m = lift(proto)
    assert m.graph.initializers["s"].shape == ()
    back = lower_model(m)
    assert list(back.graph.initializer[0].dims) == []
    assert ort_run(back, {"x": np.array(1.0, np.float32)})[0].shape == ()


def test_onnxruntime_sessions_do_not_spin_between_runs():
    # calibration alternates short runs with numpy work: spinning threads took that work's core
    from qcc.frontend.ort_eval import session_options

    for optimize in (False, True):
        so = session_options(optimize=optimize)
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
