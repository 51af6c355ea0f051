"""The ``qcc`` command line (click for parsing, rich for output).

Subcommands: ``compile``, ``check``, ``fmt``, ``passes``, ``inspect``, ``verify``, ``run``.
Exit status is the same everywhere: 0 success, 1 a check ran and said no (``qcc check`` found
problems in the recipe, ``qcc fmt --check`` would reformat, ``qcc verify`` found a mismatch),
2 bad input or internal error (130 when interrupted). Errors are one short message on stderr
(recipe problems: ``file:line:col: error[CODE]``, the source line and a caret); ``--format
json`` prints them as JSON on stdout; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from qcc import __version__
from qcc.errors import ExitCode, QccError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format (json: the report or the diagnostics as JSON on stdout).",
)
DEFINES = click.option(
    "-D",
    "defines",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a recipe variable (repeatable).",
)


def _error_json(e: QccError) -> dict[str, Any]:
    from qcc.recipe.diagnostics import RecipeError

    if isinstance(e, RecipeError):
        diags = [d.to_json() for d in e.diagnostics]
    else:
        d: dict[str, Any] = {"severity": "error", "code": type(e).__name__, "message": e.message}
        if e.path:
            d["file"] = e.path
        if e.node:
            d["node"] = e.node
        if e.hint:
            d["help"] = e.hint
        diags = [d]
    return {"ok": False, "diagnostics": diags}


def _run(
    fn: Callable[[], int | None],
    debug: bool,
    fmt: str = "text",
    recipe_exit: ExitCode | None = None,
) -> None:
    """Run a command body, mapping every failure to a one-screen message and exit code.

    ``recipe_exit`` overrides the exit code of recipe diagnostics (``qcc check`` uses 1).
    """
    from qcc.recipe.diagnostics import RecipeError

    try:
        code = fn() or ExitCode.OK
    except QccError as e:
        if fmt == "json":
            out.print_json(json.dumps(_error_json(e)))
        elif isinstance(e, RecipeError):
            err.print(escape(e.render()))
        else:
            err.print(f"[bold red]error:[/] {escape(e.render())}")
        if debug:
            err.print(escape("".join(traceback.format_exception(e))))
        code = e.exit_code
        if isinstance(e, RecipeError) and recipe_exit is not None:
            unreadable = all(d.code == "E203" for d in e.diagnostics)
            code = ExitCode.BAD_INPUT if unreadable else recipe_exit
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]: nothing was written")
        code = 130
    except Exception as e:  # an internal error must still be one clear screen, exit 2
        err.print(
            f"[bold red]internal error:[/] {escape(type(e).__name__)}: {escape(str(e))}\n"
            "  this is a bug in qcc; rerun with --debug for the traceback and report it"
        )
        if debug:
            err.print(escape("".join(traceback.format_exception(e))))
        code = ExitCode.BAD_INPUT
    sys.exit(int(code))


def _parse_defines(defines: tuple[str, ...]) -> dict[str, str]:
    out_: dict[str, str] = {}
    for d in defines:
        name, eq, value = d.partition("=")
        if not eq or not name:
            raise QccError(f"-D {d}: write -D NAME=VALUE")
        out_[name.strip()] = value
    return out_


class _Ctx:
    def __init__(self, debug: bool) -> None:
        self.debug = debug


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qcc")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug logs).")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: int) -> None:
    """qcc: a quantization compiler for ONNX models."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_time=False, show_path=debug)],
    )
    ctx.obj = _Ctx(debug)


