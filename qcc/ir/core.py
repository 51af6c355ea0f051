"""qcc's graph IR: Model, Graph, Node, Value, Attr and node origins.

The design follows onnx/ir-py and PyTorch FX (see ``docs/architecture.md``):

* A :class:`Value` knows its producer and keeps an ordered set of its uses ``(node, index)``.
  A node registers itself as a user of its inputs when it is created; replacing an input
  (:meth:`Node.replace_input`, :meth:`Value.replace_all_uses_with`) is O(1) per edge.
* A :class:`Graph` keeps its nodes in a doubly linked list, so a pass may remove or insert
  nodes while it walks the graph; removed nodes are skipped by running iterators.
* :meth:`Graph.remove` refuses to remove a node whose outputs are still used.
* Constants (ONNX initializers) are values without a producer whose ``const`` holds a
  read-only numpy array.
* Subgraphs (If/Loop/Scan bodies) are graphs of their own, held in GRAPH attributes. A node in
  a subgraph that reads a value of an enclosing graph is an ordinary use of that value, so
  dead-code elimination and use-replacement stay correct even in passes that never look inside
  subgraphs.
* Every node carries an :class:`Origin`: the ONNX node(s) it came from and the pass and rule
  that created it. Nodes made inside :func:`created_by` pick up the pass name automatically.
* New names come from the model's single :class:`NameAuthority`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import heapq
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from qcc.errors import IRError
from qcc.ir.dtypes import DType

Dim = int | str | None
"""One dimension: a size, a symbolic name, or None when unknown."""
Shape = tuple[Dim, ...]


# --------------------------------------------------------------------------- origins


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a node came from.

    ``sources`` are the names of the input-model nodes it derives from; ``pass_name`` and
    ``rule`` say which pass (and which rewrite rule in it) created it; both are None for nodes
    read from the input model.
    """

    sources: tuple[str, ...] = ()
    pass_name: str | None = None
    rule: str | None = None

    def describe(self) -> str:
        src = ", ".join(repr(s) for s in self.sources) or "nothing"
        if self.pass_name is None:
            return f"from the input model ({src})"
        by = self.pass_name + (f"/{self.rule}" if self.rule else "")
        return f"created by {by} from {src}"


_CREATOR: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "qcc_ir_creator", default=(None, None)
)


@contextlib.contextmanager
def created_by(pass_name: str | None, rule: str | None = None) -> Iterator[None]:
    """Tag every node created inside the block with ``pass_name`` (and ``rule``)."""
    token = _CREATOR.set((pass_name, rule))
    try:
        yield
    finally:
        _CREATOR.reset(token)


def derived_origin(*nodes: Node, rule: str | None = None) -> Origin:
    """Origin for a node that replaces ``nodes``: their sources, the current pass, ``rule``."""
    sources: dict[str, None] = {}
    for n in nodes:
        for s in n.origin.sources or ((n.name,) if n.name else ()):
            sources[s] = None
    pass_name, current_rule = _CREATOR.get()
    return Origin(tuple(sources), pass_name, rule or current_rule)


# --------------------------------------------------------------------------- names


_SANITIZE = re.compile(r"[^A-Za-z0-9_./:\-]+")


class NameAuthority:
    """The one place new value and node names come from (one per model, shared by subgraphs)."""

    __slots__ = ("_counters", "_nodes", "_values")

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._nodes: set[str] = set()
        self._counters: dict[tuple[str, str], int] = {}

    def register_value(self, name: str) -> None:
        if name:
            self._values.add(name)

    def register_node(self, name: str) -> None:
        if name:
            self._nodes.add(name)

    def value_taken(self, name: str) -> bool:
        return name in self._values

    def fresh_value(self, hint: str) -> str:
        return self._fresh(self._values, "v", hint)

    def fresh_node(self, hint: str) -> str:
        return self._fresh(self._nodes, "n", hint)

    def _fresh(self, taken: set[str], kind: str, hint: str) -> str:
        base = _SANITIZE.sub("_", hint) or kind
        name = base
        if name in taken:
            i = self._counters.get((kind, base), 0)
            while True:
                i += 1
                name = f"{base}__{i}"
                if name not in taken:
                    break
            self._counters[(kind, base)] = i
        taken.add(name)
        return name


