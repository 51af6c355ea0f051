"""IR invariants: use lists, safe removal, iteration under edits, sort, verifier messages."""

from __future__ import annotations

import numpy as np
import pytest

from qcc.errors import IRError
from qcc.ir import DType, Graph, Node, Origin, Value, created_by, derived_origin


def small_graph():
    g = Graph()
    x = g.add_input(Value("x", dtype=DType.FLOAT, shape=(2, 3)))
    w = g.add_constant(np.ones((3,), np.float32), "w")
    add = Node("Add", [x, w], name="add")
    relu = Node("Relu", [add.output], name="relu")
    g.append(add, relu)
    g.outputs.append(relu.output)
    return g, x, w, add, relu


def test_uses_are_registered_and_replaced():
    g, x, _w, add, relu = small_graph()
    assert x.uses == ((add, 0),)
    assert add.output.uses == ((relu, 0),)
    y = g.add_input(Value("y", dtype=DType.FLOAT, shape=(2, 3)))
    add.replace_input(0, y)
    assert x.uses == ()
    assert y.uses == ((add, 0),)
    y.replace_all_uses_with(x)
    assert x.uses == ((add, 0),) and y.uses == ()
    g.verify()


def test_node_used_twice_by_same_node():
    g = Graph()
    x = g.add_input(Value("x", dtype=DType.FLOAT, shape=(2,)))
    mul = Node("Mul", [x, x])
    g.append(mul)
    assert [u.index for u in x.uses] == [0, 1]
    mul.replace_input(1, None)
    assert [u.index for u in x.uses] == [0]


def test_remove_refuses_used_node_and_names_the_user():
    g, _x, _w, add, relu = small_graph()
    with pytest.raises(
        IRError,
        match=r"cannot remove node 'add' \(Add\): its output .* still used by node 'relu' \(Relu\)",
    ):
        g.remove(add)
    with pytest.raises(IRError, match="graph output"):
        g.remove(relu)


def test_remove_while_iterating_visits_every_live_node_once():
    g = Graph()
    x = g.add_input(Value("x", dtype=DType.FLOAT, shape=(1,)))
    v = x
    nodes = []
    for i in range(6):
        n = Node("Relu", [v], name=f"r{i}")
        g.append(n)
        nodes.append(n)
        v = n.output
    g.outputs.append(v)
    seen = []
    for n in g:
        seen.append(n.name)
        if n.name == "r1":  # remove the *next* node while standing on r1
            nodes[2].output.replace_all_uses_with(nodes[1].output)
            g.remove(nodes[2])
    assert seen == ["r0", "r1", "r3", "r4", "r5"]
    assert len(g) == 5
    g.verify()


def test_insert_after_current_is_visited():
    g, _x, _w, add, _relu = small_graph()
    seen = []
    for n in g:
        seen.append(n.name)
        if n is add:
            neg = Node("Neg", [add.output], name="neg")
            g.insert_after(add, neg)
    assert seen == ["add", "neg", "relu"]


def test_sort_restores_topological_order_and_reports_cycles():
    g = Graph()
    x = g.add_input(Value("x", dtype=DType.FLOAT, shape=(1,)))
    a = Node("Relu", [x], name="a")
    b = Node("Neg", [a.output], name="b")
    g.append(b, a)  # wrong order
    g.outputs.append(b.output)
    with pytest.raises(IRError, match=r"input 0 '.*' is used before node 'a' \(Relu\) defines it"):
        g.verify()
    g.sort()
    assert [n.name for n in g] == ["a", "b"]
    g.verify()
    # make a cycle a -> b -> a
    a.replace_input(0, b.output)
    with pytest.raises(IRError, match=r"the graph has a cycle: .*'a' \(Relu\).*'b' \(Neg\)"):
        g.sort()


def test_verifier_reports_dangling_value_and_names_node():
    g, _x, _w, _add, relu = small_graph()
    stray = Value("stray", dtype=DType.FLOAT, shape=(2, 3))
    relu.replace_input(0, stray)
    with pytest.raises(IRError) as e:
        g.verify()
    assert (
        "node 'relu' (Relu): input 0 'stray' is not produced by any node, graph input or constant"
        in str(e.value)
    )


def test_verifier_reports_broken_use_list():
    g, x, _w, _add, _relu = small_graph()
    x._uses.clear()  # simulate a buggy edit that bypassed the IR methods
    with pytest.raises(
        IRError, match=r"node 'add' \(Add\): input 0 'x' does not list this node as a user"
    ):
        g.verify()


