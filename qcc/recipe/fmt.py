"""``qcc fmt``: print a recipe in canonical form, keeping its comments.

Canonical form: two-space indentation; one statement per line; a blank line before every
block statement (calibration, pipeline, target) and between statements of different kinds;
arguments as ``a, b, key = value`` (in source order); settings as ``key value`` (``key =
value`` in target blocks); short blocks without comments on one line; strings with ``\\`` and
``"`` escaped; numbers in Python's shortest round-trip form; selectors with the fewest
parentheses.

Each comment stays attached to the item whose line it precedes or ends. Formatting is
idempotent and the output parses to the same AST (spans aside), which the tests check on
every golden recipe and on fuzzed ones.
"""

from __future__ import annotations

from qcc.recipe import ast as A
from qcc.select import Between, NamePattern, Selector, _Binary

WIDTH = 100


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def value(v: A.Value | A.Block) -> str:
    if isinstance(v, A.Int):
        return str(v.value)
    if isinstance(v, A.Float):
        text = repr(v.value)
        return text if any(c in text for c in ".e") else text + ".0"
    if isinstance(v, A.Fraction):
        return f"{v.num}/{v.den}"
    if isinstance(v, A.Str):
        return quote(v.value)
    if isinstance(v, A.Ident):
        return v.name
    if isinstance(v, A.Size):
        return f"{v.width}x{v.height}"
    if isinstance(v, A.Var):
        return f"${v.name}"
    if isinstance(v, A.List):
        return "[" + ", ".join(value(x) for x in v.items) + "]"
    if isinstance(v, A.Call):
        return f"{v.name}({args(v.args)})"
    if isinstance(v, A.Block):
        return inline_block(v, equals=False)
    raise TypeError(f"not a recipe value: {v!r}")


def args(items: tuple[A.Arg, ...]) -> str:
    return ", ".join(
        f"{a.name} = {value(a.value)}" if isinstance(a, A.KwArg) else value(a) for a in items
    )


def selector(s: Selector) -> str:
    """Selectors print themselves; patterns are re-quoted with this module's escaping."""
    if isinstance(s, NamePattern):
        return f"name({'~' if s.regex else ''}{quote(s.pattern)})"
    if isinstance(s, Between):
        return (
            "between(["
            + ", ".join(quote(x) for x in s.starts)
            + "], ["
            + ", ".join(quote(x) for x in s.ends)
            + "])"
        )
    if isinstance(s, _Binary):
        from qcc.select import _PREC

        def side(x: Selector, right: bool) -> str:
            text = selector(x)
            if isinstance(x, _Binary):
                p, q = _PREC[type(x)], _PREC[type(s)]
                if p < q or (right and p == q):
                    return f"({text})"
            return text

        return f"{side(s.left, False)} {s.symbol} {side(s.right, True)}"
    return str(s)


def setting(s: A.Setting, equals: bool) -> str:
    if s.value is None:
        return s.key
    sep = " = " if equals else " "
    v = inline_block(s.value, equals) if isinstance(s.value, A.Block) else value(s.value)
    return f"{s.key}{sep}{v}"


def inline_block(b: A.Block, equals: bool) -> str:
    if not b.settings:
        return "{ }"
    return "{ " + ", ".join(setting(s, equals) for s in b.settings) + " }"