# --------------------------------------------------------------------------- attributes


class AttrType(enum.IntEnum):
    """Attribute type; values equal ONNX ``AttributeProto.AttributeType``."""

    UNDEFINED = 0
    FLOAT = 1
    INT = 2
    STRING = 3
    TENSOR = 4
    GRAPH = 5
    FLOATS = 6
    INTS = 7
    STRINGS = 8
    TENSORS = 9
    GRAPHS = 10
    SPARSE_TENSOR = 11
    SPARSE_TENSORS = 12
    TYPE_PROTO = 13
    TYPE_PROTOS = 14


class Attr:
    """A node attribute.

    Values are plain Python: float, int, str, ``np.ndarray`` (TENSOR), :class:`Graph` (GRAPH),
    tuples of these for the list types; SPARSE_TENSOR(S) and TYPE_PROTO(S) are kept as opaque
    objects the frontend passes through. ``ref_attr_name`` is set for attribute references
    inside ONNX functions.
    """

    __slots__ = ("doc_string", "name", "ref_attr_name", "type", "value")

    def __init__(
        self,
        name: str,
        type: AttrType,
        value: Any,
        *,
        ref_attr_name: str = "",
        doc_string: str = "",
    ) -> None:
        self.name = name
        self.type = type
        self.value = value
        self.ref_attr_name = ref_attr_name
        self.doc_string = doc_string

    @classmethod
    def infer(cls, name: str, value: Any) -> Attr:
        """Build an attribute from a Python value, inferring its type."""
        if isinstance(value, bool | int | np.integer):
            return cls(name, AttrType.INT, int(value))
        if isinstance(value, float | np.floating):
            return cls(name, AttrType.FLOAT, float(value))
        if isinstance(value, str):
            return cls(name, AttrType.STRING, value)
        if isinstance(value, np.ndarray):
            return cls(name, AttrType.TENSOR, value)
        if isinstance(value, Graph):
            return cls(name, AttrType.GRAPH, value)
        if isinstance(value, list | tuple):
            items = tuple(value)
            if all(isinstance(v, bool | int | np.integer) for v in items):
                return cls(name, AttrType.INTS, tuple(int(v) for v in items))
            if all(isinstance(v, int | float | np.number) for v in items):
                return cls(name, AttrType.FLOATS, tuple(float(v) for v in items))
            if all(isinstance(v, str) for v in items):
                return cls(name, AttrType.STRINGS, items)
            if all(isinstance(v, np.ndarray) for v in items):
                return cls(name, AttrType.TENSORS, items)
            if all(isinstance(v, Graph) for v in items):
                return cls(name, AttrType.GRAPHS, items)
        raise TypeError(f"cannot infer the attribute type of {name}={value!r}")

    def subgraphs(self) -> tuple[Graph, ...]:
        if self.type is AttrType.GRAPH:
            return (self.value,)
        if self.type is AttrType.GRAPHS:
            return tuple(self.value)
        return ()

    def __repr__(self) -> str:
        return f"Attr({self.name}={self.value!r})"


# --------------------------------------------------------------------------- values


class Use(NamedTuple):
    """One use of a value: ``node.inputs[index] is value``."""

    node: Node
    index: int


