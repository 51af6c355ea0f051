"""Pass registry and pass manager.

A pass is a plain function registered under its recipe name::

    @register_pass("fold-batchnorm")
    def fold_batchnorm(graph: Graph, ctx: PassContext, *, standalone: bool = True) -> PassResult:
        '''Fold BatchNormalization into the preceding Conv ... (first line is the summary)

        Options:
            standalone: turn a BatchNormalization that cannot be folded into Mul+Add.
        '''

Keyword-only parameters are the pass's typed options (bool, int, float, str, an Enum, or a
``tuple[str, ...]``); their recipe/CLI spelling is kebab-case. The docstring is the help text;
its ``Options:`` section documents each option. A pass returns a :class:`PassResult`: whether it
changed the graph, statistics, and notes saying what it changed.

The :class:`PassManager` runs a list of :class:`PassInvocation`, times each pass, optionally
verifies the IR after each one, tags every node a pass creates with the pass name, and turns a
failure into a :class:`~qcc.errors.PassError` naming the pass, its recipe location and the passes
that ran before it.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib
import inspect
import logging
import pkgutil
import re
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from qcc.errors import PassError, QccError
from qcc.ir import Graph, Model, Node, created_by
from qcc.select import Selector

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SourceLocation:
    """A place in a recipe (or on the command line) that asked for something."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclasses.dataclass
