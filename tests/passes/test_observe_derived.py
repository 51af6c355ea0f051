"""observe: tensors whose range follows from another's by a monotone scalar map (the
decomposed HardSwish's ``x / 6``, ``+ 1/2`` and clamp) get no observer of their own, and
quantize gives them exactly the parameters observing them would have given."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from qcc.quant.params import compute_qparams
from qcc.quant.scheme import ObserverSpec, QDType, QuantScheme
from tests.conftest import make_model, ort_run
from tests.passes.test_quantize import quantize

F = TensorProto.FLOAT
RNG = np.random.default_rng(11)


def hardswish_chain():
    return make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("Mul", ["c", "sixth"], ["m"]),
            helper.make_node("Add", ["m", "half"], ["a"]),
            helper.make_node("Clip", ["a", "zero", "one"], ["g"]),
            helper.make_node("Mul", ["c", "g"], ["y"]),
        ],
        {"x": (F, [1, 4, 6, 6])},
        {"y": (F, [1, 8, 6, 6])},
        {
            "w": (RNG.standard_normal((8, 4, 1, 1)) * 2).astype(np.float32),
            "sixth": np.array(1 / 6, np.float32),
            "half": np.array(0.5, np.float32),
            "zero": np.array(0.0, np.float32),
            "one": np.array(1.0, np.float32),
        },
    )


def feeds(n=6):
    return [{"x": RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)} for _ in range(n)]


def tap_ranges(proto, names, data):
    """``{name: (min, max)}`` of the named tensors of ``proto`` over the feeds ``data`` (each
    of shape [1, 8, 6, 6])."""
    taps = make_model(
        [*proto.graph.node],
        {"x": (F, [1, 4, 6, 6])},
        {n: (F, [1, 8, 6, 6]) for n in names},
        {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer},
    )
    outs = [ort_run(taps, f) for f in data]
    return {
        n: (min(float(o[k].min()) for o in outs), max(float(o[k].max()) for o in outs))
        for k, n in enumerate(names)
    }


def q_params(m, name):
    q = next(n for n in m.graph if n.op_type == "QuantizeLinear" and n.input(0).name == name)
    return float(q.input(1).const), int(q.input(2).const)


def test_scalar_map_outputs_take_their_range_from_the_source_observer():
    proto = hardswish_chain()
    data = feeds()
    m, records = quantize(proto, data, fuse=False)
    observe = next(r for r in records if r.name == "observe")
    assert observe.stats["derived"] == 3  # m, a and g; c and y are observed
    assert observe.stats["tensors"] == 3  # x, c, y
    # the parameters are those of the tensors' own min/max on the calibration data
    ranges = tap_ranges(proto, ["m", "g"], data)
    lo, hi = ranges["m"]
    want = compute_qparams(lo, hi, QDType.UINT8, symmetric=False)
    scale, zp = q_params(m, "m")
    assert zp == int(want.zero_point)
    np.testing.assert_allclose(scale, float(want.scale), rtol=1e-6)
    # the clamp: absorbed into the gate's quantizer, its range inside [0, 1]
    hi_g = ranges["g"][1]
    scale, zp = q_params(m, "g")
    assert zp == 0 and np.float32(255) * np.float32(scale) <= np.float32(1.0)
    np.testing.assert_allclose(255 * scale, min(hi_g, 1.0), rtol=1e-6)


def test_entropy_and_mse_schemes_still_observe_every_tensor():
    mse = QuantScheme("a8", QDType.UINT8, symmetric=False, observer=ObserverSpec("mse"))
    _, records = quantize(hardswish_chain(), feeds(), fuse=False, activations=mse)
    observe = next(r for r in records if r.name == "observe")
    assert "derived" not in observe.stats and observe.stats["tensors"] == 6


def test_a_relu_after_a_conv_takes_the_conv_outputs_range_clamped_at_zero():
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Conv", ["r", "w2"], ["y"]),
        ],
        {"x": (F, [1, 4, 6, 6])},
        {"y": (F, [1, 8, 6, 6])},
        {
            "w": RNG.standard_normal((8, 4, 1, 1)).astype(np.float32),
            "w2": RNG.standard_normal((8, 8, 1, 1)).astype(np.float32),
        },
    )
    data = feeds()
    m, records = quantize(proto, data, fuse=False)
    observe = next(r for r in records if r.name == "observe")
    assert observe.stats["derived"] == 1 and observe.stats["tensors"] == 3  # x, c, y
    hi = tap_ranges(proto, ["r"], data)["r"][1]
    want = compute_qparams(0.0, hi, QDType.UINT8, symmetric=False)
    scale, zp = q_params(m, "r")
    assert zp == int(want.zero_point) == 0
    np.testing.assert_allclose(scale, float(want.scale), rtol=1e-6)


def test_overlapped_calibration_feeds_the_observers_exactly_as_a_serial_loop(monkeypatch):
    import qcc.passes.calibrate as calibrate

    # a moving average depends on every batch and on their order
    avg = QuantScheme(
        "a8",
        QDType.UINT8,
        symmetric=False,
        observer=ObserverSpec("moving_average", (("momentum", 0.5),)),
    )

    def params(limit, data):
        monkeypatch.setattr(calibrate, "OVERLAP_BYTES", limit)
        m = quantize(proto, data, fuse=False, activations=avg)[0]
        return [v.const for n in m.graph for v in n.inputs if v is not None and v.const is not None]

    proto, data = hardswish_chain(), feeds(8)
    serial = params(-1, data)  # waits for the observers before each run
    overlapped = params(1 << 30, data)
    assert len(serial) == len(overlapped)
    for x, y in zip(serial, overlapped, strict=True):
        np.testing.assert_array_equal(x, y)
    # the test can tell: the same batches in another order give other parameters
    reordered = params(1 << 30, data[::-1])
    assert any(not np.array_equal(x, y) for x, y in zip(serial, reordered, strict=True))


def test_onnxruntime_gets_one_core_less_while_the_observers_run_beside_it(monkeypatch):
    import onnxruntime as ort
    import qcc.passes.calibrate as calibrate

    threads = []

    class Recording(ort.InferenceSession):
        def __init__(self, model, options, **kw):
            threads.append(options.intra_op_num_threads)
            super().__init__(model, options, **kw)

    monkeypatch.setattr(calibrate.ort, "InferenceSession", Recording)
    monkeypatch.setattr(calibrate, "_cores", lambda: 4)
    proto, data = hardswish_chain(), feeds(4)
    quantize(proto, data, fuse=False)
    assert threads == [3]  # small batches: every run overlaps an update
    threads.clear()
    monkeypatch.setattr(calibrate, "OVERLAP_BYTES", 0)  # every batch too large to overlap
    quantize(proto, data, fuse=False)
    # the first run, before any batch size is known, then onnxruntime's own choice (0)
    assert threads == [3, 0]


def test_a_sigmoid_and_a_tanh_take_their_range_through_the_function():
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("Sigmoid", ["c"], ["s"]),
            helper.make_node("Mul", ["c", "s"], ["y"]),  # a SiLU
            helper.make_node("Tanh", ["c"], ["t"]),
            helper.make_node("Add", ["y", "t"], ["z"]),
        ],
        {"x": (F, [1, 4, 6, 6])},
        {"z": (F, [1, 8, 6, 6])},
        {"w": (RNG.standard_normal((8, 4, 1, 1)) * 3).astype(np.float32)},
    )
    data = feeds()
    m, records = quantize(proto, data, fuse=False, qopts={"saturation_cut": False})
    observe = next(r for r in records if r.name == "observe")
    assert observe.stats["derived"] == 2  # s, t
    ranges = tap_ranges(proto, ["c", "s", "t"], data)
    c_lo, c_hi = ranges["c"]
    for name, f in (("s", lambda v: 1 / (1 + np.exp(-v))), ("t", np.tanh)):
        # the parameters are those of f(the Conv output's range) ...
        want = compute_qparams(float(f(c_lo)), float(f(c_hi)), QDType.UINT8, symmetric=False)
        scale, zp = q_params(m, name)
        assert zp == int(want.zero_point), name
        np.testing.assert_allclose(scale, float(want.scale), rtol=1e-6, err_msg=name)
        # ... which is the tensor's own range up to float32 rounding of f
        np.testing.assert_allclose(ranges[name], [f(c_lo), f(c_hi)], atol=1e-6, err_msg=name)


def test_ops_that_only_rearrange_values_share_their_inputs_range_without_an_observer():
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", ["t", "shape"], ["r"]),
            helper.make_node("MatMul", ["r", "m"], ["y"]),
        ],
        {"x": (F, [1, 4, 6, 6])},
        {"y": (F, [36, 3])},
        {
            "w": RNG.standard_normal((8, 4, 1, 1)).astype(np.float32),
            "shape": np.array([36, 8], np.int64),
            "m": RNG.standard_normal((8, 3)).astype(np.float32),
        },
    )
    m, records = quantize(proto, feeds(), fuse=False)
    observe = next(r for r in records if r.name == "observe")
    assert observe.stats["derived"] == 2 and observe.stats["tensors"] == 3  # x, c, y
    assert q_params(m, "t") == q_params(m, "r") == q_params(m, "c")
