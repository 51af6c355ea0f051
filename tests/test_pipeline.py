"""Pass registry, typed options, pipeline parsing and the pass manager's failure reports."""

from __future__ import annotations

import enum

import numpy as np
import pytest
from onnx import TensorProto, helper

from qcc.errors import PassError
from qcc.ir import Graph, Node
from qcc.pipeline import (
    PassContext,
    PassInvocation,
    PassManager,
    PassResult,
    SourceLocation,
    get_pass,
    parse_pass_list,
    register_pass,
)
from tests.conftest import lift, make_model


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


@register_pass("test-options")
def _opts(
    graph: Graph,
    ctx: PassContext,
    *,
    flag: bool = False,
    count: int = 1,
    ratio: float = 0.5,
    mode: Mode = Mode.SAFE,
    names: tuple[str, ...] = (),
) -> PassResult:
    """Exercise option types (test only).

    Options:
        flag: a switch.
        count: how many,
            over two lines.
    """
    return PassResult(stats={"count": count})


@register_pass("test-add-node")
def _add_node(graph: Graph, ctx: PassContext) -> PassResult:
    """Append a Neg on the first output (test only)."""
    out = graph.outputs[0]
    neg = Node("Neg", [out])
    graph.append(neg)
    graph.outputs[0] = neg.output
    return PassResult(changed=True)


@register_pass("test-corrupt")
def _corrupt(graph: Graph, ctx: PassContext) -> PassResult:
    """Break a use list behind the IR's back (test only)."""
    graph.nodes[0].inputs[0]._uses.clear()
    return PassResult(changed=True)


def model():
    return lift(
        make_model(
            [helper.make_node("Relu", ["x"], ["y"], name="relu")],
            {"x": (TensorProto.FLOAT, [2])},
            {"y": (TensorProto.FLOAT, [2])},
        )
    )


def test_registry_refuses_duplicates_and_bad_names():
    with pytest.raises(ValueError, match="registered twice"):
        register_pass("test-options")(lambda g, c: PassResult())
    with pytest.raises(ValueError, match="kebab-case"):
        register_pass("Bad_Name")


def test_options_are_typed_and_documented():
    info = get_pass("test-options")
    assert [(o.flag, o.type_name()) for o in info.options] == [
        ("flag", "bool"),
        ("count", "int"),
        ("ratio", "float"),
        ("mode", "fast|safe"),
        ("names", "list of str"),
    ]
    assert info.option("count").help == "how many, over two lines."
    bound = info.bind(
        {"flag": "true", "count": "3", "ratio": "1e-2", "mode": "fast", "names": "a,b"}
    )
    assert bound == {
        "flag": True,
        "count": 3,
        "ratio": 0.01,
        "mode": Mode.FAST,
        "names": ("a", "b"),
    }
    assert info.bind({"count": 4, "names": ["x"]}) == {"count": 4, "names": ("x",)}
    for bad, msg in [
        ({"count": "1.5"}, "option 'count' expects int, got '1.5'"),
        ({"count": True}, "option 'count' expects int, got True"),
        ({"flag": "maybe"}, "option 'flag' expects bool, got 'maybe'"),
        ({"mode": "slow"}, "option 'mode' expects fast|safe, got 'slow'"),
        ({"cuont": 1}, "has no option 'cuont'; did you mean 'count'?"),
    ]:
        with pytest.raises(PassError) as e:
            info.bind(bad)
        assert msg in e.value.message


def test_parse_pass_list():
    invs = parse_pass_list("fold-constants, test-options{count=2 names=a,b} ,eliminate-dead-code")
    assert [i.name for i in invs] == ["fold-constants", "test-options", "eliminate-dead-code"]
    assert invs[1].options == {"count": 2, "names": ("a", "b")}
    assert invs[1].spelled() == "test-options{count=2 names=a,b}"
    for text, msg in [
        ("fold-constants,,x", "empty pass name"),
        ("test-options{count=2", "unclosed '{'"),
        ("test-options}", "unbalanced '}'"),
        ("test-options{count}", "option 'count' of pass 'test-options' needs =value"),
        ("fold-constant", "unknown pass 'fold-constant'; did you mean 'fold-constants'?"),
    ]:
        with pytest.raises(PassError) as e:
            parse_pass_list(text)
        assert msg in e.value.message


def test_manager_records_and_tags_created_nodes():
    m = model()
    records = PassManager(
        parse_pass_list("test-options{count=7},test-add-node"), verify_each=True
    ).run(m)
    assert [(r.name, r.changed, r.nodes_before, r.nodes_after) for r in records] == [
        ("test-options", False, 1, 1),
        ("test-add-node", True, 1, 2),
    ]
    assert records[0].stats == {"count": 7}
    neg = m.graph.nodes[1]
    assert neg.origin.pass_name == "test-add-node" and neg.name.startswith("test-add-node/Neg")


def test_verify_each_names_the_pass_its_location_and_what_ran_before():
    m = model()
    pipeline = [
        PassInvocation("test-add-node"),
        PassInvocation("test-corrupt", location=SourceLocation("recipe.q", 7, 3)),
    ]
    with pytest.raises(PassError) as e:
        PassManager(pipeline, verify_each=True).run(m)
    text = e.value.message
    assert text.startswith("pass 'test-corrupt' (recipe.q:7:3) failed: IR verification failed:")
    assert "node 'relu' (Relu): input 0 'x' does not list this node as a user" in text
    assert text.endswith("passes that ran before: test-add-node")
    # without verify-each the same corruption goes unnoticed by the manager
    PassManager([PassInvocation("test-corrupt")], verify_each=False).run(model())


def test_pass_result_count():
    r = PassResult()
    r.count("x", 0)
    assert not r.changed and r.stats == {"x": 0}
    r.count("x", 2)
    assert r.changed and r.stats == {"x": 2}
    assert np.isclose(get_pass("test-options").option("ratio").default, 0.5)
