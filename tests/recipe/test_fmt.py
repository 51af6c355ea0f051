"""qcc fmt: canonical, idempotent, same AST, comments kept; on every golden recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcc.recipe.fmt import format_recipe
from qcc.recipe.parser import parse_recipe

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[2]
ALL = sorted(GOLDEN.glob("**/*.q")) + sorted((ROOT / "recipes").glob("**/*.q"))


def _parses(p: Path) -> bool:
    try:
        parse_recipe(p.read_text(), str(p))
    except Exception:
        return False
    return True


CASES = [p for p in ALL if _parses(p)]


@pytest.mark.parametrize("path", CASES, ids=[str(p.relative_to(ROOT)) for p in CASES])
def test_fmt_is_idempotent_and_keeps_the_ast_and_comments(path):
    text = path.read_text()
    a = parse_recipe(text, "a.q")
    once = format_recipe(a)
    b = parse_recipe(once, "b.q")
    assert b.statements == a.statements
    assert format_recipe(b) == once
    assert [c.text for c in b.comments] == [c.text for c in a.comments]


def test_builtin_recipes_are_formatted():
    for p in sorted((ROOT / "recipes").glob("**/*.q")):
        assert format_recipe(parse_recipe(p.read_text(), str(p))) == p.read_text(), p


def test_canonical_layout():
    text = (
        "recipe r;let a=1\n"
        "pipeline{fold-constants max-bytes=$a;fuse-activations conv-relu,conv-clip # x\n}"
    )
    assert format_recipe(parse_recipe(text)) == (
        "recipe r\n"
        "\n"
        "let a = 1\n"
        "\n"
        "pipeline {\n"
        "  fold-constants max-bytes = $a  # x\n"
        "  fuse-activations conv-relu, conv-clip\n"
        "}\n"
    )