class _Printer:
    def __init__(self, comments: tuple[A.Comment, ...]) -> None:
        self.comments = sorted(comments, key=lambda c: (c.line, c.column))
        self.i = 0
        self.lines: list[str] = []

    def leading(self, line: int, indent: str) -> None:
        """Emit the comments that come before source line ``line``, keeping one blank line
        where the source had a gap after a comment (a file's header block, say)."""
        while self.i < len(self.comments) and self.comments[self.i].line < line:
            c = self.comments[self.i]
            self.lines.append(indent + c.text)
            self.i += 1
            nxt = self.comments[self.i].line if self.i < len(self.comments) else line
            if min(nxt, line) > c.line + 1 and line < 10**9:
                self.lines.append("")

    def emit(self, text: str, end_line: int) -> None:
        """Emit ``text``; a comment ending the source line ``end_line`` stays on it."""
        trailing = []
        while self.i < len(self.comments) and self.comments[self.i].line == end_line:
            trailing.append(self.comments[self.i].text)
            self.i += 1
        self.lines.append(text + ("  " + " ".join(trailing) if trailing else ""))

    def has_comments_within(self, span: A.Span) -> bool:
        return (
            any(span.line <= c.line <= span.end_line for c in self.comments[self.i :])
            and span.line != span.end_line
        )

    def block(self, header: str, b: A.Block, indent: str, equals: bool) -> None:
        text = f"{indent}{header}{inline_block(b, equals)}"
        if not self.has_comments_within(b.span) and len(text) <= WIDTH:
            self.emit(text, b.span.end_line)
            return
        self.emit(f"{indent}{header}{{", b.span.line)
        inner = indent + "  "
        for s in b.settings:
            self.leading(s.span.line, inner)
            if isinstance(s.value, A.Block):
                sep = " = " if equals else " "
                self.block(f"{s.key}{sep}", s.value, inner, equals)
            else:
                self.emit(inner + setting(s, equals), s.span.end_line)
        self.leading(b.span.end_line, inner)
        self.emit(f"{indent}}}", b.span.end_line)

    def step(self, st: A.Step | A.Use, indent: str) -> None:
        self.leading(st.span.line, indent)
        if isinstance(st, A.Use):
            self.emit(f"{indent}use {st.name}", st.span.end_line)
            return
        head = st.name + (f" {args(st.args)}" if st.args else "")
        clauses = []
        if st.on is not None:
            clauses.append(f"on {selector(st.on)}")
        if st.exclude is not None:
            clauses.append(f"exclude {selector(st.exclude)}")
        one_line = " ".join([head, *clauses])
        more = indent + "    "
        if len(indent + one_line) <= WIDTH:
            first_end = st.span.end_line if not st.where else st.where[0].span.line - 1
            self.emit(indent + one_line, max(first_end, st.span.line))
        else:
            self.emit(indent + head, st.span.line)
            last_end = st.span.end_line if not st.where else -1
            for i, c in enumerate(clauses):
                self.emit(more + c, last_end if i == len(clauses) - 1 else -1)
        for w in st.where:
            self.leading(w.span.line, more)
            self.emit(f"{more}where {selector(w.selector)} {{ {args(w.args)} }}", w.span.end_line)


def format_recipe(rf: A.RecipeFile) -> str:
    p = _Printer(rf.comments)
    prev_kind: type | None = None
    for st in rf.statements:
        kind = type(st)
        blocky = isinstance(st, A.Calibration | A.Pipeline | A.Target)
        if p.lines and (blocky or kind is not prev_kind):
            p.lines.append("")
        p.leading(st.span.line, "")
        prev_kind = kind
        if isinstance(st, A.RecipeDecl):
            p.emit(f"recipe {st.name}", st.span.end_line)
        elif isinstance(st, A.Include):
            p.emit(f"include {quote(st.path)}", st.span.end_line)
        elif isinstance(st, A.Let):
            p.emit(f"let {st.name} = {value(st.value)}", st.span.end_line)
        elif isinstance(st, A.Scheme):
            p.emit(f"scheme {st.name} = " + " ".join(value(w) for w in st.words), st.span.end_line)
        elif isinstance(st, A.Calibration):
            p.block("calibration ", st.block, "", equals=False)
        elif isinstance(st, A.Target):
            if st.block is None:
                p.emit(f"target {st.backend}", st.span.end_line)
            else:
                p.block(f"target {st.backend} ", st.block, "", equals=True)
        elif isinstance(st, A.Pipeline):
            header = "pipeline " + (f"{st.name} " if st.name else "")
            first = st.steps[0].span.line if st.steps else st.span.end_line
            p.emit(header + "{", st.span.line if first > st.span.line else -1)
            for step in st.steps:
                p.step(step, "  ")
            p.leading(st.span.end_line, "  ")
            p.emit("}", st.span.end_line)
    p.leading(10**9, "")
    while p.lines and p.lines[-1] == "":
        p.lines.pop()
    return "\n".join(p.lines) + "\n" if p.lines else ""
