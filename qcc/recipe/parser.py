"""Parse recipe text into the located AST (:mod:`qcc.recipe.ast`).

The grammar is ``recipe.lark`` (LALR, ``strict=True``, positions propagated). A post-lexer
normalizes statement separators (see the grammar's header comment). Syntax errors become
diagnostics; the friendliest messages come from a table of bad examples matched with Lark's
``match_examples`` (:data:`SYNTAX_EXAMPLES`, which a test also runs). Selector functions are
built here into :mod:`qcc.select` objects; a selector that cannot be built (unknown function,
bad regex) becomes a :class:`BadSelector` that the resolver reports, so parsing never stops at
the first semantic problem.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterator

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from qcc import select
from qcc.recipe import ast as A
from qcc.recipe.diagnostics import Diagnostic, RecipeError, Sources

_LITERAL_TYPES = {"NAME", "STRING", "INT", "FLOAT", "SIZE", "VAR"}
_CONTINUATION_WORDS = {"on", "exclude", "where"}
_CONTINUATION_OPS = {"|", "&", "-", "}", ","}


class _Separators:
    """Post-lexer: exactly one ``_NL`` between items (see recipe.lark)."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        pending: Token | None = None
        prev: str | None = None  # value of the last punctuation token emitted, or "" for others
        for tok in stream:
            if tok.type == "_NL":
                if depth or prev is None or prev in ("{", ","):
                    continue
                pending = pending or tok
                continue
            literal = tok.type in _LITERAL_TYPES
            if pending is not None:
                continues = (not literal and tok.value in _CONTINUATION_OPS) or (
                    not literal and tok.value in _CONTINUATION_WORDS
                )
                if not continues:
                    yield pending
                pending = None
            if not literal and tok.value in ("(", "["):
                depth += 1
            elif not literal and tok.value in (")", "]"):
                depth = max(0, depth - 1)
            prev = "" if literal else tok.value
            yield tok


@functools.cache
def _lark() -> Lark:
    return Lark.open(
        "recipe.lark",
        rel_to=__file__,
        parser="lalr",
        lexer="basic",  # the post-lexer looks one token ahead; a contextual lexer cannot
        strict=True,
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_Separators(),
        start=["start", "value"],
        # the grammar analysis is cached in the temp directory, keyed by grammar and options:
        # a second compile loads the parser in ~0.05 s instead of ~1 s
        cache=True,
    )


# --------------------------------------------------------------------------- AST building


class BadSelector(select.Selector):
    """A selector the parser could not build; the resolver reports ``problem``."""

    def __init__(self, text: str, code: str, problem: str, help: str | None = None) -> None:
        self.text = text
        self.code = code
        self.problem = problem
        self.help = help

    def _ids(self, graph) -> set[int]:
        return set()

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BadSelector) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


SELECTOR_FUNCTIONS = {
    "op": "op(Type, ...): nodes of these op types",
    "name": 'name("glob", ~"regex", ...): nodes whose name matches',
    "between": 'between(["start", ...], ["end", ...]): the subgraph between tensors or nodes',
    "inputs": "inputs(): nodes that read a graph input",
    "outputs": "outputs(): nodes that write a graph output",
}


def _unquote(s: str) -> str:
    """The text of a string token. Only ``\\"`` and ``\\\\`` are escapes; any other backslash is
    kept, so regular expressions read as written (``~"conv\\d+"``)."""
    return re.sub(r'\\(["\\])', r"\1", s[1:-1])


