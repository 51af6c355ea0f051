"""Each op the backend writes, on the same tiny QDQ graphs as test_tflite_ops.py: the .tflite it
writes, run by LiteRT and by qcc's interpreter, is bit-exact on every integer tensor under the
default (XNNPACK) and the reference resolver (`qcc verify --tensors all`), and the interpreter
assigns each operator to XNNPACK exactly as LiteRT does."""

from __future__ import annotations

import zlib

import pytest

from qcc.backend.tflite import convert
from qcc.interp.tflite.model import parse
from qcc.interp.tflite.verify import random_feeds, verify_tflite
from tests.backend.qdq import G
from tests.backend.test_tflite_ops import CASES


@pytest.mark.parametrize("profile", ["tflite-xnnpack", "tflite-ref"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_matches_litert_on_the_backends_output(name: str, profile: str) -> None:
    build, _, _ = CASES[name]
    g = G(seed=zlib.crc32(name.encode()) % 1000)
    build(g)
    tfl = parse(convert(g.model(), source=f"{name}.onnx"), f"{name}.tflite")
    report = verify_tflite(tfl, random_feeds(tfl, 2), profile=profile, tensors="all")
    compared = [r for r in report.results if r.exact]
    assert compared, "no integer tensor was compared"
    bad = [(r.name, r.mismatches, r.max_diff) for r in report.integer_mismatches]
    assert bad == []  # bit-exact on every integer tensor
    assert report.delegation_differs == []


def test_kernel_equal_to_stride_transpose_conv_is_one_conv_and_depth_to_space():
    from tests.backend.qdq import op_counts

    build, _, _ = CASES["conv_transpose_kernel_is_stride_relu"]
    g = G(seed=1)
    build(g)
    data = convert(g.model())
    counts = dict(op_counts(data))
    # the Relu is fused into the CONV_2D: no RELU op, no TRANSPOSE_CONV
    assert counts == {"QUANTIZE": 1, "CONV_2D": 1, "DEPTH_TO_SPACE": 1, "DEQUANTIZE": 1}


def _strided_slices(data: bytes) -> list[list[int]]:
    tfl = parse(data, "m.tflite")
    return [
        [int(v) for v in tfl.tensors[op.inputs[3]].data]
        for op in tfl.operators
        if op.op == "STRIDED_SLICE"
    ]


def test_strided_slices_are_written_with_unit_strides_so_xnnpack_takes_them():
    from qcc.interp.tflite.delegate import xnnpack_takes

    build, _, _ = CASES["space_to_depth_slices"]
    g = G(seed=1)
    build(g)
    data = convert(g.model())
    strides = _strided_slices(data)
    assert len(strides) == 8 and all(s == [1, 1, 1, 1] for s in strides)
    tfl = parse(data, "m.tflite")
    kept_out = [op.op for op in tfl.operators if not xnnpack_takes(tfl, op)]
    assert kept_out == []
    # where [b, b + k*s) runs past the end the strided op stays (the builtin kernel runs it)
    build, _, _ = CASES["strided_slices_uneven"]
    g = G(seed=1)
    build(g)
    strides = _strided_slices(convert(g.model()))
    assert [s for s in strides if s != [1, 1, 1, 1]] == [[1, 1, 3, 1]]


@pytest.mark.parametrize("name", ["add_broadcast_const", "mul_const_scalar", "sub_mul"])
def test_per_tensor_tensors_are_written_with_quantized_dimension_0_so_xnnpack_takes_them(name):
    from qcc.interp.tflite.delegate import xnnpack_takes
    from tests.interp.tflite.builder import delegated_ops

    build, _, _ = CASES[name]
    g = G(seed=1)
    build(g)
    data = convert(g.model())
    tfl = parse(data, "m.tflite")
    per_tensor = [t for t in tfl.tensors if t.quant is not None and t.quant.per_tensor]
    assert per_tensor and all(t.quant.dim == 0 for t in per_tensor)
    binary = {op.index for op in tfl.operators if op.op in ("ADD", "SUB", "MUL")}
    assert binary and binary <= delegated_ops(data)  # LiteRT runs them in XNNPACK ...
    assert all(xnnpack_takes(tfl, op) for op in tfl.operators if op.index in binary)  # ... so do we
