"""Fuzz the recipe front end with random mutations of the golden recipes.

Thousands of mutated recipes go through parse, resolve and fmt. The only exception allowed is
qcc's own RecipeError (a diagnostic with a location); whatever parses must format to text that
parses to the same AST, and formatting it again must change nothing.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcc.recipe.diagnostics import RecipeError
from qcc.recipe.fmt import format_recipe
from qcc.recipe.parser import parse_recipe, parse_value
from qcc.recipe.resolve import load_recipe

GOLDEN = Path(__file__).parent / "golden"
SEEDS = [p.read_text() for p in sorted(GOLDEN.glob("*/*.q"))]
TOKENS = [
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ";",
    "=",
    "|",
    "&",
    "-",
    "~",
    "$",
    '"',
    "#",
    "/",
    "\n",
    " ",
    "x",
    "1",
    "2.5",
    "1/0",
    "224x224",
    "$limit",
    "on",
    "exclude",
    "where",
    "use",
    "pipeline",
    "let",
    "scheme",
    "include",
    "target",
    "calibration",
    "recipe",
    "op(Conv)",
    'name("a*")',
    "fold-constants",
    "max-bytes",
    "int8",
    "observer",
    "\\",
    "é",
    "\t",
    "\r",
]


@st.composite
def mutated(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            text = draw(st.sampled_from(TOKENS))
            continue
        i = draw(st.integers(0, len(text) - 1))
        j = draw(st.integers(i, min(len(text), i + 12)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        tok = draw(st.sampled_from(TOKENS))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + tok + text[i:]
        elif op == "replace":
            text = text[:i] + tok + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


@settings(
    max_examples=2500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(text=mutated())
def test_mutated_recipes_only_raise_diagnostics(tmp_path_factory, text):
    d = tmp_path_factory.getbasetemp() / "fuzz"
    d.mkdir(exist_ok=True)
    path = d / "r.q"
    path.write_text(text, encoding="utf-8")
    try:
        load_recipe(str(path), require_pipeline=None, check_files=False)
    except RecipeError as e:
        assert e.diagnostics and e.render()
    try:
        rf = parse_recipe(text, "r.q")
    except RecipeError:
        return
    once = format_recipe(rf)
    again = parse_recipe(once, "f.q")
    assert again.statements == rf.statements
    assert format_recipe(again) == once


@settings(max_examples=500, deadline=None, derandomize=True)
@given(parts=st.lists(st.sampled_from(TOKENS), max_size=8))
def test_define_values_only_raise_diagnostics(parts):
    text = "".join(parts)
    try:
        parse_value(text)
    except RecipeError as e:
        assert e.diagnostics