@v_args(meta=True)
class _Build(Transformer):
    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    # -- spans
    def _span(self, meta) -> A.Span:
        if getattr(meta, "empty", True):
            return A.NO_SPAN
        return A.Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> A.Span:
        return A.Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    # -- statements
    def start(self, meta, children):
        return tuple(children)

    def recipe_decl(self, meta, c):
        return A.RecipeDecl(str(c[0]), span=self._span(meta))

    def include(self, meta, c):
        return A.Include(_unquote(c[0]), span=self._span(meta))

    def let(self, meta, c):
        return A.Let(str(c[0]), c[1], span=self._span(meta))

    def calibration(self, meta, c):
        return A.Calibration(c[0], span=self._span(meta))

    def target(self, meta, c):
        return A.Target(str(c[0]), c[1] if len(c) > 1 else None, span=self._span(meta))

    def scheme(self, meta, c):
        return A.Scheme(str(c[0]), tuple(c[1:]), span=self._span(meta))

    def word(self, meta, c):
        return A.Ident(str(c[0]), span=self._span(meta))

    def pipeline(self, meta, c):
        name = None
        if c and isinstance(c[0], Token):
            name, c = str(c[0]), c[1:]
        return A.Pipeline(name, tuple(x for x in c if x is not None), span=self._span(meta))

    def use(self, meta, c):
        return A.Use(str(c[0]), span=self._span(meta))

    def step(self, meta, c):
        name = str(c[0])
        args: tuple = ()
        on = exclude = None
        wheres = []
        for item in c[1:]:
            if item is None:
                continue
            if isinstance(item, tuple) and item and item[0] == "on":
                on = item[1] if on is None else select.Intersect(on, item[1])
            elif isinstance(item, tuple) and item and item[0] == "exclude":
                exclude = item[1] if exclude is None else select.Union(exclude, item[1])
            elif isinstance(item, A.Where):
                wheres.append(item)
            else:
                args = item
        return A.Step(name, args, on, exclude, tuple(wheres), span=self._span(meta))

    def args(self, meta, c):
        return tuple(c)

    def kwarg(self, meta, c):
        return A.KwArg(str(c[0]), c[1], span=self._span(meta))

    def on(self, meta, c):
        return ("on", c[0])

    def exclude(self, meta, c):
        return ("exclude", c[0])

    def where(self, meta, c):
        return A.Where(c[0], c[1] if len(c) > 1 and c[1] else (), span=self._span(meta))

    def block(self, meta, c):
        return A.Block(tuple(c), span=self._span(meta))

    def setting(self, meta, c):
        return A.Setting(str(c[0]), c[1] if len(c) > 1 else None, False, span=self._span(meta))

    def setting_eq(self, meta, c):
        return A.Setting(str(c[0]), c[1], True, span=self._span(meta))

    # -- values
    def int(self, meta, c):
        return A.Int(int(c[0]), span=self._span(meta))

    def float(self, meta, c):
        return A.Float(float(c[0]), span=self._span(meta))

    def fraction(self, meta, c):
        return A.Fraction(int(c[0]), int(c[1]), span=self._span(meta))

    def string(self, meta, c):
        return A.Str(_unquote(c[0]), span=self._span(meta))

    def size(self, meta, c):
        w, h = str(c[0]).split("x")
        return A.Size(int(w), int(h), span=self._span(meta))

    def var(self, meta, c):
        return A.Var(str(c[0])[1:], span=self._span(meta))

    def ident(self, meta, c):
        return A.Ident(str(c[0]), span=self._span(meta))

    def list(self, meta, c):
        return A.List(tuple(x for x in c if x is not None), span=self._span(meta))

    def call(self, meta, c):
        return A.Call(str(c[0]), c[1] or (), span=self._span(meta))

    # -- selectors
    def _binary(self, cls, meta, c):
        sel = cls(c[0], c[1])
        object.__setattr__(sel, "where", self._span(meta))
        return sel

    def union(self, meta, c):
        return self._binary(select.Union, meta, c)

    def intersect(self, meta, c):
        return self._binary(select.Intersect, meta, c)

    def difference(self, meta, c):
        return self._binary(select.Difference, meta, c)

    def sel_glob(self, meta, c):
        return ("glob", _unquote(c[0]))

    def sel_regex(self, meta, c):
        return ("regex", _unquote(c[0]))

    def sel_ident(self, meta, c):
        return ("ident", str(c[0]))

    def sel_list(self, meta, c):
        return ("list", tuple(_unquote(x) for x in c if x is not None))

    def sel_word(self, meta, c):
        word = str(c[0])
        sel: select.Selector
        if word == "all":
            sel = select.All()
        else:
            close = difflib.get_close_matches(word, ["all", *SELECTOR_FUNCTIONS], n=1)
            sel = BadSelector(
                word,
                "E401",
                f"unknown selector {word!r}",
                f"did you mean {close[0]!r}?" if close else _selector_help(),
            )
        object.__setattr__(sel, "where", self._span(meta))
        return sel

    def sel_call(self, meta, c):
        fn = str(c[0])
        args = [a for a in c[1:] if a is not None]
        text = f"{fn}({', '.join(_sel_arg_text(k, v) for k, v in args)})"
        sel = self._selector(fn, args, text)
        object.__setattr__(sel, "where", self._span(meta))
        return sel

    def _selector(self, fn: str, args: list, text: str) -> select.Selector:
        kinds = [k for k, _ in args]
        if fn == "op":
            if not args or any(k not in ("ident", "glob") for k in kinds):
                return BadSelector(text, "E401", "op() takes op type names: op(Conv, Gemm)")
            return select.OpType(tuple(v for _, v in args))
        if fn == "name":
            if not args or any(k not in ("glob", "regex") for k in kinds):
                return BadSelector(
                    text, "E401", 'name() takes quoted patterns: name("glob*") or name(~"regex")'
                )
            parts: list[select.Selector] = []
            for k, v in args:
                if k == "regex":
                    try:
                        re.compile(v)
                    except re.error as e:
                        return BadSelector(text, "E402", f"invalid regular expression {v!r}: {e}")
                parts.append(select.NamePattern(v, regex=(k == "regex")))
            return functools.reduce(select.Union, parts)
        if fn in ("inputs", "outputs"):
            if args:
                return BadSelector(text, "E401", f"{fn}() takes no arguments")
            return select.Boundary(fn)
        if fn == "between":
            if kinds != ["list", "list"] or not args[0][1] or not args[1][1]:
                return BadSelector(
                    text,
                    "E401",
                    'between() takes two non-empty lists of names: between(["in"], ["out"])',
                )
            return select.Between(args[0][1], args[1][1])
        close = difflib.get_close_matches(fn, list(SELECTOR_FUNCTIONS), n=1)
        return BadSelector(
            text,
            "E401",
            f"unknown selector function {fn!r}",
            f"did you mean {close[0]!r}?" if close else _selector_help(),
        )


