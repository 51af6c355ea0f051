"""The ``qcc`` command line (click for parsing, rich for output).

Subcommands: ``compile``, ``passes``, ``inspect``. Exit status is the same everywhere:
0 success, 1 a check failed, 2 bad input or internal error (130 when interrupted). Errors are
one short message on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
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


def _run(fn: Callable[[], int | None], debug: bool) -> None:
    """Run a command body, mapping every failure to a one-screen message and exit code."""
    try:
        code = fn() or ExitCode.OK
    except QccError as e:
        err.print(f"[bold red]error:[/] {escape(e.render())}")
        if debug:
            err.print(escape("".join(traceback.format_exception(e))))
        code = e.exit_code
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
@click.option("-r", "--recipe", help="Recipe file (or the name of a built-in recipe).")
@click.option(
    "--passes",
    "passes",
    metavar="LIST",
    help="Comma-separated passes to run in order, e.g. 'fold-constants,fold-batchnorm' "
    "(options: 'fold-constants{max-bytes=1024}').",
)
@click.option("--verify-each", is_flag=True, help="Verify the IR after every pass.")
@click.option(
    "--external-data/--no-external-data",
    default=None,
    help="Write tensors to OUTPUT.data (default: only above 2 GB).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def compile_cmd(
    obj: _Ctx,
    model: Path,
    output: Path,
    recipe: str | None,
    passes: str | None,
    verify_each: bool,
    external_data: bool | None,
    as_json: bool,
) -> None:
    """Compile MODEL through a pipeline of passes and write the result to OUTPUT."""

    def body() -> int:
        from qcc.compiler import compile_model

        report = compile_model(
            model,
            output,
            passes=passes,
            recipe=recipe,
            verify_each=verify_each,
            external_data=external_data,
        )
        if as_json:
            out.print_json(json.dumps(report.to_json()))
        else:
            _print_compile_report(report)
        return ExitCode.OK

    _run(body, obj.debug)


def _fmt_stats(stats: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in stats.items())


def _print_compile_report(report) -> None:
    """One line per pass (grep-friendly in build logs), then a summary line."""
    out.print(f"[bold]qcc compile[/] {escape(str(report.input))}: {report.nodes_before} nodes")
    n = len(report.passes)
    for i, r in enumerate(report.passes, 1):
        where = f" ({r.location})" if r.location else ""
        status = "[green]changed[/]" if r.changed else "no change"
        what = [_fmt_stats(r.stats)] if r.stats else []
        what += r.notes[:3] + ([f"(+{len(r.notes) - 3} more)"] if len(r.notes) > 3 else [])
        detail = f": {escape('; '.join(what))}" if what else ""
        out.print(
            f"  [{i}/{n}] [bold]{r.name}[/]{escape(where)} {status}{detail} "
            f"[dim]({r.nodes_before} -> {r.nodes_after} nodes, {r.seconds * 1000:.1f} ms)[/]"
        )
    out.print(
        f"wrote {escape(str(report.output))}: {report.nodes_before} -> {report.nodes_after} "
        f"nodes, {report.bytes_written / 1e6:.2f} MB"
    )


# --------------------------------------------------------------------------- passes


@main.command("passes")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def passes_cmd(obj: _Ctx, name: str | None, as_json: bool) -> None:
    """List every registered pass with its options, or show the help of NAME."""

    def body() -> int:
        from qcc.pipeline import all_passes, get_pass

        infos = [get_pass(name)] if name else all_passes()
        if as_json:
            data = [
                {
                    "name": p.name,
                    "summary": p.summary,
                    "help": p.description,
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

    _run(body, obj.debug)


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
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--all-unknown", is_flag=True, help="List every value of unknown shape.")
@click.pass_obj
def inspect_cmd(obj: _Ctx, model: Path, as_json: bool, all_unknown: bool) -> None:
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
        if as_json:
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

    _run(body, obj.debug)


def _vinfo(v) -> dict[str, str]:
    return {"name": v.name, "type": v.type_str()}


if __name__ == "__main__":  # pragma: no cover
    main()