class Value:
    """A tensor edge of the graph: produced by one node output, a graph input or a constant.

    ``shape`` is None when the rank is unknown; a dimension is an int, a symbolic name, or
    None. ``dtype`` is None when unknown. ``opaque_type`` holds a non-tensor type (sequence,
    optional, map) exactly as the frontend read it. ``quant`` is reserved for quantization
    parameters; ``meta`` for pass-private annotations.
    """

    __slots__ = (
        "_const",
        "_index",
        "_name",
        "_owner",
        "_producer",
        "_uses",
        "doc_string",
        "dtype",
        "meta",
        "opaque_type",
        "quant",
        "shape",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        dtype: DType | None = None,
        shape: Shape | None = None,
        const: np.ndarray | None = None,
    ) -> None:
        self._name = name
        self.dtype = dtype
        self.shape = shape
        self._producer: Node | None = None
        self._index = 0
        self._uses: dict[Use, None] = {}
        self._const: np.ndarray | None = None
        self._owner: Graph | None = None
        self.opaque_type: Any = None
        self.quant: Any = None
        self.meta: dict[str, Any] = {}
        self.doc_string = ""
        if const is not None:
            self.const = const

    # -- identity and naming
    @property
    def name(self) -> str:
        return self._name or ""

    def rename(self, new_name: str, *, reuse: bool = False) -> None:
        """Rename. The new name must not be taken unless ``reuse`` says the caller knows its
        previous holder is gone. Keeps ``initializers`` keyed correctly."""
        graph = self.graph
        if graph is not None:
            if not reuse and new_name != self._name and graph.names.value_taken(new_name):
                raise IRError(f"cannot rename value {self.name!r} to {new_name!r}: name taken")
            graph.names.register_value(new_name)
            if self._const is not None and self._producer is None and self._owner is graph:
                graph.initializers.pop(self.name, None)
                graph.initializers[new_name] = self
        self._name = new_name

    # -- definition
    @property
    def producer(self) -> Node | None:
        return self._producer

    @property
    def index(self) -> int:
        """Output index in the producer (0 for inputs and constants)."""
        return self._index

    @property
    def graph(self) -> Graph | None:
        """The graph that defines this value."""
        if self._producer is not None:
            return self._producer.graph
        return self._owner

    @property
    def const(self) -> np.ndarray | None:
        return self._const

    @const.setter
    def const(self, array: np.ndarray | None) -> None:
        if array is None:
            self._const = None
            return
        if self._producer is not None:
            raise IRError(f"value {self.name!r} is produced by a node and cannot be a constant")
        arr = np.asarray(array)
        if arr.flags.writeable:  # copy rather than freeze the caller's array
            arr = arr.copy()
            arr.flags.writeable = False  # constants may be shared: never mutate in place
        self._const = arr
        self.dtype = DType.from_numpy(arr.dtype)
        self.shape = tuple(int(d) for d in arr.shape)

    @property
    def is_constant(self) -> bool:
        return self._const is not None

    @property
    def is_graph_input(self) -> bool:
        g = self._owner
        return g is not None and self._producer is None and any(v is self for v in g.inputs)

    @property
    def is_graph_output(self) -> bool:
        g = self.graph
        return g is not None and any(v is self for v in g.outputs)

    # -- uses
    @property
    def uses(self) -> tuple[Use, ...]:
        return tuple(self._uses)

    def consumers(self) -> list[Node]:
        """Distinct nodes that use this value, in use order."""
        return list(dict.fromkeys(u.node for u in self._uses))

    def has_uses(self) -> bool:
        return bool(self._uses)

    def replace_all_uses_with(self, other: Value, *, replace_graph_outputs: bool = False) -> None:
        """Make every user of this value use ``other`` instead (O(1) per edge).

        Graph outputs are interface: they are replaced only when asked, and then ``other``
        must not be a graph input or constant of another name (the caller renames).
        """
        if other is self:
            return
        for use in list(self._uses):
            use.node.replace_input(use.index, other)
        if replace_graph_outputs:
            g = self.graph
            if g is not None:
                g.outputs[:] = [other if v is self else v for v in g.outputs]

    def _add_use(self, node: Node, index: int) -> None:
        self._uses[Use(node, index)] = None

    def _remove_use(self, node: Node, index: int) -> None:
        self._uses.pop(Use(node, index), None)

    # -- display
    def describe(self) -> str:
        return repr(self.name)

    def type_str(self) -> str:
        dt = self.dtype.short if self.dtype is not None else "?"
        if self.shape is None:
            return f"{dt}[?]"
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{dt}[{dims}]"

    def __repr__(self) -> str:
        return f"Value({self.name!r}, {self.type_str()})"


# --------------------------------------------------------------------------- nodes


