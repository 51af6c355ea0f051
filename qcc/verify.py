"""``qcc verify``: run a quantized model in onnxruntime and in the reference interpreter and
compare them element by element.

Two comparisons:

- **outputs** (always): both run freely on the same inputs; every graph output is compared.
- **every quantized tensor** (``tensors="all"``): the output of each QuantizeLinear (and of each
  QOperator op: QLinearConv, MatMulInteger ...) is exposed as an extra graph output, in both
  runs. The interpreter compares each such tensor with onnxruntime's as soon as it computes it
  and then continues from onnxruntime's value, so a mismatch is reported where it arises and not
  again in every tensor after it.

A tensor is *integer* when everything that computed it (since the previous compared tensor) ran
in kernels that reproduce onnxruntime bit for bit; it is a *float island* when a kernel on the
way is marked inexact (a float Conv, MatMul or LSTM whose accumulation order is MLAS's). Integer
mismatches fail the check (exit 1); float-island mismatches are reported separately and do not.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from qcc.errors import ExitCode, QccError
from qcc.ir import Model, Node, Value

QOPERATOR_OPS = {
    "QuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "QLinearAdd",
    "QLinearMul",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearConcat",
    "QLinearSoftmax",
    "QGemm",
}


class VerifyFailed(QccError):
    """The interpreter and the runtime disagree on an integer tensor."""

    exit_code = ExitCode.CHECK_FAILED


@dataclasses.dataclass
class TensorResult:
    """The comparison of one tensor over every sample."""

    name: str
    kind: str  # "output" or "tensor"
    dtype: str
    producer: str
    exact: bool = True  # computed by bit-exact kernels only (else: a float island)
    elements: int = 0
    mismatches: int = 0
    max_diff: float = 0.0  # in LSB for integer tensors, absolute for float ones
    first: tuple[int, tuple[int, ...]] | None = None  # (sample, index)

    @property
    def integer(self) -> bool:
        return self.dtype.startswith(("int", "uint"))

    def add(self, sample: int, want: np.ndarray, got: np.ndarray) -> None:
        self.elements += int(want.size)
        if want.shape != got.shape:
            self.mismatches += int(want.size)
            self.max_diff = math.inf
            if self.first is None:
                self.first = (sample, ())
            return
        if want.dtype.kind == "f":
            same = (want == got) | (np.isnan(want) & np.isnan(got))
            diff = np.abs(want.astype(np.float64) - got.astype(np.float64))
        else:
            same = want == got
            diff = np.abs(want.astype(np.int64) - got.astype(np.int64)).astype(np.float64)
        bad = ~same
        n = int(bad.sum())
        if n:
            self.mismatches += n
            self.max_diff = max(self.max_diff, float(np.nanmax(np.where(bad, diff, 0))))
            if self.first is None:
                self.first = (sample, tuple(int(i) for i in np.argwhere(bad)[0]))

    def to_json(self) -> dict[str, Any]:
        return {
            "tensor": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "producer": self.producer,
            "exact": self.exact,
            "elements": self.elements,
            "mismatches": self.mismatches,
            "max_diff": None if math.isinf(self.max_diff) else self.max_diff,
            "first_mismatch": None
            if self.first is None
            else {"sample": self.first[0], "index": list(self.first[1])},
        }


@dataclasses.dataclass
class VerifyReport:
    model: str
    profile: str
    samples: int
    data: str
    results: list[TensorResult]
    islands: list[str]  # nodes run by inexact float kernels

    @property
    def integer_mismatches(self) -> list[TensorResult]:
        return [r for r in self.results if r.mismatches and r.exact]

    @property
    def island_mismatches(self) -> list[TensorResult]:
        return [r for r in self.results if r.mismatches and not r.exact]

    @property
    def ok(self) -> bool:
        return not self.integer_mismatches

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "profile": self.profile,
            "samples": self.samples,
            "data": self.data,
            "ok": self.ok,
            "integer_mismatches": len(self.integer_mismatches),
            "float_island_mismatches": len(self.island_mismatches),
            "float_islands": self.islands,
            "tensors": [r.to_json() for r in self.results],
        }


# --------------------------------------------------------------------------- inputs


def _q_range_of_input(v: Value) -> tuple[float, float] | None:
    from qcc.ir import constant_value

    for use in v.uses:
        n = use.node
        if n.op_type == "QuantizeLinear" and use.index == 0:
            s = constant_value(n.input(1))
            zv = n.input(2) if len(n.inputs) > 2 else None
            z = np.zeros((), np.uint8) if zv is None else constant_value(zv)
            if s is None or z is None or np.size(s) != 1:
                continue
            info = np.iinfo(np.asarray(z).dtype)
            zp = int(np.asarray(z).reshape(()))
            sc = float(np.asarray(s).reshape(()))
            return sc * (info.min - zp), sc * (info.max - zp)
    return None


def random_feeds(model: Model, count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded random inputs in each input's range: a float input that feeds a QuantizeLinear
    spans that Q's representable range, other float inputs [-1, 1], 8-bit ones their type."""
    from qcc.interp.run import dtype_of

    rng = np.random.default_rng(seed)
    g = model.graph
    feeds: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for v in g.inputs:
        if v.is_constant:
            continue
        if v.shape is None:
            raise QccError(f"input {v.name!r} has no known shape: give data with --data")
        shape = []
        for i, d in enumerate(v.shape):
            if isinstance(d, int) and d > 0:
                shape.append(d)
            elif i == 0:
                shape.append(1)
            else:
                raise QccError(
                    f"input {v.name!r} has a dynamic dimension {d!r} at axis {i}: give data "
                    "with --data"
                )
        dt = dtype_of(v)
        for f in feeds:
            if dt is not None and dt.kind == "f":
                lo, hi = _q_range_of_input(v) or (-1.0, 1.0)
                f[v.name] = rng.uniform(lo, hi, size=shape).astype(dt)
            elif dt is not None and dt in (np.dtype(np.uint8), np.dtype(np.int8)):
                info = np.iinfo(dt)
                f[v.name] = rng.integers(info.min, info.max + 1, size=shape).astype(dt)
            else:
                raise QccError(
                    f"input {v.name!r} is {dt}: random data is only made for float and 8-bit "
                    "inputs; give data with --data"
                )
    return feeds