def test_verifier_checks_dtypes_against_operator_schema():
    g = Graph(opset_imports={"": 17})
    x = g.add_input(Value("x", dtype=DType.FLOAT, shape=(2,)))
    i = g.add_input(Value("i", dtype=DType.INT64, shape=(2,)))
    add = Node("Add", [x, i], name="bad_add")
    g.append(add)
    add.output.dtype = DType.FLOAT
    g.outputs.append(add.output)
    with pytest.raises(
        IRError,
        match=r"node 'bad_add' \(Add\): values of type T disagree: 'x' is float32, 'i' is int64",
    ):
        g.verify()


def test_constants_are_read_only_and_copied():
    g = Graph()
    arr = np.zeros(3, np.float32)
    c = g.add_constant(arr, "c")
    arr[0] = 1  # the caller's array is not the constant
    assert c.const[0] == 0
    with pytest.raises(ValueError):
        c.const[0] = 5


def test_name_authority_gives_fresh_names():
    g = Graph()
    a = g.add_constant(np.zeros(1, np.float32), "w")
    b = g.add_constant(np.zeros(1, np.float32), "w")
    assert a.name == "w" and b.name != "w"
    n1, n2 = Node("Relu", [a]), Node("Relu", [b])
    with created_by("my-pass"):
        n3 = Node("Relu", [a])
    g.append(n1, n2, n3)
    names = [o.name for n in (n1, n2, n3) for o in n.outputs]
    assert len(set(names)) == 3
    assert n3.name.startswith("my-pass/Relu")


def test_origin_tracks_pass_and_sources():
    src = Node("Conv", name="conv1")
    bn = Node("BatchNormalization", name="bn1")
    assert src.origin == Origin(("conv1",), None, None)
    with created_by("fold-batchnorm", "conv-bn"):
        o = derived_origin(src, bn)
        fresh = Node("Relu")
    assert o == Origin(("conv1", "bn1"), "fold-batchnorm", "conv-bn")
    assert fresh.origin.pass_name == "fold-batchnorm"
    assert o.describe() == "created by fold-batchnorm/conv-bn from 'conv1', 'bn1'"


def test_subgraph_reads_of_outer_values_are_uses():
    g = Graph()
    x = g.add_input(Value("x", dtype=DType.FLOAT, shape=(1,)))
    cond = g.add_input(Value("cond", dtype=DType.BOOL, shape=()))
    outer = Node("Neg", [x], name="outer")
    then_g = Graph("then", names=g.names)
    inner = Node("Relu", [outer.output], name="inner")  # reads the outer value
    then_g.append(inner)
    then_g.outputs.append(inner.output)
    else_g = Graph("else", names=g.names)
    inner2 = Node("Abs", [outer.output], name="inner2")
    else_g.append(inner2)
    else_g.outputs.append(inner2.output)
    if_node = Node("If", [cond], name="if", attrs={"then_branch": then_g, "else_branch": else_g})
    g.append(outer, if_node)
    g.outputs.append(if_node.output)
    assert {u.node.name for u in outer.output.uses} == {"inner", "inner2"}
    with pytest.raises(IRError, match="still used by node 'inner'"):
        g.remove(outer)
    g.verify()
    # sorting must keep the producer before the If that reads it implicitly
    g._relink([if_node, outer])
    g.sort()
    assert [n.name for n in g] == ["outer", "if"]
    # removing the If drops the subgraph's uses of outer values
    g.outputs.clear()
    g.remove(if_node)
    assert outer.output.uses == ()


def test_replace_value_keeps_graph_output_name():
    g, _x, _w, add, relu = small_graph()
    out_name = relu.output.name
    g.replace_value(relu.output, add.output)
    g.remove(relu)
    assert g.outputs == [add.output]
    assert add.output.name == out_name
    g.verify()


def test_replace_value_inserts_identity_when_input_becomes_output():
    g, x, _w, add, relu = small_graph()
    out_name = relu.output.name
    add.output.replace_all_uses_with(x)
    g.replace_value(relu.output, x)
    g.remove(relu)
    g.remove(add)
    (ident,) = g.nodes
    assert ident.op_type == "Identity" and ident.inputs == (x,)
    assert g.outputs[0].name == out_name and x.name == "x"
    g.verify()