class Node:
    """One operator application. Outputs are fixed at creation; inputs may be None (absent
    optional input)."""

    __slots__ = (
        "_erased",
        "_inputs",
        "_next",
        "_outputs",
        "_prev",
        "attrs",
        "doc_string",
        "domain",
        "graph",
        "meta",
        "name",
        "op_type",
        "origin",
        "overload",
    )

    def __init__(
        self,
        op_type: str,
        inputs: Sequence[Value | None] = (),
        *,
        domain: str = "",
        attrs: Iterable[Attr] | dict[str, Any] | None = None,
        outputs: int | Sequence[str | None] = 1,
        name: str = "",
        origin: Origin | None = None,
        overload: str = "",
    ) -> None:
        self.op_type = op_type
        self.domain = "" if domain == "ai.onnx" else domain
        self.name = name
        self.overload = overload
        self.attrs: dict[str, Attr] = {}
        if isinstance(attrs, dict):
            for k, v in attrs.items():
                self.attrs[k] = v if isinstance(v, Attr) else Attr.infer(k, v)
        elif attrs is not None:
            for a in attrs:
                self.attrs[a.name] = a
        if origin is None:
            pass_name, rule = _CREATOR.get()
            origin = Origin((name,) if name and pass_name is None else (), pass_name, rule)
        self.origin = origin
        self.graph: Graph | None = None
        self._prev: Node | None = None
        self._next: Node | None = None
        self._erased = False
        self.meta: dict[str, Any] = {}
        self.doc_string = ""
        self._inputs: list[Value | None] = []
        for v in inputs:
            self._append_input(v)
        names = [None] * outputs if isinstance(outputs, int) else list(outputs)
        outs = []
        for i, n in enumerate(names):
            v = Value(n)
            v._producer = self
            v._index = i
            outs.append(v)
        self._outputs: tuple[Value, ...] = tuple(outs)

    # -- inputs
    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    def input(self, i: int) -> Value | None:
        """Input ``i``, or None if absent or past the end."""
        return self._inputs[i] if i < len(self._inputs) else None

    def _append_input(self, v: Value | None) -> None:
        if v is not None and not isinstance(v, Value):
            raise TypeError(f"node input must be a Value or None, got {type(v).__name__}")
        idx = len(self._inputs)
        self._inputs.append(v)
        if v is not None:
            v._add_use(self, idx)

    def append_input(self, v: Value | None) -> None:
        self._append_input(v)

    def replace_input(self, index: int, v: Value | None) -> None:
        """Set input ``index`` to ``v``, keeping both values' use lists right (O(1))."""
        old = self._inputs[index]
        if old is v:
            return
        if old is not None:
            old._remove_use(self, index)
        self._inputs[index] = v
        if v is not None:
            v._add_use(self, index)

    def set_inputs(self, inputs: Sequence[Value | None]) -> None:
        """Replace the whole input list (used when an input is added or dropped)."""
        self._detach_inputs()
        for v in inputs:
            self._append_input(v)

    def _detach_inputs(self) -> None:
        for i, v in enumerate(self._inputs):
            if v is not None:
                v._remove_use(self, i)
        self._inputs = []

    # -- outputs
    @property
    def outputs(self) -> tuple[Value, ...]:
        return self._outputs

    @property
    def output(self) -> Value:
        """The single output (for nodes with exactly one)."""
        if len(self._outputs) != 1:
            raise IRError(f"node {self.describe()} has {len(self._outputs)} outputs, not one")
        return self._outputs[0]

    # -- attributes
    def attr(self, name: str, default: Any = None) -> Any:
        a = self.attrs.get(name)
        return default if a is None else a.value

    def set_attr(self, name: str, value: Any) -> None:
        self.attrs[name] = value if isinstance(value, Attr) else Attr.infer(name, value)

    def subgraphs(self) -> list[Graph]:
        return [g for a in self.attrs.values() for g in a.subgraphs()]

    # -- list structure
    @property
    def prev(self) -> Node | None:
        return self._prev

    @property
    def next(self) -> Node | None:
        return self._next

    @property
    def is_erased(self) -> bool:
        return self._erased

    # -- display
    def describe(self) -> str:
        """``'name' (Op)``, or ``(Op) -> 'first output'`` for nameless nodes."""
        op = f"{self.domain}::{self.op_type}" if self.domain else self.op_type
        if self.name:
            return f"{self.name!r} ({op})"
        first = self._outputs[0].name if self._outputs else ""
        return f"({op}) -> {first!r}" if first else f"({op})"

    def __repr__(self) -> str:
        ins = ", ".join(v.name if v is not None else "" for v in self._inputs)
        outs = ", ".join(v.name for v in self._outputs)
        return f"Node({self.describe()}: [{ins}] -> [{outs}])"