# --------------------------------------------------------------------------- compile


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output file.")
@click.option("-r", "--recipe", help="Recipe file, or the name of a built-in recipe.")
@DEFINES
@click.option(
    "--passes",
    "passes",
    metavar="LIST",
    help="Comma-separated passes to run in order instead of a recipe, e.g. "
    "'fold-constants,fold-batchnorm' (options: 'fold-constants{max-bytes=1024}').",
)
@click.option(
    "--calib",
    metavar="PATH",
    help="Calibration data (.npy, .npz, a folder or glob, or pkg.module:function); overrides "
    "the recipe's.",
)
@click.option("--verify-each", is_flag=True, help="Verify the IR after every pass.")
@click.option(
    "--verify",
    "verify_output",
    is_flag=True,
    help="Before writing, check the result bit-exact against onnxruntime, or LiteRT for a "
    ".tflite (qcc verify); exit 1 and write nothing on a mismatch.",
)
@click.option("--explain", is_flag=True, help="Show which nodes each selector matched.")
@click.option(
    "--external-data/--no-external-data",
    default=None,
    help="Write tensors to OUTPUT.data (default: only above 2 GB).",
)
@FORMAT
@click.pass_obj
def compile_cmd(
    obj: _Ctx,
    model: Path,
    output: Path,
    recipe: str | None,
    defines: tuple[str, ...],
    passes: str | None,
    calib: str | None,
    verify_each: bool,
    verify_output: bool,
    explain: bool,
    external_data: bool | None,
    fmt: str,
) -> None:
    """Compile MODEL with a recipe (or a pass list) and write the result to OUTPUT."""

    def body() -> int:
        from qcc.compiler import compile_model

        report = compile_model(
            model,
            output,
            passes=passes,
            recipe=recipe,
            defines=_parse_defines(defines),
            calib=calib,
            verify_each=verify_each,
            external_data=external_data,
            progress=_progress,
            verify=verify_output,
        )
        if fmt == "json":
            out.print_json(json.dumps(report.to_json()))
        else:
            _print_compile_report(report, explain)
        return ExitCode.OK

    _run(body, obj.debug, fmt)


def _progress(total: int, label: str) -> Callable[[int], None]:
    """A rich progress bar on stderr (samples/s, ETA); silent when stderr is not a terminal."""
    if not err.is_terminal:  # a disabled bar draws nothing: skip importing it (~0.05 s)
        return lambda n: None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task(label, total=total, rate="")
    bar.start()
    start = time.perf_counter()
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        rate = done / max(time.perf_counter() - start, 1e-9)
        bar.update(task, advance=n, rate=f"{rate:.1f} samples/s")
        if done >= total:
            bar.stop()

    return advance


def _fmt_stats(stats: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in stats.items())


def _where(loc) -> str:
    from qcc.recipe.resolve import display_path

    if loc is None:
        return ""
    if not loc.line:
        return f" ({loc.file})"
    return f" ({display_path(loc.file)}:{loc.line}:{loc.column})"


def _print_compile_report(report, explain: bool) -> None:
    """One line per pass (grep-friendly in build logs), then a summary line."""
    out.print(f"[bold]qcc compile[/] {escape(str(report.input))}: {report.nodes_before} nodes")
    n = len(report.passes)
    for i, (r, inv) in enumerate(zip(report.passes, report.pipeline, strict=True), 1):
        status = "[green]changed[/]" if r.changed else "no change"
        what = [_fmt_stats(r.stats)] if r.stats else []
        what += r.notes[:3] + ([f"(+{len(r.notes) - 3} more)"] if len(r.notes) > 3 else [])
        detail = f": {escape('; '.join(what))}" if what else ""
        out.print(
            f"  [{i}/{n}] [bold]{r.name}[/]{escape(_where(r.location))} {status}{detail} "
            f"[dim]({r.nodes_before} -> {r.nodes_after} nodes, {r.seconds * 1000:.1f} ms)[/]"
        )
        if explain:
            clauses = []
            if inv.on is not None:
                clauses.append(f"on {inv.on}")
            if inv.exclude is not None:
                clauses.append(f"exclude {inv.exclude}")
            if r.selected is not None:
                out.print(
                    f"      {escape(' '.join(clauses))} selected {len(r.selected)} nodes: "
                    + escape(", ".join(r.selected))
                )
            for sel, nodes in r.overridden:
                listing = escape(", ".join(nodes))
                out.print(f"      where {escape(sel)} matched {len(nodes)} nodes: {listing}")
            for note in r.notes[3:]:
                out.print(f"      {escape(note)}")
    out.print(
        f"wrote {escape(str(report.output))}: {report.nodes_before} -> {report.nodes_after} "
        f"nodes, {report.bytes_written / 1e6:.2f} MB"
    )
    v = report.verify
    if v is not None:
        exact = [r for r in v.results if r.exact]
        isl = v.island_mismatches
        runtime = "LiteRT" if report.output.suffix.lower() == ".tflite" else "onnxruntime"
        out.print(
            f"verified against {runtime} on {escape(v.data)}: {len(exact)}/{len(exact)} "
            "integer tensors bit-exact"
            + (f"; {len(isl)} tensor(s) after float islands differ" if isl else "")
        )


