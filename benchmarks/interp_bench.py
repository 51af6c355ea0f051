"""Interpreter benchmark: speed of qcc's reference interpreter against onnxruntime, and
``qcc verify`` on every quantized zoo model.

For each model of ``../shared/zoo`` (built in ``~/.cache/qcc-zoo``, or ``--zoo``), the script
quantizes it with qcc's default recipe (``int8-ort``, 32 calibration samples) unless
``--quantized DIR`` already holds ``<model>*.onnx`` files, then for each quantized model:

- times onnxruntime (default session options, one thread) and the interpreter (``ort-x86``,
  one BLAS thread unless ``OPENBLAS_NUM_THREADS`` says otherwise) per sample, alternating,
  median of ``--runs``; prints the ratio (the target: at most 20x);
- runs ``qcc verify --tensors all`` on 4 calibration samples and reports integer tensors
  bit-exact / total, and how many tensors after float islands differ.

Writes ``benchmarks/results/interp-<time>.md`` and ``.json``.

    python benchmarks/interp_bench.py [--models a,b] [--quantized /tmp/zoo8] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# One BLAS thread for the interpreter, as onnxruntime gets one intra-op thread; set before numpy
# loads OpenBLAS (on a shared 2-core machine a second BLAS thread made the interpreter slower).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
ZOO = Path.home() / ".cache" / "qcc-zoo"


def feeds_of(calib: Path, sess: ort.InferenceSession, n: int) -> list[dict[str, np.ndarray]]:
    if calib.suffix == ".npz":
        z = np.load(calib)
        return [{k: z[k][i] for k in z.files} for i in range(min(n, len(z[z.files[0]])))]
    a = np.load(calib)
    name = sess.get_inputs()[0].name
    return [{name: a[i]} for i in range(min(n, len(a)))]


def timed(fn, feed) -> float:
    t = time.perf_counter()
    fn(feed)
    return time.perf_counter() - t


def bench(model: Path, calib: Path, runs: int) -> dict:
    from qcc.frontend.reader import read_model
    from qcc.interp import Interpreter
    from qcc.verify import verify_file

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    feeds = feeds_of(calib, sess, runs)
    it = Interpreter(read_model(model))
    t_ort, t_int = [], []
    sess.run(None, feeds[0])  # warm-up
    for i in range(runs):
        f = feeds[i % len(feeds)]
        t_ort.append(timed(lambda x: sess.run(None, x), f))
        t_int.append(timed(it.run, f))
    rep = verify_file(model, data=str(calib), samples=4, tensors="all")
    exact = [r for r in rep.results if r.exact]
    return {
        "model": model.name,
        "ort_ms": 1e3 * float(np.median(t_ort)),
        "interp_ms": 1e3 * float(np.median(t_int)),
        "ratio": float(np.median(t_int) / np.median(t_ort)),
        "integer_exact": len(exact) - len(rep.integer_mismatches),
        "integer_total": len(exact),
        "island_nodes": len(rep.islands),
        "island_tensors_differ": len(rep.island_mismatches),
        "outputs_differ": [r.name for r in rep.results if r.kind == "output" and r.mismatches],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--zoo", type=Path, default=ZOO)
    ap.add_argument("--models", help="comma-separated zoo model names (default: all)")
    ap.add_argument("--quantized", type=Path, help="directory with <model>*.onnx to use")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    names = (
        args.models.split(",")
        if args.models
        else sorted(p.parent.name for p in args.zoo.glob("*/model.onnx"))
    )
    work = Path("/tmp/qcc-interp-bench")
    work.mkdir(exist_ok=True)
    rows = []
    for name in names:
        d = args.zoo / name
        calib = next(p for p in (d / "calib.npy", d / "calib.npz") if p.exists())
        if args.quantized:
            models = sorted(
                p
                for p in args.quantized.glob(f"{name}.*.onnx")
                if p.name.count(".onnx") == 1 and "opset13" not in p.name
            )
        else:
            out = work / f"{name}.qcc.onnx"
            small = work / f"{name}.calib32{calib.suffix}"
            if calib.suffix == ".npy":
                np.save(small, np.load(calib)[:32])
            else:
                z = np.load(calib)
                np.savez(small, **{k: z[k][:32] for k in z.files})
            cmd = [sys.executable, "-m", "qcc.cli", "compile", str(d / "model.onnx")]
            cmd += ["-r", "int8-ort", "--calib", str(small), "-o", str(out)]
            subprocess.run(cmd, check=True, capture_output=True)
            models = [out]
        for m in models:
            r = bench(m, calib, args.runs)
            r["zoo_model"] = name
            rows.append(r)
            print(
                f"{m.name:42s} ort {r['ort_ms']:8.1f} ms  interp {r['interp_ms']:8.1f} ms  "
                f"x{r['ratio']:5.1f}  integer {r['integer_exact']}/{r['integer_total']}  "
                f"islands {r['island_nodes']} ({r['island_tensors_differ']} tensors differ)",
                flush=True,
            )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"interp-{stamp}.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "| model | ORT ms/sample | interpreter ms/sample | ratio | integer tensors bit-exact "
        "| float-island nodes | island tensors differing | outputs differing |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['ort_ms']:.1f} | {r['interp_ms']:.1f} | {r['ratio']:.1f}x | "
            f"{r['integer_exact']}/{r['integer_total']} | {r['island_nodes']} | "
            f"{r['island_tensors_differ']} | {', '.join(r['outputs_differ']) or '-'} |"
        )
    (args.out / f"interp-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
