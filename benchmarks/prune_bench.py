"""Pruning benchmark: what 25% structured channel pruning buys on the zoo, and what it costs.

For each model (default: tv_mobilenet_v3_small, ppocr_cls_v2, ppocrv4_det) this compiles, on
the model's calibration file:

* ``l2``: ``prune25`` ranking channels by the L2 norm of their filters, no recovery (the
  classic filter-pruning baseline);
* ``no-recovery``: ``prune25`` ranking by output error, without least-squares recovery;
* ``exact25``: ``prune25`` with exactly 25% of every layer (``multiple = 1``);
* ``prune25``: the built-in recipe (output error, least-squares recovery, widths in multiples
  of 8);
* ``prune25-int8``: the same followed by the default INT8 quantization;

and prints, against the FP32 model: parameters, MACs (at the calibration sample's shape) and
file size before and after, onnxruntime latency as a pairwise ratio (FP32 / candidate,
alternating runs, above 1: the candidate is faster), the task metric and the output SNR
against FP32 on 8 held-out samples (the zoo's ``prep.py compare``; the lowest over outputs).
Markdown and JSON go to ``benchmarks/results/``. Run from the repository root::

    python benchmarks/prune_bench.py
    python benchmarks/prune_bench.py --models ppocr_cls_v2 --runs 40
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quant_bench import METRICS, ROOT, ZOO, feed_of, pairwise, run_job, score

MODELS = ["tv_mobilenet_v3_small", "ppocr_cls_v2", "ppocrv4_det"]
CONFIGS = {
    "l2": ["-r", "prune25", "-D", "criterion=l2", "-D", "recovery=none"],
    "no-recovery": ["-r", "prune25", "-D", "recovery=none"],
    "exact25": ["-r", "prune25", "-D", "multiple=1"],
    "prune25": ["-r", "prune25"],
    "prune25-int8": ["-r", "prune25-int8"],
}


def cost(model: Path, calib: Path) -> dict:
    import numpy as np

    from qcc.frontend import read_model
    from qcc.pipeline import PassManager, parse_pass_list
    from qcc.prune.cost import model_cost

    m = read_model(model)
    # Constant shape subgraphs (Paddle exports) hide the shapes MACs need: fold them first
    PassManager(parse_pass_list("fold-constants")).run(m)
    arr = np.load(calib, mmap_mode="r") if calib.suffix == ".npy" else None
    shapes = {m.graph.inputs[0].name: arr.shape[1:]} if arr is not None else None
    c = model_cost(m, shapes)
    return {"params": c.params, "macs": c.macs, "mb": round(model.stat().st_size / 1e6, 3)}


def bench_model(name: str, args, work: Path) -> list[dict]:
    d = args.zoo / name
    model = d / "model.onnx"
    calib = d / "calib.npy" if (d / "calib.npy").exists() else d / "calib.npz"
    feed = feed_of(model, calib)
    base = {"model": name, "config": "fp32", **cost(model, calib)}
    base.update(score(model, name, args.zoo))
    base["metric"] = base.get("fp32")
    rows = [base]
    for cfg, extra in CONFIGS.items():
        out = work / f"{name}.{cfg}.onnx"
        cmd = [sys.executable, "-m", "qcc.cli", "compile", str(model), *extra]
        cmd += ["--calib", str(calib), "-o", str(out)]
        print(f"  {name}: {cfg} ...", flush=True)
        wall, rss, log = run_job(cmd)
        row = {"model": name, "config": cfg, "seconds": round(wall, 1), "peak_rss_mb": round(rss)}
        if not out.exists():
            row["error"] = log.strip().splitlines()[-1] if log.strip() else "no output"
            rows.append(row)
            continue
        import onnx

        onnx.checker.check_model(str(out))
        row.update(cost(out, calib))
        row.update(score(out, name, args.zoo))
        row["speedup_vs_fp32"] = round(pairwise(model, out, feed, args.runs), 3)
        for key in ("rel-error-before-fit", "rel-error-after-fit"):
            for line in log.splitlines():
                if key in line:
                    row[key] = float(line.split(f"{key}=")[1].split(",")[0].split(";")[0])
        rows.append(row)
    return rows


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else ""


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | config | params | MACs | MB | speed vs FP32 | metric | FP32 metric | "
        "output SNR dB | layer error before -> after fit | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fp32 = {r["model"]: r for r in rows if r["config"] == "fp32"}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['config']} | failed: {r['error'][:80]} ||||||||| ")
            continue
        b = fp32[r["model"]]
        macs = f"{r['macs'] / 1e6:.1f} M" if r.get("macs") else "?"
        if r is not b and r.get("macs") and b.get("macs"):
            macs += f" ({r['macs'] / b['macs']:.2f})"
        params = f"{r['params'] / 1e6:.3f} M"
        if r is not b:
            params += f" ({r['params'] / b['params']:.2f})"
        fit = ""
        if "rel-error-before-fit" in r:
            fit = f"{r['rel-error-before-fit']:.4f} -> {r['rel-error-after-fit']:.4f}"
        speed = f"{r['speedup_vs_fp32']:.2f}x" if "speedup_vs_fp32" in r else ""
        metric = f"{r['metric']:.3f}" if r.get("metric") is not None else ""
        snr = f"{r['snr_db']:.1f}" if r is not b and r.get("snr_db") is not None else ""
        lines.append(
            f"| {r['model']} | {r['config']} | {params} | {macs} | {r['mb']} | {speed} | "
            f"{metric} | {b.get('metric', 0):.3f} | {snr} | {fit} | {r.get('seconds', '')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, default=ZOO)
    ap.add_argument("--models", help="comma-separated zoo models (default: the three above)")
    ap.add_argument("--runs", type=int, default=30, help="alternating latency runs per pair")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else MODELS
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        ap.error(f"unknown zoo model(s): {', '.join(unknown)}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qcc-prune-bench-") as tmp:
        for name in names:
            print(f"{name}:", flush=True)
            rows += bench_model(name, args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    table = markdown(rows)
    (args.out / f"prune-{stamp}.md").write_text(table)
    (args.out / f"prune-{stamp}.json").write_text(json.dumps(rows, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
