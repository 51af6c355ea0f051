"""``fold-constants``: replace computations on constants by their results.

Rewrite
    1. ``Constant`` nodes (what Paddle and PyTorch exports use for weights and shape data)
       become constants (initializers) under the same tensor name.
    2. A node of the ai.onnx domain whose inputs are all constants (or results of nodes folded
       in this run) is evaluated and replaced by constants named like its outputs. Evaluation
       runs the nodes in onnxruntime with graph optimizations off, so each folded value is
       exactly what onnxruntime's own kernel computes.
    3. ``Shape`` and ``Size`` of a value whose shape is fully static fold to their result
       without evaluating anything.
    Constants that lose their last use are removed.

Does not fire on
    * random ops (RandomNormal, Bernoulli, ...), whose value differs from run to run;
    * QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear: folding them would erase the
      quantization structure that runtimes pattern-match;
    * nodes with subgraphs (If, Loop, Scan), nodes of other domains, non-tensor outputs;
    * nodes writing a graph output (the output keeps its producer);
    * nodes whose result would exceed ``max-bytes`` and be larger than their inputs (folding an
      Expand or a ConstantOfShape can bloat the file);
    * nodes inside subgraphs (the pass works on the main graph only);
    * ``Constant`` nodes holding a sparse tensor.
"""

from __future__ import annotations

import collections

import numpy as np

from qcc.frontend.ort_eval import run_nodes
from qcc.ir import Graph, Node, Value, constant_node_value
from qcc.pipeline import PassContext, PassResult, register_pass

_NEVER = frozenset(
    {
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "Constant",
    }
)


@register_pass("fold-constants")
def fold_constants(graph: Graph, ctx: PassContext, *, max_bytes: int = 16 << 20) -> PassResult:
    """Turn Constant nodes into constants and evaluate nodes whose inputs are all constant.

    Options:
        max-bytes: do not fold a node whose output is larger than this many bytes and larger
            than its inputs (default 16 MiB).
    """
    result = PassResult()
    _constant_nodes(graph, result)

    foldable: list[Node] = []
    known: set[Value] = set()
    for node in graph:
        if _static_shape_op(graph, node, result):
            continue
        if not _eligible(node):
            continue
        if all(v is None or v in known or _is_const(v) for v in node.inputs):
            foldable.append(node)
            known.update(node.outputs)
    if not foldable:
        return result

    values = _evaluate(foldable, graph, ctx)
    touched: set[Value] = set()
    folded_ops: collections.Counter[str] = collections.Counter()
    for node in reversed(foldable):
        outs = node.outputs
        if any(o not in values for o in outs if o.name):
            continue
        arrays = [values.get(o) for o in outs]
        if not all(isinstance(a, np.ndarray) for a in arrays if a is not None):
            continue
        in_bytes = sum(_nbytes(v) for v in node.inputs if v is not None)
        if any(a is not None and a.nbytes > max_bytes and a.nbytes > in_bytes for a in arrays):
            result.count("skipped-too-large")
            result.note(f"kept {node.describe()}: its result exceeds max-bytes={max_bytes}")
            continue
        if not any(o.has_uses() for o in outs):
            continue  # its consumers were all folded: it is dead, and goes below
        touched.update(v for v in node.inputs if v is not None)
        graph.replace_with_constants(node, arrays)
        folded_ops[node.op_type] += 1
    # nodes whose every consumer was folded are dead now; remove them in reverse order
    for node in reversed(foldable):
        if node.graph is graph and not any(o.has_uses() or o.is_graph_output for o in node.outputs):
            touched.update(v for v in node.inputs if v is not None)
            graph.remove(node)
            folded_ops[node.op_type] += 1
    removed = graph.remove_unused_constants(touched)
    if removed:
        result.count("constants-removed", removed)
    if folded_ops:
        result.count("folded", sum(folded_ops.values()))
        result.note("folded " + ", ".join(f"{op} x{n}" for op, n in sorted(folded_ops.items())))
    return result


def _constant_nodes(graph: Graph, result: PassResult) -> None:
    for node in graph:
        if node.op_type != "Constant" or node.domain:
            continue
        out = node.output
        if out.is_graph_output:
            continue
        arr = constant_node_value(node)
        if arr is None:
            continue
        if out.has_uses():
            graph.replace_with_constants(node, [arr])
        else:
            graph.remove(node)
        result.count("constant-nodes")


def _is_const(v: Value) -> bool:
    return v.const is not None and not v.is_graph_input


def _nbytes(v: Value) -> int:
    return int(v.const.nbytes) if v.const is not None else 0


def _eligible(node: Node) -> bool:
    if node.domain or node.op_type in _NEVER or node.subgraphs():
        return False
    return not any(o.is_graph_output or o.opaque_type is not None for o in node.outputs)


def _static_shape_op(graph: Graph, node: Node, result: PassResult) -> bool:
    """Fold Shape/Size of a statically shaped value; True if folded."""
    if node.domain or node.op_type not in ("Shape", "Size") or node.output.is_graph_output:
        return False
    x = node.input(0)
    if x is None or x.shape is None or not all(isinstance(d, int) for d in x.shape):
        return False
    if _is_const(x):
        return False  # evaluated with the others
    dims = [int(d) for d in x.shape]
    if node.op_type == "Shape":
        start, end = node.attr("start", 0), node.attr("end", None)
        arr = np.array(dims[slice(start, end)], dtype=np.int64)
    else:
        arr = np.array(int(np.prod(dims, dtype=np.int64)), dtype=np.int64)
    graph.replace_with_constants(node, [arr])
    result.count("folded")
    result.count("static-shape")
    return True


def _evaluate(nodes: list[Node], graph: Graph, ctx: PassContext) -> dict[Value, np.ndarray]:
    """Run all foldable nodes in one onnxruntime session; on failure, node by node."""
    ir_version = ctx.model.ir_version
    try:
        return run_nodes(nodes, graph.opset_imports, ir_version)
    except Exception as e:  # one bad node spoils the batch: isolate it
        ctx.log.debug("batch folding failed (%s); folding node by node", e)
    values: dict[Value, np.ndarray] = {}
    for node in nodes:
        if any(v is not None and not _is_const(v) and v not in values for v in node.inputs):
            continue  # depends on a node that failed
        try:
            values.update(_run_single(node, values, graph, ir_version))
        except Exception as e:
            ctx.log.info("cannot fold %s: %s", node.describe(), str(e).splitlines()[0])
    return values


def _run_single(
    node: Node, known: dict[Value, np.ndarray], graph: Graph, ir_version: int
) -> dict[Value, np.ndarray]:
    # feed already-computed inputs as temporary constants
    feeds = [v if v is None or _is_const(v) else Value(v.name, const=known[v]) for v in node.inputs]
    proxy = Node(
        node.op_type,
        feeds,
        domain=node.domain,
        attrs=dict(node.attrs),
        outputs=[o.name for o in node.outputs],
    )
    try:
        res = run_nodes([proxy], graph.opset_imports, ir_version)
    finally:
        proxy.set_inputs([])  # the proxy must not stay registered as a user
    return {orig: res[p] for orig, p in zip(node.outputs, proxy.outputs, strict=True) if p in res}
