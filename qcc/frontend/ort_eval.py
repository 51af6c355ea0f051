"""FP32 reference execution in onnxruntime: run a set of IR nodes on constant inputs.

Constant folding uses this so that a folded value is exactly what onnxruntime's own kernel
computes (onnxruntime folds the same nodes with the same kernels when it loads a model). Graph
optimizations are disabled so each node runs as written.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort

from qcc.frontend.lower import array_to_tensor, lower_node
from qcc.ir import Node, Value, constant_value


def session_options(*, optimize: bool = False, threads: int = 0) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # qcc runs models in short bursts between numpy work (observers, comparisons): threads
    # that spin-wait for the next parallel section burn the core that work needs (measured:
    # calibration of ppocr_cls_v2 took 40% more CPU). Threads and their split of each
    # kernel are unchanged, so results are too; only idle threads sleep.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    return so


def run_nodes(
    nodes: Sequence[Node], opset_imports: dict[str, int], ir_version: int
) -> dict[Value, np.ndarray]:
    """Evaluate ``nodes`` (in order) whose outside inputs are all constants.

    Returns every named output of every node. Raises whatever onnxruntime raises.
    """
    gp = onnx.GraphProto(name="qcc_eval")
    produced = {o for n in nodes for o in n.outputs}
    fed: set[Value] = set()
    for n in nodes:
        for v in n.inputs:
            if v is None or v in produced or v in fed:
                continue
            arr = constant_value(v)
            if arr is None:
                raise ValueError(f"input {v.name!r} of node {n.describe()} is not constant")
            gp.initializer.append(array_to_tensor(arr, v.name))
            fed.add(v)
        gp.node.append(lower_node(n))
    outs = [o for n in nodes for o in n.outputs if o.name]
    for o in outs:
        gp.output.append(onnx.ValueInfoProto(name=o.name))
    mp = onnx.helper.make_model(
        gp,
        opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opset_imports.items()],
        ir_version=ir_version,
    )
    sess = ort.InferenceSession(
        mp.SerializeToString(), session_options(threads=1), providers=["CPUExecutionProvider"]
    )
    results = sess.run([o.name for o in outs], {})
    return dict(zip(outs, results, strict=True))
