"""fuse-activations: which patterns become groups, which do not, and the verifier's guard."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from qcc.errors import IRError, PassError
from qcc.ir import fusion_group
from tests.conftest import lift, make_model, run_pass

F = TensorProto.FLOAT


def conv_then(act_nodes, extra_inits=None, out="y"):
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((2, 2, 1, 1)).astype(np.float32), **(extra_inits or {})}
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), *act_nodes],
        {"x": (F, [1, 2, 3, 3])},
        {out: (F, [1, 2, 3, 3])},
        inits,
    )


def groups(m):
    seen = {}
    for n in m.graph:
        g = fusion_group(n)
        if g is not None:
            seen[id(g)] = g
    return [(g.rule, [n.op_type for n in g.nodes]) for g in seen.values()]


f32 = lambda v: np.array(v, np.float32)  # noqa: E731

CASES = {
    "conv-relu": ([helper.make_node("Relu", ["c"], ["y"])], {}, ["Conv", "Relu"]),
    "conv-clip": (
        [helper.make_node("Clip", ["c", "lo", "hi"], ["y"])],
        {"lo": f32(0), "hi": f32(6)},
        ["Conv", "Clip"],
    ),
    "conv-leakyrelu": ([helper.make_node("LeakyRelu", ["c"], ["y"])], {}, ["Conv", "LeakyRelu"]),
    "conv-silu": (
        [helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["y"])],
        {},
        ["Conv", "Sigmoid", "Mul"],
    ),
    "conv-hardswish": (
        [
            helper.make_node("HardSigmoid", ["c"], ["h"], alpha=1 / 6, beta=0.5),
            helper.make_node("Mul", ["c", "h"], ["y"]),
        ],
        {},
        ["Conv", "HardSigmoid", "Mul"],
    ),
    "conv-hardswish/paddle": (
        [
            helper.make_node("Add", ["c", "three"], ["a"]),
            helper.make_node("Clip", ["a", "zero", "six"], ["cl"]),
            helper.make_node("Mul", ["c", "cl"], ["m"]),
            helper.make_node("Div", ["m", "six"], ["y"]),
        ],
        {"three": f32(3), "zero": f32(0), "six": f32(6)},
        ["Conv", "Add", "Clip", "Mul", "Div"],
    ),
    "conv-hardsigmoid": (
        [helper.make_node("HardSigmoid", ["c"], ["y"])],
        {},
        ["Conv", "HardSigmoid"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_patterns_are_marked(case):
    nodes, inits, members = CASES[case]
    rule = case.split("/")[0]
    m = lift(conv_then(nodes, inits))
    rec = run_pass(m, "fuse-activations", rules=rule)
    assert groups(m) == [(rule, members)]
    assert rec.stats == {rule: 1}
    # idempotent: a second run marks nothing new
    rec2 = run_pass(m, "fuse-activations", rules=rule)
    assert rec2.stats == {"already-fused": 1} and groups(m) == [(rule, members)]
    # by default only the groups runtimes execute as one integer kernel are marked
    m = lift(conv_then(nodes, inits))
    run_pass(m, "fuse-activations")
    assert groups(m) == ([(rule, members)] if rule in ("conv-relu", "conv-clip") else [])


def test_shared_conv_output_is_not_fused():
    m = lift(
        make_model(
            [
                helper.make_node("Conv", ["x", "w"], ["c"]),
                helper.make_node("Relu", ["c"], ["y"]),
                helper.make_node("Neg", ["c"], ["z"]),
            ],
            {"x": (F, [1, 2, 3, 3])},
            {"y": (F, [1, 2, 3, 3]), "z": (F, [1, 2, 3, 3])},
            {"w": np.ones((2, 2, 1, 1), np.float32)},
        )
    )
    rec = run_pass(m, "fuse-activations")
    assert groups(m) == [] and not rec.changed


def test_wrong_hardswish_constants_are_not_fused():
    nodes, inits, _ = CASES["conv-hardswish/paddle"]
    m = lift(conv_then(nodes, {**inits, "three": f32(2.0)}))
    run_pass(m, "fuse-activations")
    assert groups(m) == []


def test_rules_option_selects_patterns_and_rejects_unknown_ones():
    nodes, inits, _ = CASES["conv-clip"]
    m = lift(conv_then(nodes, inits))
    run_pass(m, "fuse-activations", rules="conv-relu")
    assert groups(m) == []
    run_pass(m, "fuse-activations", rules="conv-relu,conv-clip")
    assert groups(m) == [("conv-clip", ["Conv", "Clip"])]
    with pytest.raises(PassError, match=r"got 'conv-rleu'; did you mean 'conv-relu'\?"):
        run_pass(m, "fuse-activations", rules="conv-rleu")


def test_verifier_catches_a_value_leaking_out_of_a_group():
    m = lift(conv_then(*CASES["conv-relu"][:2]))
    run_pass(m, "fuse-activations")
    from qcc.ir import Node

    conv = m.graph.nodes[0]
    leak = Node("Neg", [conv.output], name="leak")
    m.graph.append(leak)
    m.graph.outputs.append(leak.output)
    with pytest.raises(
        IRError, match=r"value 'c' inside fusion group 'conv-relu' is used outside the group"
    ):
        m.graph.verify()