# --------------------------------------------------------------------------- graphs


class Graph:
    """A graph: inputs, outputs, constants (initializers) and a linked list of nodes."""

    __slots__ = (
        "_first",
        "_last",
        "_len",
        "doc_string",
        "initializers",
        "inputs",
        "meta",
        "name",
        "names",
        "opaque",
        "opset_imports",
        "outputs",
        "parent",
    )

    def __init__(
        self,
        name: str = "main",
        *,
        names: NameAuthority | None = None,
        opset_imports: dict[str, int] | None = None,
    ) -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.initializers: dict[str, Value] = {}
        self._first: Node | None = None
        self._last: Node | None = None
        self._len = 0
        self.parent: Node | None = None  # the node owning this subgraph
        self.names = names if names is not None else NameAuthority()
        self.opset_imports: dict[str, int] = opset_imports if opset_imports is not None else {}
        self.doc_string = ""
        self.meta: dict[str, Any] = {}
        self.opaque: dict[str, Any] = {}  # frontend pass-through (value_info, sparse, ...)

    # -- iteration
    def __iter__(self) -> Iterator[Node]:
        """Nodes in order. Safe while nodes are removed or inserted: erased nodes are skipped,
        nodes inserted after the current one are visited."""
        n = self._first
        while n is not None:
            if not n._erased:
                yield n
            n = n._next
            while n is not None and n._erased:
                n = n._next

    def __reversed__(self) -> Iterator[Node]:
        n = self._last
        while n is not None:
            if not n._erased:
                yield n
            n = n._prev
            while n is not None and n._erased:
                n = n._prev

    def __len__(self) -> int:
        return self._len

    @property
    def nodes(self) -> list[Node]:
        return list(self)

    def all_nodes(self) -> Iterator[Node]:
        """Nodes of this graph and, depth first, of every subgraph."""
        for n in self:
            yield n
            for g in n.subgraphs():
                yield from g.all_nodes()

    @property
    def root(self) -> Graph:
        g = self
        while g.parent is not None and g.parent.graph is not None:
            g = g.parent.graph
        return g

    # -- values
    def add_input(self, value: Value) -> Value:
        self._own(value, "input")
        self.inputs.append(value)
        return value

    def add_constant(self, array: np.ndarray, name_hint: str = "const") -> Value:
        """A new constant (initializer) with a fresh name."""
        v = Value(self.names.fresh_value(name_hint), const=array)
        v._owner = self
        self.initializers[v.name] = v
        return v

    def add_initializer(self, value: Value) -> Value:
        """Register ``value`` (with ``const`` set, name kept) as an initializer."""
        if value.const is None:
            raise IRError(f"initializer {value.name!r} has no constant data")
        if value.name in self.initializers:
            raise IRError(f"duplicate initializer {value.name!r}")
        self._own(value, "initializer")
        self.initializers[value.name] = value
        return value

    def remove_initializer(self, value: Value) -> None:
        if value.has_uses() or value.is_graph_output:
            raise IRError(f"cannot remove constant {value.name!r}: it is still used")
        if self.initializers.get(value.name) is not value:
            raise IRError(f"{value.name!r} is not an initializer of graph {self.name!r}")
        del self.initializers[value.name]
        if not value.is_graph_input:
            value._owner = None

    def remove_unused_constants(self, candidates: Iterable[Value | None]) -> int:
        """Remove those of ``candidates`` that are constants of this graph (initializers or
        ``Constant`` nodes) nobody uses any more; a pass calls this with the inputs of the nodes
        it replaced. Returns how many."""
        n = 0
        for v in candidates:
            p = v.producer if v is not None else None
            if (
                p is not None
                and p.op_type == "Constant"
                and not p.domain
                and p.graph is self
                and not v.has_uses()
                and not v.is_graph_output
            ):
                self.remove(p)
                n += 1
            elif (
                v is not None
                and v.const is not None
                and self.initializers.get(v.name) is v
                and not v.has_uses()
                and not v.is_graph_input
                and not v.is_graph_output
            ):
                self.remove_initializer(v)
                n += 1
        return n

    def _own(self, value: Value, what: str) -> None:
        if value._producer is not None:
            raise IRError(f"{what} {value.name!r} is produced by a node")
        if value._owner is not None and value._owner is not self:
            raise IRError(f"{what} {value.name!r} belongs to another graph")
        if not value._name:
            value._name = self.names.fresh_value(what)
        else:
            self.names.register_value(value._name)
        value._owner = self

    def replace_value(self, old: Value, new: Value, *, keep_name: bool = False) -> Value:
        """Make every use of ``old`` (a value of this graph) use ``new``.

        A graph output is interface, so if ``old`` is one, ``new`` takes over its slot and its
        name; when ``new`` cannot carry the name (it is a graph input, a constant or already an
        output) an Identity is appended to carry it. With ``keep_name``, ``new`` takes ``old``'s
        name even when ``old`` is not an output (``old`` is renamed out of the way; it is dead
        afterwards). Graph inputs are never renamed. Returns the value now holding the slot.
        """
        if old is new:
            return new
        merge_types(new, old)  # the same tensor: keep whatever either side knows
        was_output = old.is_graph_output
        old.replace_all_uses_with(new)
        if was_output:
            if new.producer is None or new.graph is not self or new.is_graph_output:
                ident = Node("Identity", [new], origin=Origin((), *_CREATOR.get()))
                self.append(ident)
                new = ident.output
            self.outputs[:] = [new if v is old else v for v in self.outputs]
            keep_name = True
        if keep_name and old.name and not new.is_graph_input:
            name = old.name
            old.rename(self.names.fresh_value(f"{name}__replaced"), reuse=True)
            new.rename(name, reuse=True)
        return new

    def replace_with_constants(self, node: Node, arrays: Sequence[np.ndarray | None]) -> None:
        """Replace the outputs of ``node`` by constants (keeping their names), then remove it.

        ``arrays[i]`` None leaves output ``i`` alone; the node is removed only if none of its
        outputs is still used.
        """
        for out, arr in zip(node.outputs, arrays, strict=False):
            if arr is None or (not out.has_uses() and not out.is_graph_output):
                continue
            c = self.add_constant(arr, out.name or "const")
            self.replace_value(out, c, keep_name=True)
        if all(not o.has_uses() and not o.is_graph_output for o in node.outputs):
            self.remove(node)

    # -- node list edits
    def append(self, *nodes: Node) -> None:
        for n in nodes:
            self._link(n, self._last, None)

    def insert_before(self, anchor: Node, *nodes: Node) -> None:
        self._check_member(anchor)
        for n in nodes:
            self._link(n, anchor._prev, anchor)

    def insert_after(self, anchor: Node, *nodes: Node) -> None:
        self._check_member(anchor)
        prev = anchor
        for n in nodes:
            self._link(n, prev, prev._next)
            prev = n

    def _check_member(self, node: Node) -> None:
        if node.graph is not self or node._erased:
            raise IRError(f"node {node.describe()} is not in graph {self.name!r}")

    def _link(self, node: Node, prev: Node | None, nxt: Node | None) -> None:
        if node.graph is not None or node._erased:
            raise IRError(f"node {node.describe()} is already in a graph or was removed")
        node.graph = self
        node._prev, node._next = prev, nxt
        if prev is None:
            self._first = node
        else:
            prev._next = node
        if nxt is None:
            self._last = node
        else:
            nxt._prev = node
        self._len += 1
        names = self.names
        if node.name:
            names.register_node(node.name)
        elif node.origin.pass_name is not None:
            node.name = names.fresh_node(f"{node.origin.pass_name}/{node.op_type}")
        for i, v in enumerate(node._outputs):
            if v._name is None:
                v._name = names.fresh_value(f"{node.name or node.op_type}_out{i}")
            else:
                names.register_value(v._name)
        for g in node.subgraphs():
            g.parent = node

    def remove(self, node: Node, *, safe: bool = True) -> None:
        """Remove ``node``. With ``safe`` (the default) a node whose outputs are still used,
        or are graph outputs, is refused with an error naming the user."""
        self._check_member(node)
        if safe:
            for v in node._outputs:
                if v._uses:
                    user = next(iter(v._uses)).node
                    raise IRError(
                        f"cannot remove node {node.describe()}: its output {v.name!r} is "
                        f"still used by node {user.describe()}"
                    )
                if v.is_graph_output:
                    raise IRError(
                        f"cannot remove node {node.describe()}: its output {v.name!r} is a "
                        f"graph output"
                    )
        node._detach_inputs()
        for g in node.subgraphs():
            g._detach_all()
        prev, nxt = node._prev, node._next
        if prev is None:
            self._first = nxt
        else:
            prev._next = nxt
        if nxt is None:
            self._last = prev
        else:
            nxt._prev = prev
        # keep node._next/_prev so that an iterator standing on this node can move on
        node._erased = True
        node.graph = None
        self._len -= 1

    def _detach_all(self) -> None:
        """Drop every use this graph's nodes (recursively) make, before it is discarded."""
        for n in self:
            n._detach_inputs()
            for g in n.subgraphs():
                g._detach_all()

    def _relink(self, order: Sequence[Node]) -> None:
        prev: Node | None = None
        for n in order:
            n._prev = prev
            n._next = None
            if prev is None:
                self._first = n
            else:
                prev._next = n
            prev = n
        if prev is None:
            self._first = None
        self._last = prev

    # -- analysis
    def outer_values_of(self, node: Node) -> list[Value]:
        """Values of enclosing graphs (or this graph) read from inside ``node``'s subgraphs."""
        found: dict[int, Value] = {}

        def visit(g: Graph) -> None:
            for n in g:
                for v in n._inputs:
                    if v is not None and v.graph is not g:
                        found.setdefault(id(v), v)
                for sub in n.subgraphs():
                    visit(sub)

        for sub in node.subgraphs():
            visit(sub)
        return [v for v in found.values() if not _defined_within(v, node)]

    def sort(self) -> None:
        """Topologically sort the nodes, keeping the current order where it is already valid.

        Raises IRError naming the nodes of a cycle.
        """
        nodes = list(self)
        pos = {id(n): i for i, n in enumerate(nodes)}
        indeg = [0] * len(nodes)
        users: list[list[int]] = [[] for _ in nodes]
        for i, n in enumerate(nodes):
            deps = set()
            inputs = [v for v in n._inputs if v is not None] + self.outer_values_of(n)
            for v in inputs:
                p = v._producer
                if p is not None and p.graph is self:
                    deps.add(pos[id(p)])
            for d in deps:
                users[d].append(i)
            indeg[i] = len(deps)
        ready = [i for i, d in enumerate(indeg) if d == 0]
        heapq.heapify(ready)
        order: list[Node] = []
        while ready:
            i = heapq.heappop(ready)
            order.append(nodes[i])
            for u in users[i]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) != len(nodes):
            stuck = [nodes[i] for i, d in enumerate(indeg) if d > 0]
            cycle = _find_cycle(stuck, self)
            raise IRError(
                "the graph has a cycle: " + " -> ".join(n.describe() for n in cycle),
                node=cycle[0].describe(),
            )
        self._relink(order)

    def verify(self) -> None:
        """Check use lists, topological order, dangling values and dtypes.

        Raises :class:`~qcc.errors.IRError` listing every problem, each naming its node.
        """
        from qcc.ir.verify import verify_graph

        verify_graph(self)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {self._len} nodes)"


