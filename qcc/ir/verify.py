"""The IR verifier behind ``Graph.verify()`` (modelled on FX's ``Graph.lint``).

It checks, for the graph and every subgraph: the node list is consistent; each input edge is
in its value's use list and each use points back at a real input; every value a node reads is
defined before it (a graph input, a constant, an earlier node's output, or a value of an
enclosing graph); value names are unique; constants agree with their dtype; and, for ai.onnx
operators, that inputs and outputs bound to one type variable of the operator schema have the
same element type and that the type is one the schema allows. Every message names the node.
"""

from __future__ import annotations

import functools

from qcc.errors import IRError
from qcc.ir.core import Graph, Node, Value
from qcc.ir.dtypes import DType

_MAX_SHOWN = 20


def verify_graph(graph: Graph) -> None:
    problems: list[str] = []
    _verify(graph, problems, opsets=graph.root.opset_imports)
    problems = list(dict.fromkeys(problems))  # group checks repeat for every member
    if problems:
        shown = problems[:_MAX_SHOWN]
        more = len(problems) - len(shown)
        text = "IR verification failed:\n  " + "\n  ".join(shown)
        if more:
            text += f"\n  ... and {more} more"
        raise IRError(text)


def _verify(graph: Graph, problems: list[str], opsets: dict[str, int]) -> None:
    where = "" if graph.parent is None else f" (in subgraph {graph.name!r})"
    defined: set[int] = set()
    names: dict[str, str] = {}

    def define(v: Value, what: str) -> None:
        defined.add(id(v))
        if v.name:
            if v.name in names and names[v.name] != what:
                problems.append(f"value name {v.name!r} is defined twice: {names[v.name]}, {what}")
            names.setdefault(v.name, what)

    for v in graph.inputs:
        if v.producer is not None or v.graph is not graph:
            problems.append(f"graph input {v.name!r}{where} is produced by a node")
        define(v, "graph input")
    for key, v in graph.initializers.items():
        if key != v.name:
            problems.append(f"constant {v.name!r}{where} is registered under name {key!r}")
        if v.const is None:
            problems.append(f"constant {v.name!r}{where} has no data")
        elif v.dtype is not None and v.dtype != DType.from_numpy(v.const.dtype):
            problems.append(
                f"constant {v.name!r}{where} is declared {v.dtype.short} but holds {v.const.dtype}"
            )
        if not v.is_graph_input:
            define(v, "constant")

    count = 0
    prev: Node | None = None
    node_names: dict[str, Node] = {}
    for node in graph:
        count += 1
        if node.name:
            other = node_names.setdefault(node.name, node)
            if other is not node:
                problems.append(
                    f"node name {node.name!r}{where} is used by two nodes "
                    "(onnxruntime refuses such models)"
                )
        desc = f"node {node.describe()}{where}"
        if node.graph is not graph:
            problems.append(f"{desc} does not point back at its graph")
        if node.prev is not prev:
            problems.append(f"{desc} has a broken list link")
        prev = node
        for i, v in enumerate(node.inputs):
            if v is None:
                continue
            if (node, i) not in v._uses:
                problems.append(f"{desc}: input {i} {v.name!r} does not list this node as a user")
            _check_defined(node, i, v, graph, defined, desc, problems)
        for i, out in enumerate(node.outputs):
            if out.producer is not node or out.index != i:
                problems.append(f"{desc}: output {i} {out.name!r} names another producer")
            if not out.name and (out.has_uses() or out.is_graph_output):
                problems.append(f"{desc}: output {i} is used but has no name")
            if out.name:
                define(out, f"output of node {node.describe()}")
            for use in out.uses:
                if use.node.is_erased or use.node.graph is None:
                    problems.append(
                        f"{desc}: output {out.name!r} is used by removed node {use.node.describe()}"
                    )
                elif use.node.input(use.index) is not out:
                    problems.append(
                        f"{desc}: output {out.name!r} lists a stale use by "
                        f"{use.node.describe()} input {use.index}"
                    )
        group = node.meta.get("fusion_group")
        if group is not None:
            if node not in group.nodes:
                problems.append(f"{desc} is marked with a fusion group it is not part of")
            for m in group.nodes:
                if m.is_erased or m.graph is not graph:
                    problems.append(
                        f"{desc}: its fusion group {group.rule!r} holds removed or foreign node "
                        f"{m.describe()}"
                    )
            for v in group.inner_values():
                if v.is_graph_output or any(u.node not in group.nodes for u in v.uses):
                    problems.append(
                        f"{desc}: value {v.name!r} inside fusion group {group.rule!r} is used "
                        "outside the group"
                    )
        if node.domain in ("", "ai.onnx") and opsets:
            _check_types(node, opsets.get("", opsets.get("ai.onnx", 0)), desc, problems)
        for sub in node.subgraphs():
            if sub.parent is not node:
                problems.append(f"{desc}: subgraph {sub.name!r} does not point back at the node")
            _verify(sub, problems, opsets)
    if count != len(graph):
        problems.append(f"graph {graph.name!r} counts {len(graph)} nodes but holds {count}")
    for v in graph.outputs:
        if id(v) not in defined and not _is_outer(v, graph):
            problems.append(f"graph output {v.name!r}{where} is not defined by any node")


