"""Shared test helpers: build small ONNX models, run them in onnxruntime, find the zoo."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from qcc.frontend import lift_model, lower_model
from qcc.ir import Model

ZOO = Path(os.environ.get("QCC_ZOO", Path.home() / ".cache" / "qcc-zoo"))
ZOO_MODELS = sorted(p.parent.name for p in ZOO.glob("*/model.onnx")) if ZOO.is_dir() else []


def parse(text: str) -> onnx.ModelProto:
    """A ModelProto from ONNX's textual syntax (checked)."""
    m = onnx.parser.parse_model(text)
    onnx.checker.check_model(m)
    return m


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, tuple[int, list | None]],
    outputs: dict[str, tuple[int, list | None]],
    inits: dict[str, np.ndarray] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    """A checked ModelProto from nodes, ``{name: (elem_type, shape)}`` I/O and initializers."""
    from onnx import helper, numpy_helper

    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(k, t, s) for k, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(k, t, s) for k, (t, s) in outputs.items()],
        initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    onnx.checker.check_model(m)
    return m


def lift(proto: onnx.ModelProto) -> Model:
    from qcc.frontend.reader import infer_shapes

    inferred, _ = infer_shapes(proto)
    return lift_model(inferred)


def run_pass(model: Model, name: str, **options):
    """Run one pass through the pass manager (verifying the IR after it); return its record."""
    from qcc.pipeline import PassInvocation, PassManager, get_pass

    inv = PassInvocation(name, get_pass(name).bind(options))
    (record,) = PassManager([inv], verify_each=True).run(model)
    return record


def ops(model: Model) -> list[str]:
    return [n.op_type for n in model.graph]


def assert_same_outputs(before: onnx.ModelProto, after: Model, feeds=None, rtol=0.0, atol=0.0):
    """``after`` computes what ``before`` did (exactly, or within rtol/atol) in onnxruntime."""
    feeds = feeds if feeds is not None else random_feeds(before)
    ref = ort_run(before, feeds)
    got = run_ir(after, feeds)
    assert len(ref) == len(got)
    for a, b in zip(ref, got, strict=True):
        if rtol == 0 and atol == 0:
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        else:
            np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)


def ort_session(proto: onnx.ModelProto | bytes | str | Path, optimize: bool = False):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = proto.SerializeToString() if isinstance(proto, onnx.ModelProto) else str(proto)
    if isinstance(proto, bytes):
        src = proto
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def ort_run(proto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort_session(proto).run(None, feeds)


def run_ir(model: Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort_run(lower_model(model), feeds)


def random_feeds(proto: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inits = {t.name for t in proto.graph.initializer}
    feeds = {}
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


@pytest.fixture
def cli():
    """Invoke the qcc CLI in-process; returns (exit_code, stdout, stderr)."""
    from qcc.cli import main

    runner = CliRunner()

    def invoke(*args: str):
        res = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    return invoke


def zoo_model(name: str) -> Path:
    return ZOO / name / "model.onnx"


def zoo_feeds(name: str, n: int = 2) -> list[dict[str, np.ndarray]]:
    """The first ``n`` calibration samples of a zoo model, as feed dicts."""
    d = ZOO / name
    if (d / "calib.npy").exists():
        arr = np.load(d / "calib.npy")
        sess = ort_session(d / "model.onnx")
        inp = sess.get_inputs()[0].name
        return [{inp: arr[i]} for i in range(min(n, len(arr)))]
    z = np.load(d / "calib.npz")
    return [{k: z[k][i] for k in z.files} for i in range(n)]


needs_zoo = pytest.mark.skipif(
    not ZOO_MODELS,
    reason=f"the model zoo is not built at {ZOO} (run ../shared/zoo/build.sh or set QCC_ZOO)",
)


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the expected output of golden tests instead of comparing",
    )
