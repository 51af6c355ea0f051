"""How far sampled histograms move the ranges: exact binning against ``values = N``.

For a model and its calibration ``.npy`` (default: the zoo's ppocrv4_rec), every float
output of the listed operator types is observed twice, by a histogram that bins every value
and by one that samples (``HistogramObserver(values=N)``), over the same samples; the script
prints the tensors whose ``percentile(p)`` range widths differ most, the binning time of each,
and how many ranges differ by more than 1%. Run from the repository root::

    python benchmarks/observer_sampling.py
    python benchmarks/observer_sampling.py --model ~/.cache/qcc-zoo/ppocrv4_det/model.onnx \\
        --calib ~/.cache/qcc-zoo/ppocrv4_det/calib.npy --values 4096
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from qcc.quant.observers import HistogramObserver

ZOO = Path.home() / ".cache" / "qcc-zoo"
OPS = {
    "Conv", "Relu", "Add", "Mul", "Sub", "Div", "Sigmoid", "HardSigmoid", "HardSwish", "Clip",
    "Concat", "MatMul", "Softmax", "Transpose", "Reshape", "GlobalAveragePool", "AveragePool",
}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ZOO / "ppocrv4_rec" / "model.onnx")
    ap.add_argument("--calib", type=Path, default=ZOO / "ppocrv4_rec" / "calib.npy")
    ap.add_argument("--values", type=int, default=4096, help="the sampled observer's budget")
    ap.add_argument("--p", type=float, default=99.999, help="percentile compared")
    ap.add_argument("--top", type=int, default=10, help="tensors listed")
    args = ap.parse_args()

    m = onnx.load(args.model)
    names = [n.output[0] for n in m.graph.node if n.op_type in OPS]
    for name in names:
        m.graph.output.append(onnx.ValueInfoProto(name=name))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    data = np.load(args.calib, mmap_mode="r")
    feed_name = sess.get_inputs()[0].name
    exact = {n: HistogramObserver() for n in names}
    sampled = {n: HistogramObserver(values=args.values) for n in names}
    shapes: dict[str, tuple[int, ...]] = {}
    spent = {"exact": 0.0, "sampled": 0.0}
    for i in range(len(data)):
        outs = sess.run(names, {feed_name: np.asarray(data[i])})
        for name, arr in zip(names, outs, strict=True):
            if arr.dtype != np.float32:
                continue
            shapes[name] = arr.shape
            for key, obs in (("exact", exact[name]), ("sampled", sampled[name])):
                t0 = time.perf_counter()
                obs.update(arr)
                spent[key] += time.perf_counter() - t0
    rows = []
    for name in shapes:
        a = exact[name].percentile_range(args.p, False)
        b = sampled[name].percentile_range(args.p, False)
        wa, wb = a[1] - a[0], b[1] - b[0]
        rows.append((abs(wb / wa - 1.0) if wa else 0.0, name, shapes[name], a, b))
    rows.sort(key=lambda r: (-r[0], r[1]))
    for d, name, shape, a, b in rows[: args.top]:
        print(f"{d:8.4%}  {name[:48]:48s} {shape}  exact ({a[0]:.4g}, {a[1]:.4g})  "
              f"sampled ({b[0]:.4g}, {b[1]:.4g})")  # fmt: skip
    print(
        f"{len(rows)} tensors, {len(data)} samples; ranges differing by more than 1%: "
        f"{sum(1 for r in rows if r[0] > 0.01)}; largest difference {rows[0][0]:.3%}"
    )
    print(f"binning time: every value {spent['exact']:.2f} s, sampled {spent['sampled']:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