# --------------------------------------------------------------------------- check and fmt


@main.command("check")
@click.argument("recipe")
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also check the selectors against this model.",
)
@DEFINES
@FORMAT
@click.pass_obj
def check_cmd(
    obj: _Ctx, recipe: str, model_path: Path | None, defines: tuple[str, ...], fmt: str
) -> None:
    """Check RECIPE without compiling: syntax, passes, options, variables, selectors.

    Exit 0 when the recipe is valid, 1 when it has problems, 2 when a file cannot be read.
    """

    def body() -> int:
        from qcc.frontend import read_model
        from qcc.recipe.resolve import load_recipe

        model = None
        if model_path is not None:
            model = read_model(model_path)
            model.verify()
        r = load_recipe(recipe, defines=_parse_defines(defines), model=model, require_pipeline=None)
        if fmt == "json":
            data = {
                "ok": True,
                "diagnostics": [],
                "recipe": r.name,
                "pipeline": [
                    {"pass": inv.name, "spelled": inv.spelled(), "location": str(inv.location)}
                    for inv in r.pipeline
                ],
            }
            out.print_json(json.dumps(data))
        else:
            out.print(f"{escape(recipe)}: ok")
            out.print(escape(r.describe()), end="")
        return ExitCode.OK

    _run(body, obj.debug, fmt, recipe_exit=ExitCode.CHECK_FAILED)


@main.command("fmt")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if the file is not formatted.")
@click.option("--write", is_flag=True, help="Rewrite the file in place.")
@click.pass_obj
def fmt_cmd(obj: _Ctx, recipe: Path, check_only: bool, write: bool) -> None:
    """Print RECIPE in canonical form (comments kept)."""

    def body() -> int:
        from qcc.recipe.fmt import format_recipe
        from qcc.recipe.parser import parse_recipe

        try:
            text = recipe.read_text(encoding="utf-8")
        except OSError as e:
            raise QccError(f"cannot read the recipe: {e.strerror}", path=recipe) from None
        formatted = format_recipe(parse_recipe(text, str(recipe)))
        if check_only:
            if formatted != text:
                err.print(f"{escape(str(recipe))}: would reformat")
                return ExitCode.CHECK_FAILED
            return ExitCode.OK
        if write:
            if formatted != text:
                tmp = recipe.with_name(f".{recipe.name}.qcc-tmp")
                tmp.write_text(formatted, encoding="utf-8")
                os.replace(tmp, recipe)
            return ExitCode.OK
        out.print(escape(formatted), end="")
        return ExitCode.OK

    _run(body, obj.debug)


# --------------------------------------------------------------------------- passes


