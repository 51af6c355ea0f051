"""Node selectors: which nodes of a graph a pass step applies to.

A selector is a small expression tree. Atoms:

* ``op(Conv, Gemm)``: nodes of those op types (``com.microsoft::QLinearConv`` for other domains);
* ``name("backbone/*")``: nodes whose name matches a glob; ``name(~"^/head/.*")`` a regular
  expression (``re.search``, so anchor it when you mean the whole name);
* ``between(["a"], ["b"])``: the subgraph between two sets of tensors or nodes: nodes reachable
  from a start and from which an end is reachable (a start tensor starts at its consumers, an end
  tensor ends at its producer);
* ``inputs()`` / ``outputs()``: nodes that read a graph input / write a graph output;
* ``all``: every node.

Combined with ``|`` (union), ``&`` (intersection) and ``-`` (difference); ``-`` binds tighter
than ``&``, which binds tighter than ``|``, as for Python sets. Selectors match nodes of the
main graph. An atom that matches nothing is an error with the closest names suggested
(:meth:`Selector.check`).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from qcc.ir import Graph, Node

if TYPE_CHECKING:
    import networkx as nx


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """An atom that matched nothing, with suggestions; ``where`` is the atom's source span."""

    atom: Selector
    message: str
    suggestions: tuple[str, ...] = ()


class Selector:
    """Base class: ``evaluate(graph)`` returns the selected nodes in graph order."""

    where: Any = None  # source span (set by the recipe parser); not part of equality

    def evaluate(self, graph: Graph) -> list[Node]:
        chosen = self._ids(graph)
        return [n for n in graph if id(n) in chosen]

    def _ids(self, graph: Graph) -> set[int]:
        raise NotImplementedError

    def atoms(self) -> Iterator[Selector]:
        yield self

    def check(self, graph: Graph) -> list[Mismatch]:
        """Every atom that matches nothing in ``graph`` (and the whole, if it is empty)."""
        out = [m for a in self.atoms() for m in a._check_atom(graph)]
        if not out and not self._ids(graph):
            out.append(Mismatch(self, f"selector {self} matches no node"))
        return out

    def _check_atom(self, graph: Graph) -> list[Mismatch]:
        return [] if self._ids(graph) else [Mismatch(self, f"{self} matches no node")]

    def __or__(self, other: Selector) -> Selector:
        return Union(self, other)

    def __and__(self, other: Selector) -> Selector:
        return Intersect(self, other)

    def __sub__(self, other: Selector) -> Selector:
        return Difference(self, other)


def _close(word: str, choices: list[str], n: int = 3) -> tuple[str, ...]:
    return tuple(difflib.get_close_matches(word, choices, n=n, cutoff=0.5))


def _qualified(node: Node) -> str:
    return f"{node.domain}::{node.op_type}" if node.domain else node.op_type


@dataclasses.dataclass(frozen=True, eq=True)
class OpType(Selector):
    ops: tuple[str, ...]

    def _ids(self, graph: Graph) -> set[int]:
        want = set(self.ops)
        return {id(n) for n in graph if _qualified(n) in want or n.op_type in want}

    def _check_atom(self, graph: Graph) -> list[Mismatch]:
        present = sorted({_qualified(n) for n in graph})
        out = []
        for op in self.ops:
            if not any(op in (_qualified(n), n.op_type) for n in graph):
                out.append(
                    Mismatch(
                        self,
                        f"op({op}) matches no node: the graph has no {op}",
                        _close(op, present),
                    )
                )
        return out

    def __str__(self) -> str:
        return f"op({', '.join(self.ops)})"


@dataclasses.dataclass(frozen=True, eq=True)
class NamePattern(Selector):
    pattern: str
    regex: bool = False

    def matches(self, name: str) -> bool:
        if self.regex:
            return re.search(self.pattern, name) is not None
        return fnmatch.fnmatchcase(name, self.pattern)

    def _ids(self, graph: Graph) -> set[int]:
        return {id(n) for n in graph if self.matches(n.name)}

    def _check_atom(self, graph: Graph) -> list[Mismatch]:
        if self._ids(graph):
            return []
        names = [n.name for n in graph if n.name]
        core = re.sub(r"[*?\[\]^$.+\\()|{}]", "", self.pattern) or self.pattern
        return [Mismatch(self, f"{self} matches no node name", _close(core, names))]

    def __str__(self) -> str:
        return f'name({"~" if self.regex else ""}"{self.pattern}")'