def _defined_within(v: Value, node: Node) -> bool:
    """Whether ``v`` is defined inside ``node``'s subgraphs (at any depth)."""
    g = v.graph
    while g is not None:
        if g.parent is node:
            return True
        g = g.parent.graph if g.parent is not None else None
    return False


def _find_cycle(stuck: list[Node], graph: Graph) -> list[Node]:
    import networkx as nx

    dg = nx.DiGraph()
    ids = {id(n): n for n in stuck}
    for n in stuck:
        dg.add_node(id(n))
        for v in [v for v in n._inputs if v is not None] + graph.outer_values_of(n):
            p = v._producer
            if p is not None and id(p) in ids:
                dg.add_edge(id(p), id(n))
    try:
        edges = nx.find_cycle(dg)
        return [ids[a] for a, _ in edges] + [ids[edges[0][0]]]
    except nx.NetworkXNoCycle:  # pragma: no cover - stuck nodes always contain a cycle
        return stuck


# --------------------------------------------------------------------------- fusion groups


@dataclasses.dataclass(frozen=True, eq=False)
class FusionGroup:
    """Nodes a backend runs as one kernel (an anchor such as Conv and its activation).

    Every member carries the group in ``node.meta["fusion_group"]``; passes that place
    quantizers must not put one on a value inside a group (:meth:`inner_values`).
    """

    rule: str
    nodes: tuple[Node, ...]  # the anchor first, the node writing the group's output last

    @property
    def anchor(self) -> Node:
        return self.nodes[0]

    @property
    def output(self) -> Value:
        return self.nodes[-1].outputs[0]

    def inner_values(self) -> list[Value]:
        """Values produced inside the group other than its output."""
        out = self.output
        return [o for n in self.nodes for o in n.outputs if o is not out and o.name]

    def describe(self) -> str:
        return f"{self.rule}: " + " + ".join(n.describe() for n in self.nodes)