@main.command("passes")
@click.argument("name", required=False)
@FORMAT
@click.pass_obj
def passes_cmd(obj: _Ctx, name: str | None, fmt: str) -> None:
    """List every registered pass with its options, or show the help of NAME."""

    def body() -> int:
        from qcc.pipeline import all_passes, get_pass

        infos = [get_pass(name)] if name else all_passes()
        if fmt == "json":
            data = [
                {
                    "name": p.name,
                    "summary": p.summary,
                    "help": p.description,
                    "positional": p.positional.replace("_", "-") if p.positional else None,
                    "selectable": p.selectable,
                    "overridable": p.overridable,
                    "options": [
                        {
                            "name": o.flag,
                            "type": o.type_name(),
                            "default": _jsonable(o.default),
                            "help": o.help,
                        }
                        for o in p.options
                    ],
                }
                for p in infos
            ]
            out.print_json(json.dumps(data))
            return ExitCode.OK
        if name:
            p = infos[0]
            out.print(f"[bold]{p.name}[/]\n")
            out.print(escape(p.description) + "\n")
            for o in p.options:
                out.print(
                    f"  [cyan]{o.flag}[/]: {escape(o.type_name())} = {_jsonable(o.default)!r}"
                )
                if o.help:
                    out.print(f"      {escape(o.help)}")
            return ExitCode.OK
        table = Table(title="qcc passes")
        table.add_column("pass", style="bold")
        table.add_column("options")
        table.add_column("what it does")
        for p in infos:
            opts = "\n".join(
                f"{o.flag}: {o.type_name()} = {_jsonable(o.default)!r}" for o in p.options
            )
            table.add_row(p.name, escape(opts or "-"), escape(p.summary))
        out.print(table)
        return ExitCode.OK

    _run(body, obj.debug, fmt)


def _jsonable(v: Any) -> Any:
    import enum

    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


# --------------------------------------------------------------------------- inspect


@main.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@FORMAT
@click.option("--all-unknown", is_flag=True, help="List every value of unknown shape.")
@click.pass_obj
def inspect_cmd(obj: _Ctx, model: Path, fmt: str, all_unknown: bool) -> None:
    """Show MODEL's inputs, outputs, opsets, op histogram and unresolved shapes."""

    def body() -> int:
        from qcc.frontend import read_model

        m = read_model(model)
        m.verify()
        g = m.graph
        report = m.opaque["shape_report"]
        ops = Counter(
            (f"{n.domain}::{n.op_type}" if n.domain else n.op_type) for n in g.all_nodes()
        )
        info = {
            "path": str(model),
            "ir_version": m.ir_version,
            "opsets": {(d or "ai.onnx"): v for d, v in m.opset_imports.items()},
            "producer": f"{m.producer_name} {m.producer_version}".strip(),
            "inputs": [_vinfo(v) for v in g.inputs if v.name not in g.initializers],
            "outputs": [_vinfo(v) for v in g.outputs],
            "nodes": len(g),
            "nodes_with_subgraphs": sum(1 for _ in g.all_nodes()) - len(g),
            "constants": len(g.initializers),
            "constant_bytes": int(sum(v.const.nbytes for v in g.initializers.values())),
            "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
            "shape_inference_error": report.error,
            "unknown_shapes": [{"value": v, "node": n} for v, n in report.unknown],
        }
        if fmt == "json":
            out.print_json(json.dumps(info))
            return ExitCode.OK
        out.print(f"[bold]{escape(str(model))}[/]")
        out.print(
            f"  IR version {m.ir_version}, opsets "
            + ", ".join(f"{d} {v}" for d, v in info["opsets"].items())
            + (f", producer {escape(info['producer'])}" if info["producer"] else "")
        )
        out.print(
            f"  {info['nodes']} nodes, {info['constants']} constants "
            f"({info['constant_bytes'] / 1e6:.2f} MB)"
        )
        io = Table(title="inputs and outputs", title_justify="left")
        io.add_column("kind")
        io.add_column("name")
        io.add_column("type")
        for kind, items in (("input", info["inputs"]), ("output", info["outputs"])):
            for v in items:
                io.add_row(kind, escape(v["name"]), escape(v["type"]))
        out.print(io)
        hist = Table(title="operators", title_justify="left")
        hist.add_column("op")
        hist.add_column("count", justify="right")
        for op, n in info["ops"].items():
            hist.add_row(escape(op), str(n))
        out.print(hist)
        if report.error:
            out.print(f"[yellow]shape inference failed:[/] {escape(report.error)}")
        if report.unknown:
            out.print(f"[yellow]shape inference could not resolve {len(report.unknown)} values[/]")
            shown = report.unknown if all_unknown else report.unknown[:15]
            for v, n in shown:
                out.print(f"  {escape(v)}  (output of {escape(n)})")
            if len(shown) < len(report.unknown):
                out.print(f"  ... {len(report.unknown) - len(shown)} more (--all-unknown)")
        else:
            out.print("shape inference resolved every value")
        return ExitCode.OK

    _run(body, obj.debug, fmt)