def _sel_arg_text(kind: str, v) -> str:
    """A selector argument as written (so an unbuildable selector still formats back)."""

    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    if kind == "glob":
        return q(v)
    if kind == "regex":
        return "~" + q(v)
    if kind == "list":
        return "[" + ", ".join(q(x) for x in v) + "]"
    return v


def _selector_help() -> str:
    return "selectors are " + "; ".join([*SELECTOR_FUNCTIONS.values(), "all"])


# --------------------------------------------------------------------------- syntax errors

# Friendly messages for common mistakes: label -> examples that produce the same parser error
# (Lark's match_examples). tests/recipe/test_parser.py checks each example maps to its label.
SYNTAX_EXAMPLES: dict[str, list[str]] = {
    "missing '=' in let: write `let NAME = VALUE`": ["let x 5", 'let x "a"'],
    "missing '=' in scheme: write `scheme NAME = int8 symmetric ...`": ["scheme w8 int8"],
    "a pipeline's steps go in braces: `pipeline { ... }` or `pipeline NAME { ... }`": [
        "pipeline fold-constants",
        "pipeline x fold-constants",
    ],
    "an option needs a value after '='": [
        "pipeline {\n a b=\n}",
        "pipeline {\n a b= }",
    ],
    "'where' needs a selector and a block of options: `where op(Softmax) { scheme = a16 }`": [
        "pipeline {\n a where op(X)\n}",
        "pipeline {\n a where op(X) b\n}",
    ],
    "a statement starts with recipe, include, let, calibration, scheme, pipeline or target": [
        "fold-constants",
        "recipe r\nfold-constants",
        "let a = 1\nfold-constants max-bytes = 3",
        "pipelines { }",
        "x = 1",
    ],
}


