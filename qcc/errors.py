"""Exceptions and exit codes shared by every layer of qcc.

Every error a user can cause (a bad model, a bad option, a failing pass) is a :class:`QccError`.
The CLI turns it into one short message and exit status 2; anything else that escapes is an
internal error, also exit 2, with the traceback shown only under ``--debug``.
"""

from __future__ import annotations

import enum
from pathlib import Path


class ExitCode(enum.IntEnum):
    """Process exit status, the same for every subcommand."""

    OK = 0
    CHECK_FAILED = 1  # a check ran and said no (verify mismatch, accuracy gate)
    BAD_INPUT = 2  # bad input, bad options, or an internal error


class QccError(Exception):
    """An error caused by the input, reported to the user without a traceback.

    ``path`` names the file, ``node`` the graph node involved (``"name (OpType)"``), ``hint``
    an extra line telling the user what to do.
    """

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        node: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.node = node
        self.hint = hint

    def render(self) -> str:
        """The one-screen text the CLI prints: ``path: node: message`` then the hint."""
        where = [p for p in (self.path, self.node and f"node {self.node}") if p]
        head = ": ".join([*where, self.message])
        return head if not self.hint else f"{head}\n  hint: {self.hint}"

    def __str__(self) -> str:
        return self.render()


class ModelError(QccError):
    """The model file cannot be read, is not ONNX, or is malformed or unsupported."""


class IRError(QccError):
    """The IR is inconsistent (a verifier finding, or an edit that would break the graph)."""


class PassError(QccError):
    """A pass failed, or was asked for with a wrong name or option."""