class PassResult:
    """What a pass did: ``changed``, counters for the report, and human-readable notes."""

    changed: bool = False
    stats: dict[str, int | float] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def count(self, key: str, n: int | float = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n
        if n:
            self.changed = True

    def note(self, text: str) -> None:
        self.notes.append(text)


@dataclasses.dataclass
class Session:
    """What one compile shares between its passes.

    ``calibration`` is the validated calibration data (``qcc.quant.data.CalibrationSet``) when
    the pipeline calibrates; ``progress(total, label)`` returns a callback ``advance(n)`` (the
    CLI draws it with rich; library code never prints); ``state`` holds data passes hand to
    later passes (the quantization plan).
    """

    calibration: Any = None
    calibration_batch: int = 1
    backend: str = "onnx"  # what the compile writes: onnx | tflite (passes may adapt to it)
    pipeline: list[str] = dataclasses.field(default_factory=list)  # pass names, in order
    progress: Callable[[int, str], Callable[[int], None]] | None = None
    state: dict[str, Any] = dataclasses.field(default_factory=dict)

    def progress_bar(self, total: int, label: str) -> Callable[[int], None]:
        if self.progress is None:
            return lambda n: None
        return self.progress(total, label)


@dataclasses.dataclass
class PassContext:
    """What a pass may know besides its graph: the model, the invocation, and (for passes
    registered ``selectable``) the nodes the recipe selected with ``on``/``exclude``, and (for
    ``overridable`` passes) the per-selector option overrides of ``where`` clauses."""

    model: Model
    pass_name: str
    location: SourceLocation | None = None
    log: logging.Logger = log
    selection: frozenset[int] | None = None  # ids of selected nodes; None means every node
    overrides: tuple[tuple[frozenset[int], Mapping[str, Any]], ...] = ()
    session: Session = dataclasses.field(default_factory=Session)

    def selected(self, node: Node) -> bool:
        return self.selection is None or id(node) in self.selection

    def options_for(self, node: Node, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """``defaults`` with the overrides of every ``where`` clause matching ``node`` applied
        in recipe order (a later clause wins)."""
        out = dict(defaults)
        for ids, opts in self.overrides:
            if id(node) in ids:
                out.update(opts)
        return out


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One typed option of a pass."""

    name: str  # Python keyword
    type: Any
    default: Any
    help: str = ""
    valid: Callable[[Any], bool] | None = None  # a range check beyond the type
    valid_text: str = ""  # the valid range, for messages ("> 0")

    @property
    def flag(self) -> str:
        return self.name.replace("_", "-")

    def type_name(self) -> str:
        t = self.type
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return "|".join(m.value if isinstance(m.value, str) else m.name for m in t)
        if typing.get_origin(t) is tuple:
            (inner, *_) = typing.get_args(t)
            return f"list of {OptionInfo(self.name, inner, None).type_name()}"
        if getattr(t, "__name__", "") == "QuantScheme":
            return "scheme"
        return getattr(t, "__name__", str(t))

    def convert(self, raw: Any) -> Any:
        """Convert a recipe or command-line value to the option's type and check its range
        (PassError if it can't or is out of range)."""
        value = self._convert(raw)
        if self.valid is not None and not self.valid(value):
            raise PassError(f"option {self.flag!r} must be {self.valid_text}, got {raw!r}")
        return value

    def _convert(self, raw: Any) -> Any:
        t = self.type
        if (
            isinstance(t, type)
            and not issubclass(t, enum.Enum)
            and t not in (bool, int, float, str)
        ):
            if isinstance(raw, t):  # a resolved object such as a QuantScheme
                return raw
            raise PassError(f"option {self.flag!r} expects {self.type_name()}, got {raw!r}")
        try:
            if t is bool:
                if isinstance(raw, bool):
                    return raw
                if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on"):
                    return True
                if isinstance(raw, str) and raw.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            if t is int:
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                return int(raw)
            if t is float:
                if isinstance(raw, bool):
                    raise ValueError
                return float(raw)
            if t is str:
                if not isinstance(raw, str):
                    raise ValueError
                return raw
            if isinstance(t, type) and issubclass(t, enum.Enum):
                for m in t:
                    if (
                        raw == m.value
                        or raw == m.name
                        or (isinstance(raw, str) and raw == m.name.lower())
                    ):
                        return m
                words = [str(m.value) for m in t]
                close = difflib.get_close_matches(str(raw), words, n=1)
                if close:
                    raise PassError(
                        f"option {self.flag!r} expects {self.type_name()}, got {raw!r}; "
                        f"did you mean {close[0]!r}?"
                    )
                raise ValueError
            if typing.get_origin(t) is tuple:
                (inner, *_) = typing.get_args(t)
                items = raw.split(",") if isinstance(raw, str) else list(raw)
                return tuple(
                    OptionInfo(self.name, inner, None).convert(x) for x in items if x != ""
                )
        except (TypeError, ValueError):
            pass
        raise PassError(f"option {self.flag!r} expects {self.type_name()}, got {raw!r}")


class DataUse(enum.Enum):
    """Whether a pass, with given options, reads the session's calibration data."""

    NONE = "none"
    OPTIONAL = "optional"  # used when given (--calib or a calibration block)
    REQUIRED = "required"  # the compile stops before any pass runs when there is none


@dataclasses.dataclass(frozen=True)
class PassInfo:
    """A registered pass.

    ``positional`` names the option a bare recipe argument sets (``fuse-activations conv-relu``);
    ``selectable`` passes honour ``on``/``exclude`` (``ctx.selected``); ``overridable`` passes
    honour ``where`` clauses (``ctx.options_for``); ``calibration`` says whether the pass,
    with given options, reads the session's calibration data (the compiler opens and checks
    it before any pass runs).
    """

    name: str
    fn: Callable[..., PassResult]
    options: tuple[OptionInfo, ...]
    doc: str
    positional: str | None = None
    selectable: bool = False
    overridable: bool = False
    calibration: DataUse | Callable[[Mapping[str, Any]], DataUse] = DataUse.NONE

    def data_use(self, options: Mapping[str, Any]) -> DataUse:
        """How this pass uses calibration data when run with ``options`` (Python names)."""
        if callable(self.calibration):
            return self.calibration(options)
        return self.calibration

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    @property
    def description(self) -> str:
        """The docstring without its ``Options:`` section."""
        return re.split(r"\n\s*Options:\s*\n", self.doc, maxsplit=1)[0].strip()

    def option(self, flag: str) -> OptionInfo:
        for o in self.options:
            if o.flag == flag or o.name == flag:
                return o
        choices = [o.flag for o in self.options]
        hint = _did_you_mean(flag, choices)
        known = ", ".join(choices) or "none"
        raise PassError(f"pass {self.name!r} has no option {flag!r}{hint} (options: {known})")

    def bind(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Check and convert options given by flag; returns Python keyword arguments."""
        out = {}
        for flag, value in raw.items():
            o = self.option(flag)
            try:
                out[o.name] = o.convert(value)
            except PassError as e:
                raise PassError(f"pass {self.name!r}: {e.message}") from None
        return out


_REGISTRY: dict[str, PassInfo] = {}
_LOADED = False


def register_pass(
    name: str,
    *,
    positional: str | None = None,
    selectable: bool = False,
    overridable: bool = False,
    calibration: DataUse | Callable[[Mapping[str, Any]], DataUse] = DataUse.NONE,
    valid: Mapping[str, tuple[Callable[[Any], bool], str]] | None = None,
) -> Callable[[Callable[..., PassResult]], Callable[..., PassResult]]:
    """Register ``fn`` as the pass ``name`` (kebab-case). A duplicate name is an error.

    ``valid`` maps option names (Python keywords) to a range check and its text
    (``{"samples": (lambda v: v >= 1, ">= 1")}``): values outside it are rejected when the
    recipe or ``--passes`` is resolved, before any pass runs."""
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        raise ValueError(f"pass name {name!r} must be kebab-case")

    def deco(fn: Callable[..., PassResult]) -> Callable[..., PassResult]:
        if name in _REGISTRY:
            raise ValueError(f"pass {name!r} is registered twice ({_REGISTRY[name].fn.__module__})")
        options = _options_of(fn)
        known = {o.name for o in options}
        for key in valid or {}:
            if key not in known:
                raise ValueError(f"pass {name!r}: range check for unknown option {key!r}")
        options = tuple(
            dataclasses.replace(o, valid=valid[o.name][0], valid_text=valid[o.name][1])
            if valid and o.name in valid
            else o
            for o in options
        )
        if positional is not None and positional not in {o.name for o in options}:
            raise ValueError(f"pass {name!r}: positional option {positional!r} does not exist")
        doc = inspect.getdoc(fn) or ""
        _REGISTRY[name] = PassInfo(
            name, fn, options, doc, positional, selectable, overridable, calibration
        )
        return fn

    return deco


def _options_of(fn: Callable[..., Any]) -> tuple[OptionInfo, ...]:
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    helps = _option_help(inspect.getdoc(fn) or "")
    opts = []
    for p in sig.parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if p.default is inspect.Parameter.empty:
            raise ValueError(f"pass option {p.name!r} of {fn.__name__} needs a default")
        t = hints.get(p.name, type(p.default))
        args = typing.get_args(t)
        if typing.get_origin(t) in (typing.Union, types.UnionType) and type(None) in args:
            (t,) = [a for a in args if a is not type(None)]  # Optional[X]: X, default None
        opts.append(OptionInfo(p.name, t, p.default, helps.get(p.name.replace("_", "-"), "")))
    return tuple(opts)


def _option_help(doc: str) -> dict[str, str]:
    parts = re.split(r"\n\s*Options:\s*\n", doc, maxsplit=1)
    if len(parts) < 2:
        return {}
    out: dict[str, str] = {}
    key = None
    for line in parts[1].splitlines():
        m = re.match(r"\s*([a-z][a-z0-9_-]*):\s*(.*)", line)
        if m:
            key = m.group(1).replace("_", "-")
            out[key] = m.group(2).strip()
        elif key and line.strip():
            out[key] += " " + line.strip()
    return out


def load_builtin_passes() -> None:
    """Import every module of :mod:`qcc.passes` so their passes register."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import qcc.passes as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")


def all_passes() -> list[PassInfo]:
    load_builtin_passes()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_pass(name: str) -> PassInfo:
    load_builtin_passes()
    info = _REGISTRY.get(name)
    if info is None:
        hint = _did_you_mean(name, list(_REGISTRY))
        raise PassError(f"unknown pass {name!r}{hint}", hint="`qcc passes` lists every pass")
    return info


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclasses.dataclass(frozen=True)
class PassInvocation:
    """One step of a pipeline: a pass name, its converted options, where it was asked for,
    and (from recipes) the node selection and per-selector overrides."""

    name: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    location: SourceLocation | None = None
    on: Selector | None = None
    exclude: Selector | None = None
    overrides: tuple[tuple[Selector, Mapping[str, Any]], ...] = ()

    def spelled(self) -> str:
        text = self.name
        if self.options:
            opts = " ".join(f"{k.replace('_', '-')}={_spell(v)}" for k, v in self.options.items())
            text += f"{{{opts}}}"
        if self.on is not None:
            text += f" on {self.on}"
        if self.exclude is not None:
            text += f" exclude {self.exclude}"
        for sel, opts in self.overrides:
            body = " ".join(f"{k.replace('_', '-')}={_spell(v)}" for k, v in opts.items())
            text += f" where {sel} {{ {body} }}"
        return text


def _spell(v: Any) -> str:
    if hasattr(v, "recipe_text"):  # resolved objects (schemes) print as the recipe names them
        return v.recipe_text()
    if isinstance(v, enum.Enum):
        return str(v.value)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return ",".join(_spell(x) for x in v)
    return str(v)


def parse_pass_list(text: str, *, origin: str = "--passes") -> list[PassInvocation]:
    """Parse ``a,b{opt=1 other=x,y},c`` (MLIR's ``--pass-pipeline`` style) into invocations.

    Names and options are resolved against the registry here, before any pass runs.
    """
    items: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise PassError(f"{origin}: unbalanced '}}' at column {i + 1}")
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise PassError(f"{origin}: unclosed '{{'")
    items.append(text[start:])
    out: list[PassInvocation] = []
    for item in items:
        item = item.strip()
        if not item:
            raise PassError(f"{origin}: empty pass name in {text!r}")
        m = re.fullmatch(r"([A-Za-z0-9_-]+)\s*(?:\{(.*)\})?", item, flags=re.S)
        if not m:
            raise PassError(f"{origin}: cannot read pass {item!r}; write name or name{{opt=value}}")
        info = get_pass(m.group(1))
        raw: dict[str, str] = {}
        for tok in (m.group(2) or "").split():
            if "=" not in tok:
                raise PassError(f"{origin}: option {tok!r} of pass {info.name!r} needs =value")
            k, v = tok.split("=", 1)
            raw[k] = v
        out.append(PassInvocation(info.name, info.bind(raw), SourceLocation(origin)))
    return out


@dataclasses.dataclass
class PassRecord:
    """One line of the compile report (``selected`` and ``overridden`` feed ``--explain``)."""

    name: str
    location: SourceLocation | None
    changed: bool
    stats: dict[str, int | float]
    notes: list[str]
    seconds: float
    nodes_before: int
    nodes_after: int
    selected: list[str] | None = None
    overridden: list[tuple[str, list[str]]] = dataclasses.field(default_factory=list)


class PassManager:
    """Run a pipeline of passes over a model."""

    def __init__(
        self,
        pipeline: Sequence[PassInvocation],
        *,
        verify_each: bool = False,
        on_pass_start: Callable[[PassInvocation], None] | None = None,
        session: Session | None = None,
    ) -> None:
        self.pipeline = list(pipeline)
        self.verify_each = verify_each
        self.on_pass_start = on_pass_start
        self.session = session if session is not None else Session()
        self.session.pipeline = [inv.name for inv in self.pipeline]

    def run(self, model: Model) -> list[PassRecord]:
        records: list[PassRecord] = []
        for inv in self.pipeline:
            info = get_pass(inv.name)
            if self.on_pass_start:
                self.on_pass_start(inv)
            graph: Graph = model.graph
            before = len(graph)
            ctx = PassContext(
                model=model, pass_name=inv.name, location=inv.location, session=self.session
            )
            selected: list[str] | None = None
            overridden: list[tuple[str, list[str]]] = []
            t0 = time.perf_counter()
            try:
                if inv.on is not None or inv.exclude is not None:
                    nodes = inv.on.evaluate(graph) if inv.on is not None else list(graph)
                    if inv.exclude is not None:
                        dropped = {id(n) for n in inv.exclude.evaluate(graph)}
                        nodes = [n for n in nodes if id(n) not in dropped]
                    if not nodes:
                        raise PassError(
                            "its node selection matches no node of the graph as it is now"
                        )
                    ctx.selection = frozenset(id(n) for n in nodes)
                    selected = [n.describe() for n in nodes]
                over = []
                for sel, opts in inv.overrides:
                    nodes = sel.evaluate(graph)
                    if not nodes:
                        raise PassError(f"where {sel} matches no node of the graph as it is now")
                    over.append((frozenset(id(n) for n in nodes), opts))
                    overridden.append((str(sel), [n.describe() for n in nodes]))
                ctx.overrides = tuple(over)
                with created_by(inv.name):
                    result = info.fn(graph, ctx, **inv.options)
                if not isinstance(result, PassResult):
                    raise TypeError(f"returned {type(result).__name__}, not PassResult")
                if self.verify_each:
                    graph.verify()
            except QccError as e:
                raise self._failure(inv, records, e.message, e) from e
            except Exception as e:
                raise self._failure(
                    inv, records, f"internal error: {type(e).__name__}: {e}", e
                ) from e
            seconds = time.perf_counter() - t0
            records.append(
                PassRecord(
                    inv.name,
                    inv.location,
                    result.changed,
                    dict(result.stats),
                    list(result.notes),
                    seconds,
                    before,
                    len(graph),
                    selected,
                    overridden,
                )
            )
            log.info(
                "pass %s: changed=%s %s (%.3fs)", inv.name, result.changed, result.stats, seconds
            )
        return records

    @staticmethod
    def _failure(
        inv: PassInvocation, done: list[PassRecord], message: str, cause: Exception
    ) -> PassError:
        where = f" ({inv.location})" if inv.location and inv.location.line else ""
        ran = ", ".join(r.name for r in done) or "none"
        node = getattr(cause, "node", None)
        return PassError(
            f"pass {inv.name!r}{where} failed: {message}\n  passes that ran before: {ran}",
            node=node,
        )
