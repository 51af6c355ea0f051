"""Golden recipes: each ``golden/ok/*.q`` resolves to the pipeline in its ``.expected`` file,
each ``golden/errors/*.q`` gives the diagnostics in its ``.expected`` file, exactly.

Directives in a recipe's leading comments: ``# model: digits`` checks the selectors against
``examples/digits/model.onnx``; ``# define: NAME=VALUE`` passes ``-D``. Run
``pytest tests/recipe/test_golden.py --update-golden`` to rewrite the expected files (then read
the diff).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from qcc.frontend import read_model
from qcc.recipe.diagnostics import RecipeError
from qcc.recipe.resolve import load_recipe

HERE = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[2]
OK = sorted((HERE / "ok").glob("*.q"))
ERRORS = sorted((HERE / "errors").glob("*.q"))
MODELS = {"digits": ROOT / "examples" / "digits" / "model.onnx"}


@functools.cache
def _model(name: str):
    return read_model(MODELS[name])


def directives(text: str) -> tuple[str | None, dict[str, str]]:
    model, defines = None, {}
    for line in text.splitlines():
        m = re.match(r"#\s*(model|define):\s*(.*)", line)
        if not m:
            continue
        if m.group(1) == "model":
            model = m.group(2).strip()
        else:
            k, _, v = m.group(2).strip().partition("=")
            defines[k] = v
    return model, defines


def run_golden(path: Path) -> tuple[bool, str]:
    model, defines = directives(path.read_text())
    try:
        recipe = load_recipe(
            path.name,
            defines=defines,
            model=_model(model) if model else None,
            require_pipeline=None,
        )
    except RecipeError as e:
        return False, e.render() + "\n"
    return True, recipe.describe()


def _check(path: Path, request, monkeypatch, want_ok: bool) -> None:
    monkeypatch.chdir(path.parent)
    ok, actual = run_golden(path)
    expected_file = path.with_suffix(".expected")
    if request.config.getoption("--update-golden"):
        expected_file.write_text(actual)
    assert ok is want_ok, actual
    assert expected_file.exists(), f"no {expected_file.name}; run with --update-golden"
    assert actual == expected_file.read_text()


@pytest.mark.parametrize("path", OK, ids=[p.stem for p in OK])
def test_valid_recipes_resolve_to_the_expected_pipeline(path, request, monkeypatch):
    _check(path, request, monkeypatch, want_ok=True)


@pytest.mark.parametrize("path", ERRORS, ids=[p.stem for p in ERRORS])
def test_wrong_recipes_give_the_expected_diagnostics(path, request, monkeypatch):
    _check(path, request, monkeypatch, want_ok=False)


def test_there_are_at_least_25_distinct_wrong_recipes():
    codes = set()
    for p in ERRORS:
        codes |= set(re.findall(r"error\[(E\d+)\]", p.with_suffix(".expected").read_text()))
    assert len(ERRORS) >= 25
    assert len(codes) >= 20, codes