def _syntax_diagnostic(e: UnexpectedInput, text: str, file: str) -> Diagnostic:
    line, col = getattr(e, "line", 0) or 0, getattr(e, "column", 0) or 0
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        span = A.Span(file, line, col, line, col + 1)
        if ch == '"':
            return Diagnostic(
                "E101", "unterminated string", span, "close it with '\"' on the same line"
            )
        return Diagnostic("E102", f"unexpected character {ch!r}", span)
    label = None
    if isinstance(e, UnexpectedToken):
        try:
            label = e.match_examples(
                lambda s: _lark().parse(s, start="start"), SYNTAX_EXAMPLES, use_accepts=True
            )
        except Exception:  # match_examples re-parses examples; never let that mask the error
            label = None
    at_end = isinstance(e, UnexpectedEOF) or (
        isinstance(e, UnexpectedToken) and e.token.type == "$END"
    )
    if at_end:
        last = text.rstrip().splitlines()
        ln = max(1, len(last))
        cl = len(last[-1]) + 1 if last else 1
        end_span = A.Span(file, ln, cl, ln, cl + 1)
        if label:
            return Diagnostic("E100", f"unexpected end of file: {label}", end_span)
        return Diagnostic(
            "E103", "unexpected end of file: a '{', '(' or '[' is not closed", end_span
        )
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    span = A.Span(
        file, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1
    )
    shown = "end of line" if tok.type == "_NL" else repr(str(tok))
    expected = _expected(e)
    if str(tok) in _KEYWORDS and "NAME" in (e.accepts or e.expected):
        return Diagnostic("E100", f"{shown} is a keyword and cannot be used as a name", span)
    if label:
        return Diagnostic("E100", f"unexpected {shown}: {label}", span)
    return Diagnostic(
        "E100", f"unexpected {shown}", span, f"expected {expected}" if expected else None
    )


_KEYWORDS = {
    "recipe",
    "include",
    "let",
    "calibration",
    "scheme",
    "pipeline",
    "target",
    "use",
    "on",
    "exclude",
    "where",
}

_TOKEN_NAMES = {
    "NAME": "a name",
    "STRING": "a string",
    "INT": "an integer",
    "FLOAT": "a number",
    "SIZE": "a size (224x224)",
    "VAR": "a $variable",
    "VBAR": "'|'",
    "AMPERSAND": "'&'",
    "MINUS": "'-'",
    "SLASH": "'/'",
    "TILDE": "'~'",
    "_NL": "end of line",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "EQUAL": "'='",
    "COMMA": "','",
}


def _expected(e: UnexpectedToken) -> str:
    names = sorted({_TOKEN_NAMES.get(t, t.lower().join("''")) for t in (e.accepts or e.expected)})
    if len(names) > 6:
        names = [*names[:6], "..."]
    return ", ".join(names)


# --------------------------------------------------------------------------- entry points


def _comments(text: str) -> tuple[A.Comment, ...]:
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        in_str = False
        j = 0
        while j < len(line):
            ch = line[j]
            if in_str and ch == "\\":
                j += 2
                continue
            if ch == '"':
                in_str = not in_str
            elif ch == "#" and not in_str:
                out.append(A.Comment(line[j:].rstrip(), i, j + 1))
                break
            j += 1
    return tuple(out)


def parse_recipe(text: str, file: str = "<recipe>", sources: Sources | None = None) -> A.RecipeFile:
    """Parse one recipe file's text; raises :class:`RecipeError` on a syntax error."""
    try:
        tree = _lark().parse(text, start="start")
    except UnexpectedInput as e:
        src = sources or Sources()
        src.add(file, text)
        raise RecipeError([_syntax_diagnostic(e, text, file)], src) from None
    statements = _Build(file).transform(tree)
    return A.RecipeFile(file, statements, _comments(text))


def parse_value(text: str, file: str = "<value>") -> A.Value:
    """Parse one recipe value (for ``-D name=value``); raises :class:`RecipeError`."""
    try:
        tree = _lark().parse(text, start="value")
    except UnexpectedInput as e:
        src = Sources()
        src.add(file, text)
        raise RecipeError([_syntax_diagnostic(e, text, file)], src) from None
    return _Build(file).transform(tree)
