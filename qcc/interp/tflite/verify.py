"""``qcc verify`` for .tflite models: LiteRT and the TFLite interpreter, element by element.

Both run the same inputs: LiteRT's ``Interpreter(model_content=...,
experimental_op_resolver_type=...)`` under the resolver of the profile (``AUTO`` with the
XNNPACK delegate for ``tflite-xnnpack``, ``BUILTIN_REF`` for ``tflite-ref``) and
:class:`~qcc.interp.tflite.run.TFLiteInterpreter`.

- **outputs** (always): both run freely; every subgraph output is compared.
- **every integer tensor** (``tensors="all"``): tensors inside the XNNPACK delegate cannot be
  read back from LiteRT (``experimental_preserve_all_tensors`` does not reach into a delegate),
  so the flatbuffer is rewritten with every integer operator output added to the subgraph
  outputs. That changes no arithmetic (the delegate's partition depends on the operators, not on
  which tensors are outputs; checked below). The interpreter compares each such tensor as soon
  as it computes it and continues from LiteRT's value (teacher forcing), so a mismatch is
  reported once, where it arises.

A tensor computed by a kernel marked inexact (a float32 convolution whose summation order is
XNNPACK's) since the previous compared tensor is a *float island*: its mismatches are reported
apart and do not fail the check. The delegation the interpreter assumed is compared with the
partition LiteRT reports; a difference is listed in the report.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qcc.errors import QccError
from qcc.interp.tflite.model import Tensor, TFLiteModel, read
from qcc.interp.tflite.registry import Call
from qcc.interp.tflite.run import TFLiteInterpreter, check_profile
from qcc.verify import TensorResult, VerifyReport

RESOLVERS = {"tflite-xnnpack": "AUTO", "tflite-ref": "BUILTIN_REF"}
_INT = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))


@dataclasses.dataclass
class TFLiteVerifyReport(VerifyReport):
    """A :class:`~qcc.verify.VerifyReport` plus the delegation check."""

    runtime: str = "LiteRT"
    delegation_differs: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        d["runtime"] = self.runtime
        d["delegation_differs"] = self.delegation_differs
        return d


# --------------------------------------------------------------------------- flatbuffer rewrite


def with_outputs(content: bytes, indices: Sequence[int]) -> bytes:
    """``content`` with tensors ``indices`` appended to the main subgraph's outputs."""
    if not indices:
        return content
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromObj(s.Model.GetRootAs(content, 0))
    g = m.subgraphs[0]
    g.outputs = [int(i) for i in g.outputs] + [int(i) for i in indices]
    b = flatbuffers.Builder(len(content) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def exposable(model: TFLiteModel) -> list[int]:
    """Integer tensors written by an operator that are not already outputs, in run order."""
    outs = set(model.outputs)
    res: list[int] = []
    for op in model.operators:
        for i in op.outputs:
            t = model.tensors[i]
            if i >= 0 and i not in outs and t.dtype in _INT and i not in res:
                res.append(i)
    return res


# --------------------------------------------------------------------------- LiteRT


def litert_interpreter(content: bytes, profile: str, path: str | None = None):
    """A LiteRT interpreter under the resolver of ``profile``, tensors allocated; a
    :class:`QccError` naming ``path`` when LiteRT refuses the model."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        it = Interpreter(
            model_content=content,
            experimental_op_resolver_type=getattr(OpResolverType, RESOLVERS[profile]),
            num_threads=1,
        )
        it.allocate_tensors()
    except Exception as e:
        raise QccError(f"LiteRT cannot load the model: {e}", path=path) from None
    return it


def litert_delegated(it) -> set[int]:
    """Indices of the operators LiteRT handed to a delegate, read from the partition it reports:
    each ``DELEGATE`` node's outputs are produced by the operators reachable backwards from
    them without crossing the node's inputs."""
    details = it._get_ops_details()
    ops = [d for d in details if d["op_name"] != "DELEGATE"]
    producer = {int(t): d["index"] for d in ops for t in d["outputs"]}
    inputs_of = {d["index"]: [int(t) for t in d["inputs"]] for d in ops}
    taken: set[int] = set()
    for d in details:
        if d["op_name"] != "DELEGATE":
            continue
        stop = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            if t in stop or t not in producer or producer[t] in taken:
                continue
            taken.add(producer[t])
            todo += inputs_of[producer[t]]
    return taken


# --------------------------------------------------------------------------- inputs


def random_feeds(model: TFLiteModel, count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded random inputs: 8-bit inputs over their type's range; a float input that feeds a
    QUANTIZE over that quantizer's range, other float inputs over [-1, 1]."""
    rng = np.random.default_rng(seed)
    feeds: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for i in model.inputs:
        t = model.tensors[i]
        shape = [d if d > 0 else 1 for d in t.shape]
        for f in feeds:
            if t.dtype in (np.dtype(np.int8), np.dtype(np.uint8)):
                info = np.iinfo(t.dtype)
                f[t.name] = rng.integers(info.min, info.max + 1, size=shape).astype(t.dtype)
            elif t.dtype.kind == "f":
                lo, hi = _q_range(model, i) or (-1.0, 1.0)
                f[t.name] = rng.uniform(lo, hi, size=shape).astype(t.dtype)
            else:
                raise QccError(
                    f"input tensor {t.name!r} is {t.dtype}: random data is only made for float "
                    "and 8-bit inputs; give data with --data",
                    path=model.path,
                )
    return feeds


def _q_range(model: TFLiteModel, i: int) -> tuple[float, float] | None:
    for op in model.operators:
        if op.op == "QUANTIZE" and op.inputs and op.inputs[0] == i:
            y = model.tensors[op.outputs[0]]
            if y.quant is not None and y.quant.per_tensor and y.dtype.kind in "iu":
                info = np.iinfo(y.dtype)
                return y.q.s * (info.min - y.q.zp), y.q.s * (info.max - y.q.zp)
    return None


def load_feeds(
    model: TFLiteModel, data: str | None, *, samples: int | None, seed: int
) -> list[dict[str, np.ndarray]]:
    """Samples from ``data`` in the .tflite's own layout and dtype, else random inputs.

    ``.npy`` (one input): ``[N, *input_shape]`` (or ``[N, *input_shape[1:]]`` when the input's
    batch is 1); ``.npz``: one such array per input tensor name.
    """
    if data is None:
        return random_feeds(model, samples or 4, seed)
    p = Path(data)
    ins = [model.tensors[i] for i in model.inputs]
    try:
        if p.suffix.lower() == ".npy":
            if len(ins) != 1:
                raise QccError(
                    f"the model has {len(ins)} inputs: give an .npz keyed by input tensor name "
                    f"({', '.join(t.name for t in ins)})",
                    path=p,
                )
            arrays = {ins[0].name: np.load(p, allow_pickle=False)}
        elif p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            raise QccError("data for a .tflite model is an .npy or .npz file", path=p)
    except OSError as e:
        raise QccError(f"cannot read the data: {e}", path=p) from None
    except ValueError as e:
        raise QccError(f"not a valid .npy/.npz file: {e}", path=p) from None
    missing = [t.name for t in ins if t.name not in arrays]
    if missing:
        raise QccError(
            f"no data for input tensor(s) {', '.join(missing)}; the file has "
            f"{', '.join(sorted(arrays)) or 'nothing'}",
            path=p,
        )
    per: dict[str, np.ndarray] = {}
    count = None
    for t in ins:
        a = arrays[t.name]
        shape = tuple(t.shape)
        if a.dtype != t.dtype:
            raise QccError(f"input tensor {t.name!r} is {t.dtype}, data is {a.dtype}", path=p)
        if a.ndim == 0:
            raise QccError(
                f"input tensor {t.name!r} has shape {list(shape)}: data must be "
                f"[N, {', '.join(map(str, shape))}], got a scalar",
                path=p,
            )
        if a.shape[1:] == shape:
            pass
        elif shape and shape[0] == 1 and a.shape[1:] == shape[1:]:
            a = a[:, None]
        else:
            raise QccError(
                f"input tensor {t.name!r} has shape {list(shape)}: data must be "
                f"[N, {', '.join(map(str, shape))}], got {list(a.shape)}",
                path=p,
            )
        if count is not None and a.shape[0] != count:
            raise QccError("every input needs the same number of samples", path=p)
        count = a.shape[0]
        per[t.name] = a
    n = count or 0
    if n == 0:
        raise QccError("the data has no samples", path=p)
    idx = np.arange(n)
    if samples is not None and samples < n:
        idx = np.sort(np.random.default_rng(seed).choice(n, samples, replace=False))
    return [{k: np.ascontiguousarray(v[i]) for k, v in per.items()} for i in idx]


# --------------------------------------------------------------------------- verify


def verify_tflite(
    model: TFLiteModel,
    feeds: Sequence[dict[str, np.ndarray]],
    *,
    profile: str = "tflite-xnnpack",
    tensors: str = "outputs",
    name: str = "model",
    data: str = "random",
) -> TFLiteVerifyReport:
    """Compare LiteRT and the interpreter on ``feeds``; see the module docstring."""
    check_profile(profile)
    if tensors not in ("outputs", "all"):
        raise QccError(f"--tensors takes 'outputs' or 'all', not {tensors!r}")
    extra = exposable(model) if tensors == "all" else []
    interp = TFLiteInterpreter(model, profile)
    lite = litert_interpreter(with_outputs(model.content, extra), profile, model.path)
    differs: list[str] = []
    if profile == "tflite-xnnpack":
        theirs = litert_delegated(lite)
        for st in interp.steps:
            ours = st.call.arith == "xnnpack"
            if ours != (st.call.op.index in theirs):
                where = "XNNPACK" if st.call.op.index in theirs else "the builtin kernels"
                differs.append(f"{st.call.describe()}: LiteRT runs it in {where}")
    islands = [st.call.describe() for st in interp.steps if not st.exact]
    exact_of = {st.call.op.index: st.exact for st in interp.steps}
    in_details = {d["name"]: d["index"] for d in lite.get_input_details()}
    out_details = lite.get_output_details()
    t_by_name = {model.tensors[i].name: i for i in [*model.outputs, *extra]}
    results: dict[str, TensorResult] = {}
    forced_names = {model.tensors[i].name for i in extra}
    out_names = [model.tensors[i].name for i in model.outputs]

    for k, feed in enumerate(feeds):
        for nm, arr in feed.items():
            if nm not in in_details:
                raise QccError(f"LiteRT has no input tensor {nm!r}", path=model.path)
            try:
                lite.set_tensor(in_details[nm], arr)
            except ValueError as e:  # shape or dtype LiteRT does not take
                raise QccError(f"LiteRT refuses input {nm!r}: {e}", path=model.path) from None
        try:
            lite.invoke()
        except RuntimeError as e:
            raise QccError(f"LiteRT failed to run the model: {e}", path=model.path) from None
        want = {d["name"]: lite.get_tensor(d["index"]).copy() for d in out_details}
        taint: dict[int, bool] = {}

        def override(call: Call, t: Tensor, arr: np.ndarray, want=want, taint=taint, k=k):
            inexact = not exact_of[call.op.index] or any(
                taint.get(i, False) for i in call.op.inputs if i >= 0
            )
            taint[t.index] = inexact
            if t.name not in forced_names or t.name not in want:
                return None
            ref = want[t.name]
            r = results.get(t.name)
            if r is None:
                r = results[t.name] = TensorResult(
                    t.name, "tensor", str(ref.dtype), call.op.op, exact=not inexact
                )
            r.exact = r.exact and not inexact
            r.add(k, ref, np.asarray(arr))
            taint[t.index] = False
            return ref

        got = interp.run(feed, override=override)
        for o in out_names:
            ref = want[o]
            i = t_by_name[o]
            prod = next((op.op for op in model.operators if i in op.outputs), "input")
            r = results.get(o)
            inexact = taint.get(i, False)
            if r is None or r.kind != "output":
                r = results[o] = TensorResult(o, "output", str(ref.dtype), prod, exact=not inexact)
            r.exact = r.exact and not inexact
            r.add(k, ref, got[o])
    ordered = [results[model.tensors[i].name] for i in extra if model.tensors[i].name in results]
    ordered += [results[o] for o in out_names]
    return TFLiteVerifyReport(
        name, profile, len(feeds), data, ordered, islands, delegation_differs=differs
    )


def verify_tflite_file(
    path: str | os.PathLike[str],
    *,
    data: str | None = None,
    samples: int | None = None,
    seed: int = 0,
    profile: str = "tflite-xnnpack",
    tensors: str = "outputs",
) -> TFLiteVerifyReport:
    """Verify the .tflite at ``path`` on ``data`` (.npy/.npz) or random inputs."""
    check_profile(profile)
    model = read(path)
    feeds = load_feeds(model, data, samples=samples, seed=seed)
    return verify_tflite(
        model,
        feeds,
        profile=profile,
        tensors=tensors,
        name=str(path),
        data=data or f"random (seed {seed})",
    )
