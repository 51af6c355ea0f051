"""Resolve a parsed recipe: includes, variables, schemes, pipelines, passes, selectors, settings.

:func:`load_recipe` turns a recipe file (or a built-in recipe name) into a :class:`Recipe`:
an ordered list of :class:`~qcc.pipeline.PassInvocation` with typed options, plus the
calibration and target settings and the quantization schemes. Resolution checks every pass
name and option against the registry and, given a model, every selector against it. It
collects every problem it can as a diagnostic and raises them together in one
:class:`~qcc.recipe.diagnostics.RecipeError`.

Nothing in a recipe is executed: the only code a recipe can name is a calibration data
callable (``data "pkg.module:function"``), which is checked for form here and imported only by
calibration.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import importlib.resources
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qcc.errors import PassError
from qcc.ir import Model
from qcc.pipeline import PassInfo, PassInvocation, SourceLocation, get_pass, load_builtin_passes
from qcc.quant.scheme import OBSERVERS, Granularity, ObserverSpec, QDType, QuantScheme
from qcc.recipe import ast as A
from qcc.recipe import fmt
from qcc.recipe.diagnostics import Diagnostic, RecipeError, Sources
from qcc.recipe.parser import BadSelector, parse_recipe, parse_value
from qcc.select import Selector

BUILTIN_PACKAGE = "qcc.recipes"

# The settings each block accepts (used for checking and for docs/recipes.md).
CALIBRATION_SETTINGS = {
    "data": "a path or glob of .npy/.npz files or image folders, relative to the recipe file, "
    'or "pkg.module:function" naming a callable that returns the samples',
    "preprocess": "a block of image preprocessing settings (below), for image data",
    "samples": "how many samples to use (default: all), drawn with the seed",
    "batch": "samples per onnxruntime run during calibration (default 1)",
    "seed": "seed of the sample draw (default 0)",
}
PREPROCESS_SETTINGS = {
    "resize": "WxH, or one size for a square (224x224)",
    "layout": "NCHW (default) or NHWC",
    "scale": "multiply pixel values by this (1/255)",
    "mean": "per-channel mean subtracted after scaling ([0.485, 0.456, 0.406])",
    "std": "per-channel standard deviation divided by after the mean",
    "color": "rgb (default), bgr or gray",
}
TARGET_SETTINGS = {
    "onnx": {
        "format": "qdq (default): QuantizeLinear/DequantizeLinear pairs onnxruntime fuses; "
        "qoperator: QLinearConv and friends",
        "opset": "convert the model to this ai.onnx opset before the pipeline runs",
        "min_opset": "convert models below this ai.onnx opset up to it (per-channel weights "
        "need 13); models at or above it are left alone",
    },
    "tflite": {
        "io": "float32 (default) or int8 graph inputs and outputs",
        "layout": "nhwc (default): rank-4 graph inputs and outputs become NHWC, as TFLite "
        "models are; nchw: they keep the ONNX model's NCHW (one TRANSPOSE at each)",
    },
}


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Image preprocessing for image-folder calibration data."""

    resize: tuple[int, int] | None = None  # (width, height)
    layout: str = "NCHW"
    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color: str = "rgb"


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    data: str | None = None  # a path or glob (absolute, resolved against the recipe's folder)
    callable: str | None = None  # "pkg.module:function"
    preprocess: Preprocess = Preprocess()
    samples: int | None = None  # None: every sample
    batch: int = 1
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    backend: str = "onnx"
    format: str = "qdq"  # onnx: qdq | qoperator
    opset: int | None = None  # onnx: convert the model to this opset first
    min_opset: int | None = None  # onnx: convert models below this opset up to it
    io: str = "float32"  # tflite: float32 | int8 graph inputs and outputs
    layout: str = "nhwc"  # tflite: nhwc | nchw rank-4 graph inputs and outputs
    declared: bool = False  # the recipe has a target block (else these are the defaults)