PROFILE = click.option(
    "--profile",
    default="ort-x86",
    show_default=True,
    help="Arithmetic to emulate (ort-x86: onnxruntime CPU on x86-64; onnx-ref: the ONNX spec; "
    "for a .tflite: tflite-xnnpack, LiteRT's default resolver, or tflite-ref, BUILTIN_REF; "
    "default tflite-xnnpack).",
)


@main.command("verify")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--data", metavar="PATH", help="Inputs (.npy/.npz/folder, as --calib); default: random."
)
@click.option("--samples", type=int, help="Use this many samples (seeded choice; random: 4).")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for sampling/random data."
)
@PROFILE
@click.option(
    "--tensors",
    type=click.Choice(["outputs", "all"]),
    default="outputs",
    show_default=True,
    help="Compare the graph outputs only, or every quantized tensor too.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify_cmd(
    obj: _Ctx,
    model: Path,
    data: str | None,
    samples: int | None,
    seed: int,
    profile: str,
    tensors: str,
    as_json: bool,
) -> None:
    """Run MODEL in onnxruntime and in qcc's interpreter and compare them bit for bit.

    Exit 0 when every integer tensor matches, 1 on any integer mismatch, 2 on bad input.
    Mismatches in float islands (float ops whose onnxruntime arithmetic qcc cannot
    reproduce) are listed separately and do not fail the check.
    """

    profile = _default_profile(model, profile)

    def body() -> int:
        from qcc.verify import verify_file

        report = verify_file(
            model, data=data, samples=samples, seed=seed, profile=profile, tensors=tensors
        )
        if as_json:
            out.print_json(json.dumps(report.to_json()))
        else:
            print_verify_report(report)
        return ExitCode.OK if report.ok else ExitCode.CHECK_FAILED

    _run(body, obj.debug, "json" if as_json else "text")


def _default_profile(model: Path, profile: str) -> str:
    """A .tflite model defaults to ``tflite-xnnpack`` when ``--profile`` was not given."""
    ctx = click.get_current_context()
    given = ctx.get_parameter_source("profile") != click.core.ParameterSource.DEFAULT
    if model.suffix.lower() == ".tflite" and not given:
        return "tflite-xnnpack"
    return profile


def print_verify_report(report) -> None:
    """The rich table of a :class:`qcc.verify.VerifyReport`."""
    t = Table(
        title=f"{escape(report.model)}: interpreter ({report.profile}) vs "
        f"{getattr(report, 'runtime', 'onnxruntime')}, "
        f"{report.samples} sample(s) of {escape(report.data)}",
        title_justify="left",
    )
    t.add_column("tensor", overflow="fold")
    for col, just in (
        ("kind", "left"),
        ("elements", "right"),
        ("mismatches", "right"),
        ("max diff", "right"),
        ("first mismatch", "left"),
    ):
        t.add_column(col, justify=just)
    rows = report.results
    shown = [r for r in rows if r.mismatches or r.kind == "output"]
    if len(rows) <= 40:
        shown = rows
    for r in shown:
        kind = ("integer" if r.integer else "float") if r.exact else "float island"
        if r.kind == "output":
            kind += " output"
        diff = (
            ""
            if not r.mismatches
            else (f"{r.max_diff:g} LSB" if r.integer else f"{r.max_diff:.3g}")
        )
        first = "" if r.first is None else f"sample {r.first[0]} at {list(r.first[1])}"
        style = "red" if r.mismatches and r.exact else ("yellow" if r.mismatches else "")
        t.add_row(
            escape(r.name),
            kind,
            str(r.elements),
            str(r.mismatches),
            diff,
            escape(first),
            style=style or None,
        )
    out.print(t)
    if len(shown) < len(rows):
        out.print(f"{len(rows) - len(shown)} more tensors, all bit-exact")
    exact = [r for r in rows if r.exact]
    nbad = len(report.integer_mismatches)
    out.print(
        f"integer tensors: {len(exact) - nbad}/{len(exact)} bit-exact"
        + (f"; first mismatch in {escape(report.integer_mismatches[0].name)}" if nbad else "")
    )
    if report.islands:
        isl = report.island_mismatches
        out.print(
            f"float islands: {len(report.islands)} node(s) run by float kernels "
            f"{getattr(report, 'runtime', 'onnxruntime')} computes in its own order "
            f"(e.g. {escape(report.islands[0])}); "
            f"{len(isl)} tensor(s) after them differ"
            + (" (reported, not a failure)" if isl else "")
        )
    for d in getattr(report, "delegation_differs", [])[:5]:
        out.print(f"[yellow]delegation differs:[/] {escape(d)}")
    if report.ok:
        out.print("[green]bit-exact[/]")
    else:
        out.print("[bold red]MISMATCH[/]")


