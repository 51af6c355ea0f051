"""Compile qcc's modules to bytecode before a benchmark times it, as ``pip install`` does.

An editable install (the development setup) has no ``.pyc`` files, and with
``PYTHONDONTWRITEBYTECODE`` set (as on the benchmark machine) every qcc process compiles its
~150 modules from source again: 0.3-0.5 s of each compile, which no user of an installed qcc
pays (pip byte-compiles what it installs; the peers' packages are pip-installed too). Writing
them once into the source tree's ``__pycache__`` (ignored by git) makes the timed runs see
what an installed qcc sees.
"""

from __future__ import annotations

import compileall
import importlib.util
from pathlib import Path


def compile_qcc() -> None:
    """Byte-compile the qcc, qcc.passes and qcc.recipes packages in place."""
    for name in ("qcc", "qcc.passes", "qcc.recipes"):
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # not this interpreter's package (a worker's Python)
            return
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            compileall.compile_dir(Path(folder), quiet=1, force=False)
