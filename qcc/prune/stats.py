"""Second moments of the tensors pruned layers read, streamed from the calibration data.

For a tensor whose channel axis has ``n`` positions, :class:`Moments` keeps the ``(n+1) x
(n+1)`` matrix ``G = sum [x, 1]^T [x, 1]`` over every position of every sample (the channel
vector ``x`` at one batch element and one spatial place is one row; the trailing 1 carries the
mean, so a least-squares fit can move a bias). That is all output-error importance and
least-squares recovery need for layers that mix channels linearly.

The model runs in onnxruntime over the session's calibration data, batch by batch, with only
the wanted tensors added as outputs (the calibrate pass's machinery); each batch updates the
sums and is dropped. Rows beyond ``max_rows`` per tensor and batch are subsampled with a fixed
seed, so memory and time stay bounded and the result is deterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort

from qcc.frontend import lower_model
from qcc.frontend.ort_eval import session_options
from qcc.ir import Model, Value
from qcc.pipeline import Session


@dataclasses.dataclass
class Moments:
    """``gram`` is ``sum [x, 1]^T [x, 1]`` (float64, the ones column last) over ``rows``."""

    gram: np.ndarray
    rows: int = 0

    @property
    def n(self) -> int:
        return self.gram.shape[0] - 1

    def mean_gram(self) -> np.ndarray:
        return self.gram / max(self.rows, 1)


def capture_moments(
    model: Model,
    session: Session,
    wanted: Sequence[tuple[Value, int]],
    *,
    max_rows: int = 4096,
    seed: int = 0,
    label: str = "pruning statistics",
) -> dict[Value, Moments]:
    """Stream the calibration data through ``model`` and return the moments of each
    ``(value, channel axis)`` in ``wanted``."""
    data = session.calibration
    proto = lower_model(model)
    graph_inputs = {v.name for v in model.graph.inputs}
    existing = {o.name for o in proto.graph.output}
    for v, _ in wanted:
        if v.name not in graph_inputs and v.name not in existing:
            proto.graph.output.append(onnx.ValueInfoProto(name=v.name))
            existing.add(v.name)
    fetch = [(v, a) for v, a in wanted if v.name not in graph_inputs]
    fed = [(v, a) for v, a in wanted if v.name in graph_inputs]
    sess = ort.InferenceSession(
        proto.SerializeToString(),
        session_options(optimize=True),
        providers=["CPUExecutionProvider"],
    )
    names = [v.name for v, _ in fetch]
    out: dict[Value, Moments] = {}
    rng = np.random.default_rng(seed)
    advance = session.progress_bar(data.count, label)
    for n, feed in data.batches(session.calibration_batch):
        arrays = sess.run(names, feed) if names else []
        pairs = list(zip(fetch, arrays, strict=True)) + [((v, a), feed[v.name]) for v, a in fed]
        for (v, axis), arr in pairs:
            x = np.moveaxis(np.asarray(arr), axis, -1)
            x = x.reshape(-1, x.shape[-1])
            if x.shape[0] > max_rows:
                x = x[np.sort(rng.choice(x.shape[0], max_rows, replace=False))]
            x = x.astype(np.float64)
            m = out.get(v)
            if m is None:
                m = out[v] = Moments(np.zeros((x.shape[1] + 1, x.shape[1] + 1)))
            g = m.gram
            g[:-1, :-1] += x.T @ x
            s = x.sum(axis=0)
            g[:-1, -1] += s
            g[-1, :-1] += s
            g[-1, -1] += x.shape[0]
            m.rows += x.shape[0]
        advance(n)
    return out