@main.command("run")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--data", metavar="PATH", required=True, help="Inputs (.npy/.npz/folder, as --calib)."
)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output .npz.")
@PROFILE
@click.pass_obj
def run_cmd(obj: _Ctx, model: Path, data: str, output: Path, profile: str) -> None:
    """Execute MODEL in qcc's interpreter alone (no onnxruntime) and save its outputs.

    Each graph output is stacked over the samples ([N, *output_shape]) and saved under its name.
    """

    profile = _default_profile(model, profile)

    def body() -> int:
        if model.suffix.lower() == ".tflite":
            return _run_tflite(model, data, output, profile)
        from qcc.frontend import read_model
        from qcc.interp import Interpreter
        from qcc.interp.profiles import get_profile
        from qcc.quant.data import open_calibration

        get_profile(profile)
        _check_npz_output(output)
        m = read_model(model)
        cal = open_calibration(data, m)
        it = Interpreter(m, profile=profile)
        names = [v.name for v in it.graph.outputs]
        feeds = (cal.get(i) for i in range(cal.count))
        return _run_samples(it.run, names, feeds, cal.count, output)

    _run(body, obj.debug)


def _run_tflite(model: Path, data: str, output: Path, profile: str) -> int:
    """``qcc run`` of a .tflite: the TFLite interpreter alone (LiteRT is never loaded)."""
    from qcc.interp.tflite import TFLiteInterpreter, read
    from qcc.interp.tflite.verify import load_feeds

    _check_npz_output(output)
    m = read(model)
    it = TFLiteInterpreter(m, profile=profile)
    feeds = load_feeds(m, data, samples=None, seed=0)
    return _run_samples(it.run, [t.name for t in it.outputs], iter(feeds), len(feeds), output)


def _check_npz_output(output: Path) -> None:
    if output.suffix.lower() != ".npz":
        raise QccError("qcc run writes .npz files: give -o OUT.npz", path=output)
    if str(output.parent) and not output.parent.is_dir():
        raise QccError(f"output directory {str(output.parent)!r} does not exist", path=output)


def _run_samples(run, names: list[str], feeds, count: int, output: Path) -> int:
    """Run every sample, stack each output over the samples ([N, *shape]) and write OUTPUT.npz
    atomically."""
    import numpy as np

    from qcc.frontend.writer import save_npz

    stacks: dict[str, list] = {n: [] for n in names}
    advance = _progress(count, "run")
    for feed in feeds:
        res = run(feed)
        for n in names:
            stacks[n].append(res[n])
        advance(1)
    save_npz(output, {n: np.stack(v) for n, v in stacks.items()})
    out.print(f"wrote {escape(str(output))}: {len(names)} output(s) x {count} sample(s)")
    return ExitCode.OK


def _vinfo(v) -> dict[str, str]:
    return {"name": v.name, "type": v.type_str()}


if __name__ == "__main__":  # pragma: no cover
    main()
