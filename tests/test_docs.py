"""Generated documentation is current, its recipe examples work, every module says what it is
for."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from qcc.docgen import passes_markdown, recipes_markdown
from qcc.recipe.resolve import load_recipe

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name,gen", [("passes", passes_markdown), ("recipes", recipes_markdown)])
def test_generated_reference_is_current(name, gen):
    current = (ROOT / "docs" / f"{name}.md").read_text()
    assert current == gen(), f"run: python -m qcc.docgen {name} > docs/{name}.md"


EXAMPLES = [
    ex
    for doc in (ROOT / "docs" / "recipes.md", ROOT / "README.md")
    for ex in re.findall(r"```q\n(.*?)```", doc.read_text(), re.S)
]


@pytest.mark.parametrize("text", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_recipe_examples_resolve(tmp_path, text):
    p = tmp_path / "example.q"
    p.write_text(text)
    load_recipe(str(p), require_pipeline=False, check_files=False)  # fragments


def test_every_module_has_a_docstring():
    missing = []
    for path in sorted(ROOT.glob("**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".venv", "build") or "egg-info" in str(rel):
            continue
        if not ast.get_docstring(ast.parse(path.read_text())):
            missing.append(str(rel))
    assert missing == []
