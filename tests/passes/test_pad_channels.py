"""pad-channels: the graph after the pass (weights, groups, shapes), the unchanged function
against onnxruntime, the channel sets it must leave alone, and the INT8 result onnxruntime
runs with the padded depthwise convolution."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from qcc.frontend import lower_model
from tests.conftest import assert_same_outputs, lift, make_model, ort_run, run_pass

F = TensorProto.FLOAT
RNG = np.random.default_rng(3)


def rand(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def mobile_block(c=24, *, out_dw=False, extra=None):
    """expand 1x1 -> HardSwish -> depthwise 3x3 -> squeeze-excite -> project 1x1 -> + x."""
    nodes = [
        helper.make_node("Conv", ["x", "we", "be"], ["e"]),
        helper.make_node("HardSwish", ["e"], ["eh"]),
        helper.make_node("Conv", ["eh", "wd", "bd"], ["d"], group=c, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d"], ["dr"]),
        helper.make_node("GlobalAveragePool", ["dr"], ["gp"]),
        helper.make_node("Conv", ["gp", "ws1", "bs1"], ["s1"]),
        helper.make_node("Relu", ["s1"], ["s1r"]),
        helper.make_node("Conv", ["s1r", "ws2", "bs2"], ["s2"]),
        helper.make_node("HardSigmoid", ["s2"], ["gate"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["dr", "gate"], ["se"]),
        helper.make_node("Mul", ["se", "scale"], ["sc"]),  # a per-channel constant
        helper.make_node("Conv", ["sc", "wp", "bp"], ["p"]),
        helper.make_node("Add", ["p", "x"], ["y"]),
    ]
    inits = {
        "we": rand(c, 8, 1, 1),
        "be": rand(c),
        "wd": rand(c, 1, 3, 3),
        "bd": rand(c),
        "ws1": rand(8, c, 1, 1),
        "bs1": rand(8),
        "ws2": rand(c, 8, 1, 1),
        "bs2": rand(c),
        "scale": rand(1, c, 1, 1) + 1.0,
        "wp": rand(8, c, 1, 1),
        "bp": rand(8),
    }
    outputs = {"y": (F, [1, 8, 10, 10])}
    if out_dw:
        outputs["d"] = (F, [1, c, 10, 10])
    if extra:
        nodes, inits = extra(nodes, inits)
    return make_model(nodes, {"x": (F, [1, 8, 10, 10])}, outputs, inits, opset=14)


def node(m, name_of_output):
    return next(n for n in m.graph if n.outputs[0].name == name_of_output)


def test_depthwise_set_is_padded_to_16_with_inert_channels_and_the_function_kept():
    proto = mobile_block(24)
    m = lift(proto)
    rec = run_pass(m, "pad-channels")
    assert rec.stats == {"channel sets padded": 1, "channels added": 8}
    assert rec.notes == ["(Conv) -> 'd': 24 -> 32 channels"]
    dw = node(m, "d")
    assert dw.attr("group") == 32 and dw.input(1).const.shape == (32, 1, 3, 3)
    assert not dw.input(1).const[24:].any() and not dw.input(2).const[24:].any()
    expand = node(m, "e")
    assert expand.input(1).const.shape == (32, 8, 1, 1) and not expand.input(2).const[24:].any()
    se1, se2, proj = node(m, "s1"), node(m, "s2"), node(m, "p")
    assert se1.input(1).const.shape == (8, 32, 1, 1) and not se1.input(1).const[:, 24:].any()
    assert se2.input(1).const.shape == (32, 8, 1, 1)
    assert proj.input(1).const.shape == (8, 32, 1, 1) and not proj.input(1).const[:, 24:].any()
    scale = node(m, "sc").input(1).const
    assert scale.shape == (1, 32, 1, 1) and not scale[:, 24:].any()
    assert node(m, "dr").outputs[0].shape == (1, 32, 10, 10)
    # HardSigmoid(0) = 0.5 in the padded gate lanes; the projection's zero columns drop them
    assert_same_outputs(proto, m, rtol=1e-5, atol=1e-5)


def test_a_multiple_already_met_and_a_custom_multiple():
    m = lift(mobile_block(32))
    assert not run_pass(m, "pad-channels").changed
    m = lift(mobile_block(24))
    assert not run_pass(m, "pad-channels", multiple=8).changed
    m = lift(mobile_block(20))
    rec = run_pass(m, "pad-channels", multiple=8)
    assert rec.stats["channels added"] == 4 and node(m, "d").attr("group") == 24


def test_channel_sets_that_cannot_take_padding_are_left_alone_with_the_reason():
    # the depthwise output is a graph output: its shape must not change
    m = lift(mobile_block(24, out_dw=True))
    rec = run_pass(m, "pad-channels")
    assert not rec.changed
    assert rec.notes == ["(Conv) -> 'd': 24 channels left as they are: graph output 'd'"]

    def divide_by_lanes(nodes, inits):  # a Div by the padded lanes would make inf * 0 = NaN
        nodes = list(nodes)
        i = next(k for k, n in enumerate(nodes) if n.output[0] == "sc")
        nodes[i] = helper.make_node("Div", ["scale", "se"], ["sc"])
        return nodes, inits

    m = lift(mobile_block(24, extra=divide_by_lanes))
    rec = run_pass(m, "pad-channels")
    assert not rec.changed and "divides by them" in rec.notes[0]

    def concat_two(nodes, inits):  # the depthwise reads a Concat of two layers' channels
        nodes = [helper.make_node("Conv", ["x", "wa"], ["a"]), *nodes]
        i = next(k for k, n in enumerate(nodes) if n.output[0] == "eh")
        nodes[i] = helper.make_node("Concat", ["e", "a"], ["eh"], axis=1)
        inits = dict(inits, we=inits["we"][:16], be=inits["be"][:16], wa=rand(8, 8, 1, 1))
        return nodes, inits

    m = lift(mobile_block(24, extra=concat_two))
    rec = run_pass(m, "pad-channels")
    assert not rec.changed and "holds other channels too" in rec.notes[0]


def test_int8_model_runs_the_padded_depthwise_in_integer():
    from tests.passes.test_quantize import optimized_ops, quantize

    proto = mobile_block(24)
    feeds = [{"x": rand(1, 8, 10, 10, scale=1.0)} for _ in range(8)]
    base, _ = quantize(proto, feeds)
    padded_proto = lower_model(_padded(proto))
    m, _ = quantize(padded_proto, feeds)
    ops = optimized_ops(m)
    assert ops["QLinearConv"] == 5 and "Conv" not in ops and "FusedConv" not in ops
    want = ort_run(proto, feeds[0])[0]
    got = ort_run(lower_model(m), feeds[0])[0]
    ref = ort_run(lower_model(base), feeds[0])[0]
    # padding changes nothing the quantizers see: the INT8 models agree
    np.testing.assert_array_equal(got, ref)
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()


def _padded(proto):
    m = lift(proto)
    run_pass(m, "pad-channels")
    return m