# --------------------------------------------------------------------------- running


def _session(proto: onnx.ModelProto):
    import onnxruntime as ort

    from qcc.frontend.ort_eval import session_options

    so = session_options(optimize=True)  # the optimizations users run with, as they run it
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(
            proto.SerializeToString(), so, providers=["CPUExecutionProvider"]
        )
    except Exception as e:
        raise QccError(f"onnxruntime cannot load the model: {e}") from None


def _quantized_tensors(proto: onnx.ModelProto) -> list[str]:
    outs = {o.name for o in proto.graph.output}
    names = []
    for n in proto.graph.node:
        if n.op_type in QOPERATOR_OPS:
            names += [o for o in n.output[:1] if o and o not in outs]
    return names


def _with_outputs(proto: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    for n in names:
        p.graph.output.append(onnx.ValueInfoProto(name=n))
    return p


def _pre_rewrite(proto: onnx.ModelProto, profile: str, model_dir: Path | None) -> onnx.ModelProto:
    """Apply the runtime's own int8 -> uint8 pair rewrite before exposing tensors.

    Exposing a Q output as a graph output stops onnxruntime from moving that int8 Q -> DQ pair
    to uint8 (and so from fusing the units around it on x86). Doing the rewrite first, with
    the folding and DQ duplication that precede it, as onnxruntime itself would, keeps the
    fusion of the original model; exposed tensors of converted pairs are then the uint8 forms
    (value + 128) of the int8 ones.
    """
    if profile != "ort-x86":
        return proto
    from qcc.frontend.lift import lift_model
    from qcc.frontend.lower import lower_model
    from qcc.interp.profiles.ort_x86 import ensure_unique_dq, fold_constants, s8_to_u8

    model = lift_model(proto, path=model_dir)
    # the steps onnxruntime takes before its int8 -> uint8 rewrite decide which pairs move
    fold_constants(model.graph, model.opset)
    ensure_unique_dq(model.graph)
    if not s8_to_u8(model.graph):
        return proto
    return lower_model(model)


def _dtype_name(a: np.ndarray) -> str:
    return str(a.dtype)


def verify_proto(
    proto: onnx.ModelProto,
    feeds: Sequence[dict[str, np.ndarray]],
    *,
    profile: str = "ort-x86",
    tensors: str = "outputs",
    name: str = "model",
    data: str = "random",
    model_dir: Path | None = None,
) -> VerifyReport:
    """Compare onnxruntime and the interpreter on ``feeds``; see the module docstring."""
    from qcc.frontend.lift import lift_model
    from qcc.interp import Interpreter

    if tensors not in ("outputs", "all"):
        raise QccError(f"--tensors takes 'outputs' or 'all', not {tensors!r}")
    out_names = [o.name for o in proto.graph.output]
    extra: list[str] = []
    if tensors == "all":
        proto = _pre_rewrite(proto, profile, model_dir)
        extra = _quantized_tensors(proto)
    run_proto = _with_outputs(proto, extra) if extra else proto
    sess = _session(run_proto)
    interp = Interpreter(lift_model(run_proto, path=model_dir), profile=profile)
    spec_of = {st.node: st.spec for st in interp.steps}
    islands = [st.node.describe() for st in interp.steps if not st.spec.exact]
    results: dict[str, TensorResult] = {}
    graph_outputs = {x.name: x for x in interp.graph.outputs}
    fetch = [o.name for o in sess.get_outputs()]

    for i, feed in enumerate(feeds):
        want = dict(zip(fetch, sess.run(fetch, feed), strict=True))
        forced = {k: want[k] for k in extra}
        taint: dict[Value, bool] = {}

        def override(node: Node, v: Value, arr: np.ndarray, forced=forced, taint=taint, i=i):
            inexact = taint[v] = _tainted(node, spec_of, taint)
            if v.name not in forced:
                return None
            ref = forced[v.name]
            r = results.get(v.name)
            if r is None:
                r = results[v.name] = TensorResult(
                    v.name, "tensor", _dtype_name(ref), node.op_type, exact=not inexact
                )
            r.exact = r.exact and not inexact
            r.add(i, ref, np.asarray(arr))
            taint[v] = False
            return ref

        got = interp.run(feed, override=override if extra else _taint_only(spec_of, taint))
        for o in out_names:
            ref = want[o]
            v = graph_outputs[o]
            r = results.get(o)
            inexact = taint.get(v, False)
            if r is None or r.kind != "output":
                prod = v.producer.op_type if v.producer is not None else "input"
                r = results[o] = TensorResult(
                    o, "output", _dtype_name(ref), prod, exact=not inexact
                )
            r.exact = r.exact and not inexact
            r.add(i, ref, got[o])
    ordered = [results[n] for n in extra if n in results] + [results[o] for o in out_names]
    return VerifyReport(name, profile, len(feeds), data, ordered, islands)


def _tainted(node: Node, spec_of, taint: dict[Value, bool]) -> bool:
    """Whether ``node``'s output went through an inexact kernel since the last forced value."""
    return not spec_of[node].exact or any(taint.get(x, False) for x in node.inputs if x is not None)


def _taint_only(spec_of, taint):
    def override(node: Node, v: Value, arr: np.ndarray):
        taint[v] = _tainted(node, spec_of, taint)
        return None

    return override


def verify_file(
    path: str | os.PathLike[str],
    *,
    data: str | None = None,
    samples: int | None = None,
    seed: int = 0,
    profile: str = "ort-x86",
    tensors: str = "outputs",
) -> VerifyReport:
    """Verify the model at ``path`` on ``data`` (calibration-style files) or random inputs.

    A ``.tflite`` goes to :func:`qcc.interp.tflite.verify.verify_tflite_file` (LiteRT against
    the TFLite interpreter, ``tflite-*`` profiles).
    """
    if Path(path).suffix.lower() == ".tflite":
        from qcc.interp.tflite.verify import verify_tflite_file

        return verify_tflite_file(
            path, data=data, samples=samples, seed=seed, profile=profile, tensors=tensors
        )
    from qcc.frontend.reader import load_proto, read_model
    from qcc.interp.profiles import get_profile

    get_profile(profile)
    p = Path(path)
    model = read_model(p)
    feeds = load_feeds(model, data, samples=samples, seed=seed)
    proto = load_proto(p)
    return verify_proto(
        proto,
        feeds,
        profile=profile,
        tensors=tensors,
        name=str(p),
        data=data or f"random (seed {seed})",
        model_dir=p,
    )


def load_feeds(
    model: Model, data: str | None, *, samples: int | None, seed: int
) -> list[dict[str, np.ndarray]]:
    """The inputs to run: every sample of ``data`` (or ``samples`` of them), else random."""
    from qcc.quant.data import open_calibration

    if data is None:
        return random_feeds(model, samples or 4, seed)
    cal = open_calibration(data, model, samples=samples, seed=seed)
    return [cal.get(i) for i in range(cal.count)]