def _is_outer(v: Value, graph: Graph) -> bool:
    """Whether ``v`` is defined in a graph enclosing ``graph`` (an outer-scope reference)."""
    g = v.graph
    if g is None or g is graph:
        return False
    p = graph.parent
    while p is not None and p.graph is not None:
        if p.graph is g:
            return True
        p = p.graph.parent
    return False


def _check_defined(
    node: Node, i: int, v: Value, graph: Graph, defined: set[int], desc: str, problems: list[str]
) -> None:
    if id(v) in defined:
        return
    if _is_outer(v, graph):
        return
    p = v.producer
    if p is not None and p.is_erased:
        problems.append(f"{desc}: input {i} {v.name!r} is produced by removed node {p.describe()}")
    elif p is not None and p.graph is graph:
        problems.append(
            f"{desc}: input {i} {v.name!r} is used before node {p.describe()} defines it "
            "(not in topological order)"
        )
    elif v.graph is None or v.graph is graph:
        problems.append(
            f"{desc}: input {i} {v.name!r} is not produced by any node, graph input or constant"
        )
    else:
        problems.append(f"{desc}: input {i} {v.name!r} belongs to an unrelated graph")


@functools.lru_cache(maxsize=4096)
def _schema(op_type: str, opset: int):
    import onnx.defs

    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except Exception:  # unknown op or version: nothing to check against
        return None


def _variadic():
    import onnx.defs

    return onnx.defs.OpSchema.FormalParameterOption.Variadic


def _type_name(dt: DType) -> str:
    return f"tensor({dt.name.lower()})"


def _check_types(node: Node, opset: int, desc: str, problems: list[str]) -> None:
    schema = _schema(node.op_type, opset)
    if schema is None:
        return
    constraints = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    bound: dict[str, list[tuple[str, DType]]] = {}

    def bind(formals, actuals) -> None:
        variadic = _variadic()
        for i, v in enumerate(actuals):
            if i < len(formals):
                f = formals[i]
            elif formals and formals[-1].option == variadic:
                f = formals[-1]
            else:
                break
            if v is None or v.dtype is None or v.opaque_type is not None:
                continue
            key = f.type_str
            if f.option == variadic and not f.is_homogeneous:
                key += f"#{i}"  # each position of a heterogeneous list has its own type
            bound.setdefault(key, []).append((v.name, v.dtype))

    bind(schema.inputs, node.inputs)
    bind(schema.outputs, [o for o in node.outputs if o.name])
    for key, items in bound.items():
        tstr = key.split("#")[0]
        allowed = constraints.get(tstr)
        if allowed is None:
            # a fixed type such as "tensor(int64)"
            for name, dt in items:
                if tstr.startswith("tensor(") and _type_name(dt) != tstr:
                    problems.append(f"{desc}: {name!r} is {dt.short}, the operator wants {tstr}")
            continue
        for name, dt in items:
            if _type_name(dt) not in allowed:
                problems.append(
                    f"{desc}: {name!r} has type {dt.short}, not allowed for {tstr} of "
                    f"{node.op_type}-{schema.since_version}"
                )
        kinds = {dt for _, dt in items}
        if len(kinds) > 1:
            listing = ", ".join(f"{n!r} is {dt.short}" for n, dt in items)
            problems.append(f"{desc}: values of type {tstr} disagree: {listing}")
