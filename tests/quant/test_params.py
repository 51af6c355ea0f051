"""Scales and zero points; quantization is bit-identical to onnxruntime's QuantizeLinear."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from qcc.quant.params import compute_qparams, dequantize, quantize, quantize_bias
from qcc.quant.scheme import QDType
from tests.conftest import make_model, ort_run


def test_asymmetric_uint8():
    qp = compute_qparams(-1.0, 3.0, QDType.UINT8, symmetric=False)
    assert qp.scale == np.float32(4 / 255) and int(qp.zero_point) == 64
    qp = compute_qparams(0.5, 2.0, QDType.UINT8, symmetric=False)  # widened to include 0
    assert int(qp.zero_point) == 0 and qp.scale == np.float32(2 / 255)


def test_symmetric_int8_uses_127():
    qp = compute_qparams(
        np.array([-2.0, -0.5]), np.array([1.0, 0.25]), QDType.INT8, symmetric=True, axis=0
    )
    assert qp.scale.tolist() == [np.float32(2 / 127), np.float32(0.5 / 127)]
    assert qp.zero_point.tolist() == [0, 0] and qp.axis == 0
    r = compute_qparams(-1.0, 1.0, QDType.INT8, symmetric=True, reduce_range=True)
    assert r.scale == np.float32(1 / 64)


def test_zero_range_gets_scale_one():
    qp = compute_qparams(0.0, 0.0, QDType.UINT8, symmetric=False)
    assert qp.scale == 1.0 and int(qp.zero_point) == 0


def test_a_range_whose_scale_would_be_subnormal_gets_scale_one():
    # a dead filter (weights ~1e-40) next to a live one: LiteRT refuses subnormal scales
    qp = compute_qparams(
        np.array([-3e-40, -1.0]), np.array([3e-40, 1.0]), QDType.INT8, symmetric=True, axis=0
    )
    assert qp.scale.tolist() == [1.0, np.float32(1 / 127)] and qp.zero_point.tolist() == [0, 0]
    smallest_normal = np.finfo(np.float32).tiny * 127
    assert compute_qparams(-smallest_normal, smallest_normal, QDType.INT8, symmetric=True).scale < 1


@pytest.mark.parametrize(
    "dtype,tp", [(QDType.UINT8, TensorProto.UINT8), (QDType.INT8, TensorProto.INT8)]
)
def test_quantize_matches_onnxruntime_bit_for_bit(dtype, tp):
    rng = np.random.default_rng(0)
    # tie-heavy: values at exact half steps of the scale
    scale = np.float32(0.1)
    x = np.concatenate([rng.uniform(-20, 20, 20_000), (np.arange(-300, 300) + 0.5) * 0.1]).astype(
        np.float32
    )
    qp = compute_qparams(-13.0, 11.0, dtype, symmetric=False)
    qp = type(qp)(dtype, scale, qp.zero_point, None)
    model = make_model(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])],
        {"x": (TensorProto.FLOAT, [x.size])},
        {"y": (tp, [x.size])},
        {"s": np.array(scale), "z": qp.zero_point},
    )
    assert np.array_equal(ort_run(model, {"x": x})[0], quantize(x, qp))
    back = make_model(
        [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        {"q": (tp, [x.size])},
        {"y": (TensorProto.FLOAT, [x.size])},
        {"s": np.array(scale), "z": qp.zero_point},
    )
    q = quantize(x, qp)
    assert ort_run(back, {"q": q})[0].tobytes() == dequantize(q, qp).tobytes()


def test_bias_scale_is_product_of_scales_in_float32():
    q, s = quantize_bias(
        np.array([1.0, -2.0], np.float32), np.float32(0.02), np.array([0.5, 0.25], np.float32)
    )
    assert s.dtype == np.float32 and s.tolist() == [
        np.float32(np.float32(0.02) * np.float32(0.5)),
        np.float32(np.float32(0.02) * np.float32(0.25)),
    ]
    assert q.dtype == np.int32 and q.tolist() == [100, -400]