@dataclasses.dataclass
class Recipe:
    """A resolved recipe."""

    path: str
    name: str | None
    variables: dict[str, str]  # name -> value as recipe text
    schemes: dict[str, QuantScheme]
    pipeline: list[PassInvocation]
    calibration: CalibrationConfig | None
    target: TargetConfig
    sources: Sources
    named: list[str] = dataclasses.field(default_factory=list)  # named pipelines

    def describe(self, relative_to: str | None = None) -> str:
        """A stable, human-readable dump (``qcc check`` prints it; golden tests compare it)."""
        base = Path(relative_to or Path(self.path).parent)

        def rel(loc: SourceLocation | None) -> str:
            if loc is None:
                return ""
            f = display_path(loc.file)
            if not f.startswith("qcc:"):
                try:
                    f = os.path.relpath(loc.file, base)
                except ValueError:
                    f = loc.file
            return f"{f}:{loc.line}:{loc.column}"

        lines = [f"recipe {self.name or '(unnamed)'}"]
        if self.variables:
            lines.append("variables:")
            lines += [f"  {k} = {v}" for k, v in self.variables.items()]
        if self.schemes:
            lines.append("schemes:")
            lines += [f"  {k} = {v}" for k, v in self.schemes.items()]
        if self.named:
            lines.append("named pipelines: " + ", ".join(self.named))
        lines.append("pipeline:")
        if not self.pipeline:
            lines.append("  (empty)")
        width = max((len(inv.spelled()) for inv in self.pipeline), default=0)
        for i, inv in enumerate(self.pipeline, 1):
            lines.append(f"  {i}. {inv.spelled().ljust(width)}  {rel(inv.location)}".rstrip())
        if self.calibration is not None:
            c = self.calibration
            src = f"data={c.callable}()" if c.callable else f"data={_show(_relpath(c.data, base))}"
            samples = c.samples if c.samples else "all"
            lines.append(f"calibration: {src} samples={samples} batch={c.batch} seed={c.seed}")
            if c.preprocess != Preprocess():
                p = c.preprocess
                parts = [f"{f.name}={_show(getattr(p, f.name))}" for f in dataclasses.fields(p)]
                lines.append("  preprocess: " + " ".join(parts))
        t = self.target
        extra = f"format={t.format}" if t.backend == "onnx" else f"io={t.io} layout={t.layout}"
        if t.opset is not None:
            extra += f" opset={t.opset}"
        if t.min_opset is not None:
            extra += f" min_opset={t.min_opset}"
        lines.append(f"target: {t.backend} {extra}")
        return "\n".join(lines) + "\n"


def _relpath(p: str | None, base: Path) -> str | None:
    if p is None:
        return None
    try:
        return os.path.relpath(p, base)
    except ValueError:
        return p


