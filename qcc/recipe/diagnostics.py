"""Recipe diagnostics: ``file:line:col: error[CODE]: message``, the source line and a caret.

Every problem the recipe front end finds is a :class:`Diagnostic` with a stable code (listed in
:data:`CODES` and in docs/recipes.md). Diagnostics are collected so that one run reports as
many problems as it can, then raised together as a :class:`RecipeError`, which renders as text
or as JSON (``--format json``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from qcc.errors import QccError
from qcc.recipe.ast import Span

CODES: dict[str, str] = {
    "E100": "syntax error: unexpected token",
    "E101": "unterminated string",
    "E102": "unexpected character",
    "E103": "unexpected end of file (a block or list is not closed)",
    "E200": "included file not found",
    "E201": "include cycle",
    "E202": "defined twice",
    "E203": "cannot read the recipe file",
    "E210": "undefined variable",
    "E211": "-D names a variable the recipe does not define",
    "E212": "-D value is not a valid recipe value, or has the wrong type",
    "E220": "use names an unknown pipeline",
    "E221": "pipelines use each other in a cycle",
    "E222": "the recipe has no main pipeline",
    "E300": "unknown pass",
    "E301": "unknown option",
    "E302": "wrong option value or type",
    "E303": "option given twice",
    "E304": "the pass takes no positional argument",
    "E305": "the pass does not take a node selection (on/exclude)",
    "E306": "the pass does not take per-selector overrides (where)",
    "E400": "selector matches nothing",
    "E401": "unknown selector, or wrong selector arguments",
    "E402": "invalid regular expression",
    "E500": "bad scheme",
    "E501": "unknown observer or bad observer parameter",
    "E502": "unknown scheme",
    "E600": "bad calibration setting",
    "E601": "calibration data not found",
    "E700": "bad target",
}


@dataclasses.dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None
    help: str | None = None
    severity: str = "error"

    def to_json(self) -> dict:
        d = {"severity": self.severity, "code": self.code, "message": self.message}
        if self.span is not None:
            d.update(
                file=self.span.file,
                line=self.span.line,
                column=self.span.column,
                end_line=self.span.end_line,
                end_column=self.span.end_column,
            )
        if self.help:
            d["help"] = self.help
        return d


class Sources:
    """File texts by path, to show the offending line under each diagnostic."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, path: str, text: str) -> None:
        self.texts[path] = text

    def line(self, path: str, line: int) -> str | None:
        text = self.texts.get(path)
        if text is None or line < 1:
            return None
        lines = text.splitlines()
        return lines[line - 1] if line <= len(lines) else ""


def render(diags: Sequence[Diagnostic], sources: Sources | None = None) -> str:
    out: list[str] = []
    for d in diags:
        if d.span is None or d.span.line == 0:
            out.append(f"{d.severity}[{d.code}]: {d.message}")
        else:
            s = d.span
            out.append(f"{s.file}:{s.line}:{s.column}: {d.severity}[{d.code}]: {d.message}")
            src = sources.line(s.file, s.line) if sources else None
            if src is not None:
                num = str(s.line)
                pad = " " * len(num)
                text = src.replace("\t", " ")
                width = max(
                    1,
                    (s.end_column - s.column) if s.end_line == s.line else len(text) - s.column + 1,
                )
                out.append(f"{num} | {text}")
                out.append(f"{pad} | {' ' * (s.column - 1)}{'^' * width}")
        if d.help:
            out.append(f"  = help: {d.help}")
    return "\n".join(out)


class RecipeError(QccError):
    """One or more recipe diagnostics (exit 2 from compile; ``qcc check`` exits 1)."""

    def __init__(self, diagnostics: Sequence[Diagnostic], sources: Sources | None = None) -> None:
        self.diagnostics = list(diagnostics)
        self.sources = sources
        first = self.diagnostics[0].message if self.diagnostics else "recipe error"
        super().__init__(first)

    def render(self) -> str:
        n = len(self.diagnostics)
        tail = f"\n{n} errors in the recipe" if n > 1 else ""
        return render(self.diagnostics, self.sources) + tail

    def to_json(self) -> str:
        return json.dumps([d.to_json() for d in self.diagnostics], indent=2)