def fusion_group(node: Node) -> FusionGroup | None:
    return node.meta.get("fusion_group")


# --------------------------------------------------------------------------- model


class Model:
    """A model: the main graph plus the ModelProto fields qcc carries through."""

    __slots__ = (
        "doc_string",
        "domain",
        "functions",
        "graph",
        "ir_version",
        "metadata_props",
        "model_version",
        "opaque",
        "path",
        "producer_name",
        "producer_version",
    )

    def __init__(self, graph: Graph, *, ir_version: int = 8) -> None:
        self.graph = graph
        self.ir_version = ir_version
        self.producer_name = ""
        self.producer_version = ""
        self.domain = ""
        self.model_version = 0
        self.doc_string = ""
        self.metadata_props: dict[str, str] = {}
        self.functions: list[Any] = []  # FunctionProtos, passed through untouched
        self.opaque: dict[str, Any] = {}  # other pass-through fields (training_info ...)
        self.path: str | None = None

    @property
    def opset_imports(self) -> dict[str, int]:
        return self.graph.opset_imports

    @property
    def opset(self) -> int:
        """Version of the default (ai.onnx) domain."""
        return self.graph.opset_imports.get("", self.graph.opset_imports.get("ai.onnx", 0))

    def verify(self) -> None:
        self.graph.verify()