def _show(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return str(v)


# --------------------------------------------------------------------------- loading


def builtin_recipes() -> dict[str, Path]:
    """Built-in recipe names (``int8-ort``) and their files."""
    root = importlib.resources.files(BUILTIN_PACKAGE)
    return {
        p.name[:-2]: Path(str(p)) for p in root.iterdir() if p.name.endswith(".q") and p.is_file()
    }


def display_path(file: str) -> str:
    """``qcc:common/cleanup.q`` for built-in recipe files, else the path relative to the
    current directory when it is below it."""
    root = Path(str(importlib.resources.files(BUILTIN_PACKAGE))).resolve()
    p = Path(file).resolve()
    if p.is_relative_to(root):
        return "qcc:" + p.relative_to(root).as_posix()
    try:
        rel = os.path.relpath(file)
    except ValueError:
        return file
    return file if rel.startswith("..") else rel


def find_recipe(ref: str) -> Path:
    """A recipe file path, or the file of the built-in recipe named ``ref``."""
    p = Path(ref)
    if p.exists() or p.suffix == ".q" or os.sep in ref or "/" in ref:
        return p
    builtins = builtin_recipes()
    if ref in builtins:
        return builtins[ref]
    return p


@dataclasses.dataclass
class _Unit:
    path: Path
    file: A.RecipeFile


class _Resolver:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.diags: list[Diagnostic] = []
        self.units: list[_Unit] = []
        self.loaded: set[Path] = set()

    def error(self, code: str, message: str, span: A.Span | None, help: str | None = None) -> None:
        self.diags.append(Diagnostic(code, message, span, help))

    # -- files and includes
    def load(self, path: Path, stack: tuple[Path, ...], at: A.Span | None) -> None:
        real = path.resolve()
        if real in stack:
            chain = " -> ".join(display_path(str(p)) for p in (*stack[stack.index(real) :], real))
            self.error("E201", f"include cycle: {chain}", at)
            return
        if real in self.loaded:
            return  # included twice along different paths: once is enough
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            self.error("E203", f"cannot read recipe {str(path)!r}: {e.strerror}", at)
            return
        except UnicodeDecodeError:
            self.error("E203", f"recipe {str(path)!r} is not UTF-8 text", at)
            return
        self.loaded.add(real)
        self.sources.add(str(path), text)
        try:
            rf = parse_recipe(text, str(path), self.sources)
        except RecipeError as e:
            self.diags.extend(e.diagnostics)
            return
        for st in rf.statements:
            if isinstance(st, A.Include):
                target = self._include_path(path, st.path)
                if target is None:
                    close = _did_you_mean(Path(st.path).stem, list(builtin_recipes()))
                    self.error(
                        "E200",
                        f"included file {st.path!r} not found (looked beside {str(path)!r} and in "
                        "the built-in recipes)",
                        st.span,
                        close,
                    )
                else:
                    self.load(target, (*stack, real), st.span)
        self.units.append(_Unit(path, rf))

    @staticmethod
    def _include_path(including: Path, ref: str) -> Path | None:
        """``ref`` beside the including file, else among the built-in recipes (by relative
        path, ``.q`` optional: ``include "common/cleanup.q"``)."""
        p = including.parent / ref
        if p.is_file():
            return p
        if os.path.isabs(ref) or ".." in Path(ref).parts:
            return None
        root = Path(str(importlib.resources.files(BUILTIN_PACKAGE)))
        for candidate in (root / ref, root / f"{ref}.q"):
            if candidate.is_file():
                return candidate
        return None


def _did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def load_recipe(
    ref: str | os.PathLike[str],
    *,
    defines: Mapping[str, str] | None = None,
    model: Model | None = None,
    require_pipeline: bool | None = True,
    check_files: bool = True,
) -> Recipe:
    """Load, parse and resolve a recipe (a path or a built-in name). Raises RecipeError.

    ``defines`` are ``-D name=value`` overrides; with ``model`` every selector is checked
    against it; ``require_pipeline`` makes a missing main pipeline an error (None: only when
    the recipe defines no named pipeline either, so a file meant to be included checks clean);
    ``check_files`` checks that calibration data exists.
    """
    load_builtin_passes()
    sources = Sources()
    r = _Resolver(sources)
    path = find_recipe(str(ref))
    if not path.exists():
        close = _did_you_mean(str(ref), list(builtin_recipes()))
        known = ", ".join(sorted(builtin_recipes())) or "none"
        r.error(
            "E203",
            f"no recipe file {str(ref)!r} and no built-in recipe of that name (built-in: {known})",
            None,
            close,
        )
        raise RecipeError(r.diags, sources)
    r.load(path, (), None)
    if r.diags and not r.units:
        raise RecipeError(r.diags, sources)
    recipe = _Resolution(r, path, defines or {}, require_pipeline, check_files).run()
    if r.diags:
        raise RecipeError(_sorted(r.diags), sources)
    if model is not None:
        check_selectors(recipe, model)
    return recipe


def check_selectors(recipe: Recipe, model: Model) -> None:
    """Every selector atom of the pipeline must match a node of ``model`` (E400, with the
    closest names). Raises RecipeError listing every mismatch."""
    diags: list[Diagnostic] = []
    seen: set[tuple] = set()
    for inv in recipe.pipeline:
        sels = [s for s in (inv.on, inv.exclude) if s is not None] + [s for s, _ in inv.overrides]
        for sel in sels:
            for m in sel.check(model.graph):
                span = getattr(m.atom, "where", None) or getattr(sel, "where", None)
                key = (m.message, span)
                if key in seen:  # a step reused through `use` reports once
                    continue
                seen.add(key)
                help = (
                    "closest: " + ", ".join(repr(s) for s in m.suggestions)
                    if m.suggestions
                    else None
                )
                diags.append(Diagnostic("E400", m.message, span, help))
    if diags:
        raise RecipeError(_sorted(diags), recipe.sources)


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    def key(d: Diagnostic):
        s = d.span
        return (0, "", 0, 0) if s is None else (1, s.file, s.line, s.column)

    return sorted(diags, key=key)


# --------------------------------------------------------------------------- resolution


_BOOLS = {"true": True, "false": False}


class _Resolution:
    def __init__(
        self,
        r: _Resolver,
        path: Path,
        defines: Mapping[str, str],
        require_pipeline: bool | None,
        check_files: bool,
    ) -> None:
        self.r = r
        self.path = path
        self.defines = defines
        self.require_pipeline = require_pipeline
        self.check_files = check_files
        self.lets: dict[str, A.Let] = {}
        self.values: dict[str, A.Value] = {}
        self.scheme_decls: dict[str, A.Scheme] = {}
        self.schemes: dict[str, QuantScheme] = {}
        self.pipelines: dict[str, A.Pipeline] = {}
        self.main: A.Pipeline | None = None
        self.calibration: A.Calibration | None = None
        self.target: A.Target | None = None
        self.name: str | None = None

    def err(self, code: str, message: str, span: A.Span | None, help: str | None = None) -> None:
        self.r.error(code, message, span, help)

    def run(self) -> Recipe:
        self.collect()
        self.variables()
        for name, decl in self.scheme_decls.items():
            s = self.scheme(decl)
            if s is not None:
                self.schemes[name] = s
        pipeline = self.pipeline()
        calibration = self.calibration_config() if self.calibration else None
        target = self.target_config()
        return Recipe(
            path=str(self.path),
            name=self.name,
            variables={k: fmt.value(v) for k, v in self.values.items()},
            schemes=self.schemes,
            pipeline=pipeline,
            calibration=calibration,
            target=target,
            sources=self.r.sources,
            named=list(self.pipelines),
        )

    # -- definitions
    def collect(self) -> None:
        top = self.path.resolve()
        first: dict[tuple[str, str], A.Span] = {}

        def define(kind: str, name: str, span: A.Span) -> bool:
            key = (kind, name)
            if key in first:
                what = f"{kind} {name!r}" if name else kind
                self.err("E202", f"{what} is defined twice (first at {first[key]})", span)
                return False
            first[key] = span
            return True

        for unit in self.r.units:
            for st in unit.file.statements:
                if isinstance(st, A.RecipeDecl):
                    if unit.path.resolve() == top and define("recipe name", "", st.span):
                        self.name = st.name
                elif isinstance(st, A.Let):
                    if define("variable", st.name, st.span):
                        self.lets[st.name] = st
                elif isinstance(st, A.Scheme):
                    if define("scheme", st.name, st.span):
                        self.scheme_decls[st.name] = st
                elif isinstance(st, A.Pipeline):
                    if st.name is None:
                        if define("main pipeline", "", st.span):
                            self.main = st
                    elif define("pipeline", st.name, st.span):
                        self.pipelines[st.name] = st
                elif isinstance(st, A.Calibration):
                    if define("calibration block", "", st.span):
                        self.calibration = st
                elif isinstance(st, A.Target) and define("target", "", st.span):
                    self.target = st

    # -- variables
    def variables(self) -> None:
        for name, let in self.lets.items():
            self.values[name] = self.subst(let.value)
        for name, text in self.defines.items():
            where = A.Span("-D", 1, 1, 1, len(name) + 1)
            if name not in self.lets:
                self.err(
                    "E211",
                    f"-D {name}: the recipe defines no variable {name!r}",
                    None,
                    _did_you_mean(name, list(self.lets)) or _defined(self.lets),
                )
                continue
            default = self.values[name]
            try:
                value = parse_value(text, f"-D {name}")
            except RecipeError:
                if isinstance(default, A.Str):
                    value = A.Str(text)  # a bare string is fine for a string variable
                else:
                    self.err("E212", f"-D {name}={text}: not a valid value", None)
                    continue
            if isinstance(default, A.Str) and not isinstance(value, A.Str):
                value = A.Str(text)
            if not _same_kind(default, value):
                self.err(
                    "E212",
                    f"-D {name}={text}: variable {name!r} holds {_kind(default)}, "
                    f"not {_kind(value)}",
                    None,
                )
                continue
            self.values[name] = dataclasses.replace(value, span=where)

    def subst(self, v: A.Value) -> A.Value:
        if isinstance(v, A.Var):
            if v.name in self.values:
                return dataclasses.replace(self.values[v.name], span=v.span)
            self.err(
                "E210",
                f"undefined variable ${v.name}",
                v.span,
                _did_you_mean(v.name, list(self.lets)) or _defined(self.lets),
            )
            return A.Ident(_UNDEFINED, span=v.span)
        if isinstance(v, A.List):
            return dataclasses.replace(v, items=tuple(self.subst(x) for x in v.items))
        if isinstance(v, A.Call):
            return dataclasses.replace(v, args=tuple(self.subst_arg(a) for a in v.args))
        return v

    def subst_arg(self, a: A.Arg) -> A.Arg:
        if isinstance(a, A.KwArg):
            return dataclasses.replace(a, value=self.subst(a.value))
        return self.subst(a)

    def python(self, v: A.Value) -> Any:
        if isinstance(v, A.Int | A.Float | A.Str):
            return v.value
        if isinstance(v, A.Fraction):
            return v.num / v.den if v.den else float("nan")
        if isinstance(v, A.Ident):
            return _BOOLS.get(v.name, v.name)
        if isinstance(v, A.Size):
            return (v.width, v.height)
        if isinstance(v, A.List):
            return tuple(self.python(x) for x in v.items)
        if isinstance(v, A.Call):
            return f"{v.name}(...)"
        return None

    # -- schemes
    def scheme(self, decl: A.Scheme) -> QuantScheme | None:
        words = [self.subst(w) if isinstance(w, A.Call | A.Var) else w for w in decl.words]
        bad = [w for w in words if not isinstance(w, A.Ident | A.Call)]
        for w in bad:
            if not _mentions_undefined(w):
                self.err("E500", f"scheme {decl.name!r}: a scheme word is a name or a call", w.span)
        if bad:
            return None
        head = words[0]
        dtypes = [d.value for d in QDType]
        if not isinstance(head, A.Ident) or head.name not in dtypes:
            shown = head.name if isinstance(head, A.Ident | A.Call) else "?"
            self.err(
                "E500",
                f"scheme {decl.name!r}: {shown!r} is not an element type ({', '.join(dtypes)})",
                head.span,
                _did_you_mean(shown, dtypes),
            )
            return None
        fields: dict[str, Any] = {"dtype": QDType(head.name)}
        seen: dict[str, A.Span] = {}
        ok = True
        i = 1
        vocabulary = [
            "symmetric",
            "asymmetric",
            "per_tensor",
            "per_channel",
            "axis",
            "observer",
            "reduce_range",
        ]

        def once(group: str, span: A.Span) -> bool:
            if group in seen:
                self.err("E500", f"scheme {decl.name!r}: {group} is given twice", span)
                return False
            seen[group] = span
            return True

        while i < len(words):
            w = words[i]
            name = w.name
            if isinstance(w, A.Ident) and name in ("symmetric", "asymmetric"):
                ok &= once("symmetry", w.span)
                fields["symmetric"] = name == "symmetric"
            elif isinstance(w, A.Ident) and name in ("per_tensor", "per_channel"):
                ok &= once("granularity", w.span)
                fields["granularity"] = Granularity(name)
            elif name in ("axis", "per_channel") and isinstance(w, A.Call):
                ok &= once("granularity", w.span) if name == "per_channel" else once("axis", w.span)
                if name == "per_channel":
                    fields["granularity"] = Granularity.PER_CHANNEL
                axis = self._single_int_arg(decl, w, "axis")
                if axis is None:
                    ok = False
                else:
                    fields["axis"] = axis
            elif isinstance(w, A.Ident) and name == "reduce_range":
                ok &= once("reduce_range", w.span)
                fields["reduce_range"] = True
            elif isinstance(w, A.Ident) and name == "observer":
                ok &= once("observer", w.span)
                if i + 1 >= len(words):
                    self.err("E501", f"scheme {decl.name!r}: 'observer' needs a kind", w.span)
                    return None
                i += 1
                obs = self.observer(decl, words[i])
                if obs is None:
                    ok = False
                else:
                    fields["observer"] = obs
            else:
                self.err(
                    "E500",
                    f"scheme {decl.name!r}: unknown word {name!r}",
                    w.span,
                    _did_you_mean(name, vocabulary) or "words: " + ", ".join(vocabulary),
                )
                ok = False
            i += 1
        if "axis" in fields and fields.get("granularity") is not Granularity.PER_CHANNEL:
            self.err("E500", f"scheme {decl.name!r}: an axis needs per_channel", decl.span)
            ok = False
        if not ok:
            return None
        return QuantScheme(name=decl.name, **fields)

    def _single_int_arg(self, decl: A.Scheme, call: A.Call, key: str) -> int | None:
        args = call.args
        if len(args) == 1:
            a = args[0]
            val = a.value if isinstance(a, A.KwArg) and a.name == key else a
            if isinstance(val, A.Int):
                return val.value
        self.err(
            "E500", f"scheme {decl.name!r}: write {call.name}({key}=N) with an integer", call.span
        )
        return None

    def observer(self, decl: A.Scheme, w: A.Ident | A.Call) -> ObserverSpec | None:
        kind = OBSERVERS.get(w.name)
        if kind is None:
            self.err(
                "E501",
                f"scheme {decl.name!r}: unknown observer {w.name!r}",
                w.span,
                _did_you_mean(w.name, list(OBSERVERS)) or "observers: " + ", ".join(OBSERVERS),
            )
            return None
        args = w.args if isinstance(w, A.Call) else ()
        values: dict[str, Any] = {}
        params = {p.name: p for p in kind.params}
        for pos, a in enumerate(args):
            if isinstance(a, A.KwArg):
                p = params.get(a.name)
                if p is None:
                    self.err(
                        "E501",
                        f"observer {kind.name} has no parameter {a.name!r}",
                        a.span,
                        _did_you_mean(a.name, list(params))
                        or ("it takes none" if not params else f"parameters: {', '.join(params)}"),
                    )
                    return None
                val_node = a.value
            else:
                if pos >= len(kind.params):
                    self.err(
                        "E501",
                        f"observer {kind.name} takes {len(kind.params)} parameter(s)",
                        a.span,
                    )
                    return None
                p = kind.params[pos]
                val_node = a
            if p.name in values:
                self.err("E501", f"observer parameter {p.name!r} is given twice", a.span)
                return None
            raw = self.python(val_node)
            if p.type is float and isinstance(raw, int | float) and not isinstance(raw, bool):
                raw = float(raw)
            if not isinstance(raw, p.type) or isinstance(raw, bool) or not p.valid(raw):
                self.err(
                    "E501",
                    f"observer {kind.name}: {p.name} must be {p.type.__name__} with "
                    f"{p.range_text}, "
                    f"got {self.python(val_node)!r}",
                    val_node.span,
                )
                return None
            values[p.name] = raw
        full = tuple((p.name, values.get(p.name, p.default)) for p in kind.params)
        return ObserverSpec(kind.name, full)

    # -- pipelines
    def pipeline(self) -> list[PassInvocation]:
        self.step_cache: dict[int, PassInvocation | None] = {}
        for p in self.pipelines.values():  # check every named pipeline, used or not
            for st in p.steps:
                if isinstance(st, A.Use):
                    self.check_use(st)
                else:
                    self.cached_step(st)
        self.report_use_cycles()
        if self.main is None:
            required = self.require_pipeline
            if required is None:
                required = not self.pipelines
            if required:
                self.err(
                    "E222",
                    "the recipe has no main pipeline: add `pipeline { ... }`",
                    None,
                    "named pipelines: " + ", ".join(self.pipelines) if self.pipelines else None,
                )
            return []
        return self.expand(self.main, ())

    def check_use(self, st: A.Use) -> None:
        if st.name not in self.pipelines:
            self.err(
                "E220",
                f"use {st.name}: no pipeline named {st.name!r}",
                st.span,
                _did_you_mean(st.name, list(self.pipelines))
                or ("named pipelines: " + ", ".join(self.pipelines) if self.pipelines else None),
            )

    def report_use_cycles(self) -> None:
        spans: dict[tuple[str, str], A.Span] = {}
        for name, p in self.pipelines.items():
            for st in p.steps:
                if isinstance(st, A.Use) and st.name in self.pipelines:
                    spans.setdefault((name, st.name), st.span)
        if not spans:
            return  # no named pipeline uses another (the usual case): skip importing networkx
        import networkx as nx

        dg = nx.DiGraph()
        dg.add_nodes_from(self.pipelines)
        dg.add_edges_from(spans)
        for cycle in sorted(nx.simple_cycles(dg), key=lambda c: sorted(c)):
            start = min(cycle)
            k = cycle.index(start)
            cycle = cycle[k:] + cycle[:k]
            chain = " -> ".join([*cycle, cycle[0]])
            edge = (cycle[0], cycle[1] if len(cycle) > 1 else cycle[0])
            self.err("E221", f"pipelines use each other in a cycle: {chain}", spans[edge])

    def expand(self, p: A.Pipeline, stack: tuple[str, ...]) -> list[PassInvocation]:
        out: list[PassInvocation] = []
        for st in p.steps:
            if isinstance(st, A.Use):
                target = self.pipelines.get(st.name)
                if target is None:
                    if p is self.main:
                        self.check_use(st)  # named pipelines' uses were checked already
                elif st.name not in stack:  # a cycle was reported by report_use_cycles
                    out += self.expand(target, (*stack, st.name))
            else:
                inv = self.cached_step(st)
                if inv is not None:
                    out.append(inv)
        return out

    def cached_step(self, st: A.Step) -> PassInvocation | None:
        if id(st) not in self.step_cache:
            self.step_cache[id(st)] = self.step(st)
        return self.step_cache[id(st)]

    def step(self, st: A.Step) -> PassInvocation | None:
        name_span = A.Span(
            st.span.file, st.span.line, st.span.column, st.span.line, st.span.column + len(st.name)
        )
        try:
            info = get_pass(st.name)
        except PassError:
            from qcc.pipeline import all_passes

            self.err(
                "E300",
                f"unknown pass {st.name!r}",
                name_span,
                _did_you_mean(st.name, [p.name for p in all_passes()])
                or "`qcc passes` lists every pass",
            )
            return None
        options = self.options(info, st.args, allow_positional=True)
        ok = options is not None
        if (st.on is not None or st.exclude is not None) and not info.selectable:
            self.err(
                "E305", f"pass {info.name!r} does not take a node selection (on/exclude)", name_span
            )
            ok = False
        if st.where and not info.overridable:
            self.err(
                "E306",
                f"pass {info.name!r} does not take per-selector overrides (where)",
                st.where[0].span,
            )
            ok = False
        for sel in (st.on, st.exclude):
            if sel is not None:
                ok &= self.check_selector(sel)
        overrides = []
        for w in st.where:
            ok &= self.check_selector(w.selector)
            opts = self.options(info, w.args, allow_positional=False)
            if opts is None:
                ok = False
            else:
                overrides.append((w.selector, opts))
        if not ok:
            return None
        loc = SourceLocation(st.span.file, st.span.line, st.span.column)
        return PassInvocation(info.name, options, loc, st.on, st.exclude, tuple(overrides))

    def options(
        self, info: PassInfo, args: tuple[A.Arg, ...], allow_positional: bool
    ) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        spans: dict[str, A.Span] = {}
        positional = [a for a in args if not isinstance(a, A.KwArg)]
        ok = True
        if positional:
            if not allow_positional or info.positional is None:
                self.err(
                    "E304",
                    f"pass {info.name!r} takes no positional argument; write option = value",
                    positional[0].span,
                    "options: " + ", ".join(o.flag for o in info.options)
                    if info.options
                    else "it has no options",
                )
                ok = False
            else:
                opt = info.option(info.positional)
                value = positional if len(positional) > 1 else positional[0]
                if isinstance(value, list):
                    value = A.List(tuple(value), span=positional[0].span)
                conv = self.convert(info, opt, value)
                if conv is _FAIL:
                    ok = False
                else:
                    out[opt.name] = conv
                    spans[opt.name] = positional[0].span
        for a in args:
            if not isinstance(a, A.KwArg):
                continue
            try:
                opt = info.option(a.name)
            except PassError:
                flags = [o.flag for o in info.options]
                self.err(
                    "E301",
                    f"pass {info.name!r} has no option {a.name!r}",
                    a.span,
                    _did_you_mean(a.name, flags)
                    or ("options: " + ", ".join(flags) if flags else "it has no options"),
                )
                ok = False
                continue
            if opt.name in out:
                self.err(
                    "E303",
                    f"option {opt.flag!r} is given twice (first at {spans[opt.name]})",
                    a.span,
                )
                ok = False
                continue
            conv = self.convert(info, opt, a.value)
            if conv is _FAIL:
                ok = False
            else:
                out[opt.name] = conv
                spans[opt.name] = a.span
        return out if ok else None

    def convert(self, info: PassInfo, opt, node: A.Value) -> Any:
        node = self.subst(node)
        if _mentions_undefined(node):
            return _FAIL  # the undefined variable is already reported
        if opt.type is QuantScheme:
            if isinstance(node, A.Ident) and node.name in self.schemes:
                return self.schemes[node.name]
            if isinstance(node, A.Ident) and node.name in self.scheme_decls:
                return _FAIL  # the scheme itself is broken and already reported
            shown = node.name if isinstance(node, A.Ident) else self.python(node)
            self.err(
                "E502",
                f"option {opt.flag!r} of pass {info.name!r} names unknown scheme {shown!r}",
                node.span,
                _did_you_mean(str(shown), list(self.scheme_decls))
                or (
                    "schemes: " + ", ".join(self.scheme_decls)
                    if self.scheme_decls
                    else "declare it with `scheme NAME = ...`"
                ),
            )
            return _FAIL
        if isinstance(node, A.Call):
            self.err(
                "E302",
                f"option {opt.flag!r} of pass {info.name!r} expects {opt.type_name()}, got a call",
                node.span,
            )
            return _FAIL
        raw = self.python(node)
        if isinstance(node, A.Fraction) and node.den == 0:
            self.err("E302", "division by zero", node.span)
            return _FAIL
        try:
            return opt.convert(list(raw) if isinstance(raw, tuple) else raw)
        except PassError as e:
            self.err("E302", f"pass {info.name!r}: {e.message}", node.span)
            return _FAIL

    def check_selector(self, sel: Selector) -> bool:
        ok = True
        for atom in sel.atoms():
            if isinstance(atom, BadSelector):
                self.err(atom.code, atom.problem, atom.where, atom.help)
                ok = False
        return ok

    # -- calibration and target
    def calibration_config(self) -> CalibrationConfig | None:
        block = self.calibration.block
        allowed = set(CALIBRATION_SETTINGS)
        fields: dict[str, Any] = {}
        for s in self._settings(block, allowed, "calibration", "E600"):
            v = s.value
            if s.key == "preprocess":
                if not isinstance(v, A.Block):
                    self.err(
                        "E600",
                        "preprocess takes a block: preprocess { resize 224x224, ... }",
                        s.span,
                    )
                    continue
                pre = self.preprocess(v)
                if pre is not None:
                    fields["preprocess"] = pre
                continue
            v = self.subst(v) if v is not None and not isinstance(v, A.Block) else v
            if s.key == "data":
                if not isinstance(v, A.Str):
                    self.err(
                        "E600",
                        'data takes a string: a path, a glob, or "pkg.module:function"',
                        s.span,
                    )
                    continue
                self.data_source(v, fields)
            else:
                if not isinstance(v, A.Int) or v.value < (0 if s.key == "seed" else 1):
                    low = "a non-negative" if s.key == "seed" else "a positive"
                    self.err(
                        "E600", f"{s.key} takes {low} integer", v.span if v is not None else s.span
                    )
                    continue
                fields[s.key] = v.value
        return CalibrationConfig(**fields)

    def data_source(self, v: A.Str, fields: dict[str, Any]) -> None:
        text = v.value
        if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", text):
            fields["callable"] = text
            return
        base = Path(v.span.file).parent  # relative to the recipe file that names it
        full = str(Path(text) if os.path.isabs(text) else base / text)
        if self.check_files and not glob.glob(full):
            self.err(
                "E601",
                f"calibration data {text!r} not found (looked for {full!r})",
                v.span,
                "paths are relative to the recipe file; --calib PATH overrides the recipe's data",
            )
            return
        fields["data"] = full

    def preprocess(self, block: A.Block) -> Preprocess | None:
        allowed = set(PREPROCESS_SETTINGS)
        fields: dict[str, Any] = {}
        ok = True
        for s in self._settings(block, allowed, "preprocess", "E600"):
            v = s.value if isinstance(s.value, A.Block) else self.subst(s.value)
            raw = self.python(v) if v is not None and not isinstance(v, A.Block) else None
            good = True
            if s.key == "resize":
                if isinstance(v, A.Int) and v.value > 0:
                    raw = (v.value, v.value)
                good = (
                    isinstance(raw, tuple)
                    and len(raw) == 2
                    and all(isinstance(x, int) and x > 0 for x in raw)
                )
                msg = "resize takes WxH (224x224) or one size"
            elif s.key == "layout":
                good = raw in ("NCHW", "NHWC")
                msg = "layout is NCHW or NHWC"
            elif s.key == "color":
                good = raw in ("rgb", "bgr", "gray")
                msg = "color is rgb, bgr or gray"
            elif s.key == "scale":
                good = isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0
                raw = float(raw) if good else raw
                msg = "scale takes a positive number (1/255 works)"
            else:  # mean, std
                good = (
                    isinstance(raw, tuple)
                    and len(raw) > 0
                    and all(isinstance(x, int | float) and not isinstance(x, bool) for x in raw)
                )
                if good and s.key == "std":
                    good = all(x != 0 for x in raw)
                raw = tuple(float(x) for x in raw) if good else raw
                msg = f"{s.key} takes a list of numbers" + (
                    " (none zero)" if s.key == "std" else ""
                )
            if not good:
                self.err(
                    "E600",
                    msg,
                    (v.span if v is not None and not isinstance(v, A.Block) else s.span),
                )
                ok = False
                continue
            fields[s.key] = raw
        if (
            ok
            and "mean" in fields
            and "std" in fields
            and len(fields["mean"]) != len(fields["std"])
        ):
            self.err("E600", "mean and std must have the same length", block.span)
            ok = False
        return Preprocess(**fields) if ok else None

    def _settings(
        self, block: A.Block, allowed: set[str], where: str, code: str
    ) -> list[A.Setting]:
        out = []
        seen: dict[str, A.Span] = {}
        for s in block.settings:
            if s.key not in allowed:
                self.err(
                    code,
                    f"{where} has no setting {s.key!r}",
                    s.span,
                    _did_you_mean(s.key, sorted(allowed))
                    or "settings: " + ", ".join(sorted(allowed)),
                )
            elif s.key in seen:
                self.err(
                    code,
                    f"{where} setting {s.key!r} is given twice (first at {seen[s.key]})",
                    s.span,
                )
            elif s.value is None:
                self.err(code, f"{where} setting {s.key!r} needs a value", s.span)
            else:
                seen[s.key] = s.span
                out.append(s)
        return out

    def target_config(self) -> TargetConfig:
        t = self.target
        if t is None:
            return TargetConfig()
        backends = {k: set(v) for k, v in TARGET_SETTINGS.items()}
        if t.backend not in backends:
            self.err(
                "E700",
                f"unknown target {t.backend!r}",
                A.Span(
                    t.span.file,
                    t.span.line,
                    t.span.column + 7,
                    t.span.line,
                    t.span.column + 7 + len(t.backend),
                ),
                _did_you_mean(t.backend, list(backends)) or "targets: onnx, tflite",
            )
            return TargetConfig()
        fields: dict[str, Any] = {"backend": t.backend, "declared": True}
        if t.block is not None:
            for s in self._settings(t.block, backends[t.backend], f"target {t.backend}", "E700"):
                v = self.subst(s.value) if not isinstance(s.value, A.Block) else s.value
                raw = self.python(v) if not isinstance(v, A.Block) else None
                if s.key == "format" and raw not in ("qdq", "qoperator"):
                    self.err("E700", "format is qdq or qoperator", v.span)
                elif s.key == "io" and raw not in ("float32", "int8"):
                    self.err("E700", "io is float32 or int8", v.span)
                elif s.key == "layout" and raw not in ("nhwc", "nchw"):
                    self.err("E700", "layout is nhwc or nchw", v.span)
                elif s.key in ("opset", "min_opset"):
                    from qcc.frontend import MAX_OPSET, MIN_OPSET

                    if (
                        not isinstance(raw, int)
                        or isinstance(raw, bool)
                        or not MIN_OPSET <= raw <= MAX_OPSET
                    ):
                        self.err(
                            "E700", f"opset is an integer from {MIN_OPSET} to {MAX_OPSET}", v.span
                        )
                    else:
                        fields[s.key] = raw
                else:
                    fields[s.key] = raw
        return TargetConfig(**fields)


_FAIL = object()
_UNDEFINED = "$undefined"  # cannot come from the parser: '$' is not a name character


def _mentions_undefined(v: A.Value) -> bool:
    if isinstance(v, A.Ident):
        return v.name == _UNDEFINED
    if isinstance(v, A.List):
        return any(_mentions_undefined(x) for x in v.items)
    return False


def _kind(v: A.Value) -> str:
    return {
        A.Int: "an integer",
        A.Float: "a number",
        A.Fraction: "a number",
        A.Str: "a string",
        A.Ident: "a name",
        A.Size: "a size",
        A.List: "a list",
        A.Call: "a call",
    }.get(type(v), "a value")


def _same_kind(default: A.Value, value: A.Value) -> bool:
    numbers = (A.Float, A.Fraction)
    if isinstance(default, numbers):
        return isinstance(value, A.Int | A.Float | A.Fraction)
    if isinstance(default, A.Call) or (isinstance(default, A.Ident) and default.name not in _BOOLS):
        return isinstance(value, A.Ident | A.Call)  # an observer: `entropy` or `percentile(99)`
    if isinstance(default, A.Ident) and default.name in _BOOLS:
        return isinstance(value, A.Ident) and value.name in _BOOLS
    return type(default) is type(value)


def _defined(lets: Mapping[str, Any]) -> str | None:
    return "defined variables: " + ", ".join(lets) if lets else "the recipe defines no variables"
