"""Generated documentation is current; every module says what it is for."""

from __future__ import annotations

import ast
from pathlib import Path

from qcc.docgen import passes_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_pass_reference_is_current():
    current = (ROOT / "docs" / "passes.md").read_text()
    assert current == passes_markdown(), "run: python -m qcc.docgen passes > docs/passes.md"


def test_every_module_has_a_docstring():
    missing = []
    for path in sorted(ROOT.glob("**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".venv", "build") or "egg-info" in str(rel):
            continue
        if not ast.get_docstring(ast.parse(path.read_text())):
            missing.append(str(rel))
    assert missing == []