# --------------------------------------------------------------------------- helpers


def merge_types(into: Value, other: Value) -> None:
    """Give ``into`` what ``other`` knows of the same tensor's type (dtype, static dims)."""
    if into.opaque_type is None and other.opaque_type is not None and into.dtype is None:
        into.opaque_type = other.opaque_type
    if into.dtype is None:
        into.dtype = other.dtype
    if into.shape is None:
        into.shape = other.shape
    elif other.shape is not None and len(into.shape) == len(other.shape):
        into.shape = tuple(
            a if isinstance(a, int) else b if isinstance(b, int) else a if a is not None else b
            for a, b in zip(into.shape, other.shape, strict=True)
        )


def constant_value(value: Value | None) -> np.ndarray | None:
    """The constant data of ``value``: an initializer, or the output of a ``Constant`` node
    (so passes see through the Constant nodes that Paddle exports use). None otherwise."""
    if value is None:
        return None
    if value.const is not None and not value.is_graph_input:
        return value.const
    p = value.producer
    if p is not None and p.op_type == "Constant" and p.domain == "":
        return constant_node_value(p)
    return None


def constant_node_value(node: Node) -> np.ndarray | None:
    """The tensor a ``Constant`` node produces, or None (sparse or unknown attribute)."""
    for key, a in node.attrs.items():
        if key == "value" and a.type is AttrType.TENSOR:
            return a.value
        if key == "value_float":
            return np.array(a.value, dtype=np.float32)
        if key == "value_floats":
            return np.array(a.value, dtype=np.float32)
        if key == "value_int":
            return np.array(a.value, dtype=np.int64)
        if key == "value_ints":
            return np.array(a.value, dtype=np.int64)
        if key == "value_string":
            return np.array(a.value, dtype=object)
        if key == "value_strings":
            return np.array(list(a.value), dtype=object)
    return None