@dataclasses.dataclass(frozen=True, eq=True)
class Between(Selector):
    starts: tuple[str, ...]
    ends: tuple[str, ...]

    def _endpoints(
        self, graph: Graph
    ) -> tuple[dict[str, list[Node]], dict[str, list[Node]], list[str]]:
        by_node: dict[str, list[Node]] = {}
        producers: dict[str, Node | None] = {}
        consumers: dict[str, list[Node]] = {}
        for n in graph:
            if n.name:
                by_node.setdefault(n.name, []).append(n)
            for v in n.outputs:
                if v.name:
                    producers[v.name] = n
            for v in n.inputs:
                if v is not None and v.name:
                    consumers.setdefault(v.name, []).append(n)
        for v in graph.inputs:
            producers.setdefault(v.name, None)
        missing = []
        starts: dict[str, list[Node]] = {}
        for s in self.starts:
            if s in by_node:
                starts[s] = by_node[s]
            elif s in producers or s in consumers:
                starts[s] = consumers.get(s, [])
            else:
                missing.append(s)
        ends: dict[str, list[Node]] = {}
        for e in self.ends:
            if e in by_node:
                ends[e] = by_node[e]
            elif e in producers:
                p = producers[e]
                ends[e] = [p] if p is not None else []
            else:
                missing.append(e)
        return starts, ends, missing

    def _ids(self, graph: Graph) -> set[int]:
        import networkx as nx  # only path selectors need it; importing it costs 0.35 s

        starts, ends, _ = self._endpoints(graph)
        dg = to_networkx(graph)
        down: set[int] = set()
        for nodes in starts.values():
            for n in nodes:
                down.add(id(n))
                down |= nx.descendants(dg, id(n))
        up: set[int] = set()
        for nodes in ends.values():
            for n in nodes:
                up.add(id(n))
                up |= nx.ancestors(dg, id(n))
        return down & up

    def _check_atom(self, graph: Graph) -> list[Mismatch]:
        _, _, missing = self._endpoints(graph)
        if missing:
            known = sorted(
                {n.name for n in graph if n.name}
                | {v.name for n in graph for v in n.outputs if v.name}
                | {v.name for v in graph.inputs}
            )
            return [
                Mismatch(self, f"{self}: no tensor or node is named {m!r}", _close(m, known))
                for m in missing
            ]
        return super()._check_atom(graph)

    def __str__(self) -> str:
        def lst(xs: tuple[str, ...]) -> str:
            return "[" + ", ".join(f'"{x}"' for x in xs) + "]"

        return f"between({lst(self.starts)}, {lst(self.ends)})"


@dataclasses.dataclass(frozen=True, eq=True)
class Boundary(Selector):
    """``inputs()``: nodes that read a graph input; ``outputs()``: nodes that write a graph
    output (the first and last layers, which quantization often hurts most)."""

    side: str  # "inputs" or "outputs"

    def _ids(self, graph: Graph) -> set[int]:
        if self.side == "inputs":
            return {id(u.node) for v in graph.inputs for u in v.uses if u.node.graph is graph}
        return {id(v.producer) for v in graph.outputs if v.producer is not None}

    def __str__(self) -> str:
        return f"{self.side}()"


@dataclasses.dataclass(frozen=True, eq=True)
class All(Selector):
    def _ids(self, graph: Graph) -> set[int]:
        return {id(n) for n in graph}

    def __str__(self) -> str:
        return "all"


@dataclasses.dataclass(frozen=True, eq=True)
class _Binary(Selector):
    left: Selector
    right: Selector
    symbol = "?"

    def atoms(self) -> Iterator[Selector]:
        yield from self.left.atoms()
        yield from self.right.atoms()

    def __str__(self) -> str:
        def side(s: Selector) -> str:
            return (
                f"({s})"
                if isinstance(s, _Binary) and _PREC[type(s)] < _PREC[type(self)]
                else str(s)
            )

        right = self.right
        r = side(right)
        if isinstance(right, _Binary) and _PREC[type(right)] == _PREC[type(self)]:
            r = f"({right})"  # the operators associate to the left
        return f"{side(self.left)} {self.symbol} {r}"


class Union(_Binary):
    symbol = "|"

    def _ids(self, graph: Graph) -> set[int]:
        return self.left._ids(graph) | self.right._ids(graph)


class Intersect(_Binary):
    symbol = "&"

    def _ids(self, graph: Graph) -> set[int]:
        return self.left._ids(graph) & self.right._ids(graph)


class Difference(_Binary):
    symbol = "-"

    def _ids(self, graph: Graph) -> set[int]:
        return self.left._ids(graph) - self.right._ids(graph)


_PREC = {Union: 1, Intersect: 2, Difference: 3}


def to_networkx(graph: Graph) -> nx.DiGraph:
    """The node-level dataflow graph (node ids as vertices), including reads from subgraphs."""
    import networkx as nx

    dg = nx.DiGraph()
    for n in graph:
        dg.add_node(id(n))
        for v in [*n.inputs, *graph.outer_values_of(n)]:
            if v is not None and v.producer is not None and v.producer.graph is graph:
                dg.add_edge(id(v.producer), id(n))
    return dg
