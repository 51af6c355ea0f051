"""``eliminate-dead-code``: remove nodes and constants that no graph output depends on.

Rewrite
    Walking the main graph backwards, a node none of whose outputs is used (by a node of this
    graph or of any subgraph) or is a graph output is removed; then every constant that is
    no longer used, and is neither a graph input nor a graph output, is removed.

Does not fire on
    * graph inputs, even unused ones: they are the model's interface;
    * nodes inside subgraphs (bodies are carried through untouched); values of the main graph
      that a subgraph reads stay alive because those reads are ordinary uses;
    * unused optional outputs of a live node (the node is still needed).
"""

from __future__ import annotations

import collections

from qcc.ir import Graph
from qcc.pipeline import PassContext, PassResult, register_pass


@register_pass("eliminate-dead-code")
def eliminate_dead_code(graph: Graph, ctx: PassContext) -> PassResult:
    """Remove nodes whose outputs nothing uses, and constants nothing reads."""
    result = PassResult()
    removed: collections.Counter[str] = collections.Counter()
    for node in reversed(graph):  # users before producers: one sweep removes whole chains
        if any(o.has_uses() or o.is_graph_output for o in node.outputs):
            continue
        graph.remove(node)
        removed[node.op_type] += 1
    freed = 0
    for v in list(graph.initializers.values()):
        if not v.has_uses() and not v.is_graph_input and not v.is_graph_output:
            freed += v.const.nbytes
            graph.remove_initializer(v)
            result.count("constants")
    if removed:
        result.count("nodes", sum(removed.values()))
        result.note("removed " + ", ".join(f"{op} x{n}" for op, n in sorted(removed.items())))
    if freed:
        result.stats["bytes"] = freed
    return result
