"""The compile driver behind ``qcc compile``, usable from Python as :func:`compile_model`.

Everything that can be checked without the model (the recipe or ``--passes`` list, pass names
and options, the output path) is checked before the model is read; the recipe's selectors are
checked against the model right after it is read; the model is verified after loading and
after the pipeline; the output is written atomically and checked by ``onnx.checker`` before
it replaces anything.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qcc import __version__
from qcc.errors import QccError
from qcc.frontend import convert_opset, read_model, save_model
from qcc.frontend.writer import save_bytes
from qcc.pipeline import (
    DataUse,
    PassInvocation,
    PassManager,
    PassRecord,
    Session,
    get_pass,
    parse_pass_list,
)

DEFAULT_TFLITE_RECIPE = "int8-tflite"  # what `-o x.tflite` runs when no recipe is given
TFLITE_MIN_OPSET = 14


@dataclasses.dataclass
class CompileReport:
    input: Path
    output: Path
    recipe: str | None
    pipeline: list[PassInvocation]
    passes: list[PassRecord]
    nodes_before: int
    nodes_after: int
    bytes_written: int
    files: list[Path]
    verify: Any = None  # a qcc.verify.VerifyReport when compiled with verify=True

    def to_json(self) -> dict[str, Any]:
        return {
            "input": str(self.input),
            "output": str(self.output),
            "recipe": self.recipe,
            "files": [str(f) for f in self.files],
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "bytes_written": self.bytes_written,
            "verify": self.verify.to_json() if self.verify is not None else None,
            "passes": [
                {
                    "name": r.name,
                    "location": str(r.location) if r.location else None,
                    "changed": r.changed,
                    "stats": r.stats,
                    "notes": r.notes,
                    "seconds": round(r.seconds, 6),
                    "nodes_before": r.nodes_before,
                    "nodes_after": r.nodes_after,
                    "selected": r.selected,
                    "overridden": [{"where": w, "nodes": n} for w, n in r.overridden],
                }
                for r in self.passes
            ],
        }


def compile_model(
    model_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    passes: str | None = None,
    recipe: str | None = None,
    defines: Mapping[str, str] | None = None,
    calib: str | None = None,
    verify_each: bool = False,
    external_data: bool | None = None,
    progress=None,
    verify: bool = False,
) -> CompileReport:
    """Read ``model_path``, run the recipe (or pass list), write ``output``; return the report.

    ``calib`` overrides the recipe's calibration data; ``progress(total, label)`` returns a
    callback ``advance(n)`` for long passes (the CLI draws a progress bar). ``verify`` runs
    ``qcc verify`` (every quantized tensor, up to 8 calibration samples or 4 random inputs) on
    the result before writing it, against onnxruntime or, for a ``.tflite``, LiteRT; an
    integer mismatch raises :class:`VerifyFailed` (exit 1) and nothing is written. An output
    ending in ``.tflite`` runs the TFLite backend (with the ``int8-tflite`` recipe when none is
    given).
    """
    from qcc.recipe.resolve import check_selectors, load_recipe

    model_path, output = Path(model_path), Path(output)
    if recipe is not None and passes is not None:
        raise QccError("give either a recipe (-r) or a pass list (--passes), not both")
    suffix = output.suffix.lower()
    if suffix not in (".onnx", ".tflite"):
        raise QccError(
            f"cannot write {output.suffix or 'files without a suffix'}: qcc writes .onnx and "
            ".tflite models",
            path=output,
        )
    backend = "tflite" if suffix == ".tflite" else "onnx"
    if backend == "tflite" and recipe is None and passes is None:
        recipe = DEFAULT_TFLITE_RECIPE
    if defines and recipe is None:
        raise QccError("-D sets recipe variables; it needs a recipe (-r)")
    resolved = load_recipe(recipe, defines=defines) if recipe is not None else None
    if resolved is not None:
        pipeline = resolved.pipeline
        target = resolved.target
        if backend == "tflite" and target.declared and target.backend != "tflite":
            raise QccError(
                f"the recipe targets {target.backend}, and {output.name} is a .tflite: use a "
                f"recipe with `target tflite` (the built-in {DEFAULT_TFLITE_RECIPE}) or write "
                ".onnx",
                path=recipe,
            )
        if backend == "onnx" and target.backend == "tflite":
            backend = "qdq-for-tflite"  # the QDQ model the TFLite backend would lower
    else:
        pipeline = parse_pass_list(passes) if passes else []
        target = None
    if str(output.parent) and not output.parent.is_dir():
        raise QccError(f"output directory {str(output.parent)!r} does not exist", path=output)

    min_opset = target.min_opset if target is not None else None
    if backend != "onnx":  # per-channel DequantizeLinear needs 13, HardSwish 14
        min_opset = max(min_opset or 0, TFLITE_MIN_OPSET)

    def wanted_opset(opset: int) -> int | None:
        if target is not None and target.opset is not None:
            return target.opset
        return min_opset if min_opset is not None and opset < min_opset else None

    model = read_model(model_path, opset=wanted_opset)
    model.verify()
    if resolved is not None:
        check_selectors(resolved, model)
    want = wanted_opset(model.opset)
    if want is not None and want != model.opset:  # not converted on read (see read_model)
        model = convert_opset(model, want)
    session = Session(progress=progress, backend="tflite" if backend != "onnx" else "onnx")
    config = resolved.calibration if resolved is not None else None
    uses = {get_pass(inv.name).data_use(inv.options) for inv in pipeline}
    given = calib is not None or (
        config is not None and (config.data is not None or config.callable is not None)
    )
    required = any(inv.name == "calibrate" for inv in pipeline) or DataUse.REQUIRED in uses
    if required or (DataUse.OPTIONAL in uses and given):
        session.calibration, session.calibration_batch = _calibration(config, calib, model)
    elif calib is not None:
        raise QccError("--calib gives calibration data, but no pass of the pipeline reads it")
    before = len(model.graph)
    records = PassManager(pipeline, verify_each=verify_each, session=session).run(model)
    model.verify()
    model.metadata_props["qcc.version"] = __version__
    if resolved is not None:
        model.metadata_props["qcc.recipe"] = resolved.name or Path(resolved.path).stem
    model.metadata_props["qcc.pipeline"] = ",".join(inv.spelled() for inv in pipeline)
    if backend == "tflite":
        data = _to_tflite(model, target, model_path, session)
        verify_report = _verify_tflite(data, session) if verify else None
        files = [save_bytes(output, data)]
    else:
        verify_report = _verify(model, session) if verify else None
        files = save_model(model, output, external_data=external_data)
    return CompileReport(
        input=model_path,
        output=output,
        recipe=str(recipe) if recipe is not None else None,
        pipeline=pipeline,
        passes=records,
        nodes_before=before,
        nodes_after=len(model.graph),
        bytes_written=sum(f.stat().st_size for f in files),
        files=files,
        verify=verify_report,
    )


def _to_tflite(model, target, model_path: Path, session) -> bytes:
    """Lower the quantized model to a .tflite flatbuffer (nothing is written here).

    TFLite needs static shapes: symbolic input dimensions take the calibration data's (the
    shapes the model was calibrated at), or 1 for a batch dimension when there is no data.
    """
    from qcc.backend.tflite import convert
    from qcc.frontend.lower import lower_model

    proto = lower_model(model)
    io = target.io if target is not None else "float32"
    layout = target.layout if target is not None else "nhwc"
    keep = [v.name for v in (*model.graph.inputs, *model.graph.outputs)] if layout == "nchw" else []
    shapes = None
    if session.calibration is not None and session.calibration.count:
        sample = session.calibration.get(0)
        shapes = {name: tuple(np.shape(a)) for name, a in sample.items()}
    return convert(
        proto,
        input_shapes=shapes,
        io="int8" if io == "int8" else "float32",
        keep_nchw=keep,
        metadata=dict(model.metadata_props),
        source=model_path.name,
    )


def _verify_tflite(data: bytes, session):
    """Verify the .tflite against LiteRT (default resolver, every integer tensor) before it is
    written: on up to 8 calibration samples moved to the file's input layout and type, or 4
    seeded random inputs."""
    from qcc.interp.tflite.model import parse
    from qcc.interp.tflite.verify import random_feeds, verify_tflite

    tfl = parse(data, "compiled model")
    feeds, what = None, "random (seed 0)"
    if session.calibration is not None:
        n = min(8, session.calibration.count)
        feeds = [_tflite_feed(tfl, session.calibration.get(i)) for i in range(n)]
        if any(f is None for f in feeds):
            feeds = None
        else:
            what = f"{n} calibration samples"
    if feeds is None:
        feeds = random_feeds(tfl, 4)
    report = verify_tflite(tfl, feeds, tensors="all", name="compiled model", data=what)
    return _checked(report, "LiteRT")


def _tflite_feed(tfl, sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """An ONNX-layout sample as the .tflite's inputs take it (NCHW -> NHWC, quantized for int8
    inputs), or None when an input cannot be matched."""
    feed = {}
    for i in tfl.inputs:
        t = tfl.tensors[i]
        a = sample.get(t.name)
        if a is None:
            return None
        if (
            a.shape != tuple(t.shape)
            and a.ndim == 4
            and a.transpose(0, 2, 3, 1).shape == tuple(t.shape)
        ):
            a = a.transpose(0, 2, 3, 1)
        if a.shape != tuple(t.shape):
            return None
        if t.dtype.kind in "iu" and t.quant is not None:
            info = np.iinfo(t.dtype)
            a = np.clip(np.rint(a / t.q.s) + t.q.zp, info.min, info.max)
        feed[t.name] = np.ascontiguousarray(a).astype(t.dtype)
    return feed


def _verify(model, session):
    """Verify the compiled model against onnxruntime before it is written."""
    from qcc.frontend.lower import lower_model
    from qcc.verify import random_feeds, verify_proto

    if session.calibration is not None:
        cal = session.calibration
        feeds = [cal.get(i) for i in range(min(8, cal.count))]
        data = f"{min(8, cal.count)} calibration samples"
    else:
        feeds, data = random_feeds(model, 4), "random (seed 0)"
    report = verify_proto(
        lower_model(model), feeds, tensors="all", name="compiled model", data=data
    )
    return _checked(report, "onnxruntime")


def _checked(report, runtime: str):
    """``report``, or :class:`VerifyFailed` (exit 1, nothing written) on an integer mismatch."""
    from qcc.verify import VerifyFailed

    if not report.ok:
        bad = report.integer_mismatches
        raise VerifyFailed(
            f"--verify: {len(bad)} integer tensor(s) differ between {runtime} and the "
            f"interpreter (first: {bad[0].name!r}, {bad[0].mismatches} element(s), max "
            f"{bad[0].max_diff:g} LSB); nothing was written",
            hint="run qcc verify on a model compiled without --verify for the full table",
        )
    return report


def _calibration(config, override: str | None, model):
    """Open and check the calibration data before any pass runs (errors exit 2 early)."""
    from qcc.quant.data import open_calibration

    if override is None and (config is None or (config.data is None and config.callable is None)):
        raise QccError(
            "a pass reads calibration data but no calibration data is given: pass --calib PATH "
            "or add calibration { data ... } to the recipe"
        )
    source = override if override is not None else (config.callable or config.data)
    kwargs = {}
    if config is not None:
        kwargs = dict(samples=config.samples, seed=config.seed, preprocess=config.preprocess)
    data = open_calibration(source, model, **kwargs)
    return data, (config.batch if config is not None else 1)
