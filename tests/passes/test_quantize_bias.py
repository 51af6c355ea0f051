"""A Conv channel whose bias dwarfs its weights: quantize widens that channel's weight scale so
the int32 bias stays within +-2**30, instead of saturating near -2**31 where onnxruntime's int32
accumulator wraps around (seen on ppocrv4_det, where that channel's output was 10 LSB off)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from qcc.frontend import lower_model
from qcc.quant.params import BIAS_LIMIT, sqnr_db
from tests.conftest import make_model, ort_run
from tests.passes.test_quantize import quantize

F = TensorProto.FLOAT


def test_bias_beyond_int32_widens_the_weight_scale():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((3, 4, 1, 1)) * 0.5).astype(np.float32)
    w[1] = 1e-9  # channel 1: (almost) no weights, a large bias
    b = np.array([0.1, -40.0, 0.2], np.float32)
    proto = make_model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")],
        {"x": (F, [1, 4, 6, 6])},
        {"y": (F, [1, 3, 6, 6])},
        {"w": w, "b": b},
    )
    feeds = [{"x": rng.standard_normal((1, 4, 6, 6)).astype(np.float32)} for _ in range(4)]
    m, records = quantize(proto, feeds)
    assert records[-1].stats.get("weight-scale-widened-for-int32-bias") == 1
    bias_q = next(v.const for v in m.graph.initializers.values() if v.const.dtype == np.int32)
    assert np.abs(bias_q.astype(np.int64)).max() <= BIAS_LIMIT
    ref = ort_run(proto, feeds[0])[0]
    got = ort_run(lower_model(m), feeds[0])[0]
    assert sqnr_db(ref[0, 1], got[0, 1]) > 30  # the big-bias channel is right
    assert sqnr_db(ref, got) > 25
