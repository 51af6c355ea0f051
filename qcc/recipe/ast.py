"""The recipe AST: frozen dataclasses, each with the source span it came from.

Spans are excluded from equality, so a recipe and its ``qcc fmt`` output compare equal when
they say the same thing. Selectors in the AST are the :mod:`qcc.select` classes themselves
(with their span in ``where``), so the resolver hands them to passes unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Union

from qcc.select import Selector


@dataclasses.dataclass(frozen=True)
class Span:
    """``file:line:column`` to ``end_line:end_column`` (1-based, end exclusive)."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


NO_SPAN = Span("<none>", 0, 0, 0, 0)


def _span() -> dataclasses.Field:
    return dataclasses.field(default=NO_SPAN, compare=False, repr=False, kw_only=True)


# --------------------------------------------------------------------------- values


@dataclasses.dataclass(frozen=True)
class Int:
    value: int
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Float:
    value: float
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Fraction:
    """``1/255``: kept as written so ``qcc fmt`` prints it back."""

    num: int
    den: int
    span: Span = _span()

    @property
    def value(self) -> float:
        return self.num / self.den


@dataclasses.dataclass(frozen=True)
class Str:
    value: str
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Ident:
    name: str
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Size:
    """``224x224``: width x height."""

    width: int
    height: int
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Var:
    """``$name``."""

    name: str
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class List:
    items: tuple[Value, ...]
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class KwArg:
    name: str
    value: Value
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Call:
    """``percentile(99.99)``, ``moving_average(momentum = 0.1)``."""

    name: str
    args: tuple[Arg, ...]
    span: Span = _span()


Value = Union[Int, Float, Fraction, Str, Ident, Size, Var, List, Call]  # noqa: UP007
Arg = Union[KwArg, Value]  # noqa: UP007


# --------------------------------------------------------------------------- statements


@dataclasses.dataclass(frozen=True)
class Setting:
    """One entry of a settings block: ``data "calib/*.npy"``, ``format = qdq``, a nested block
    (``preprocess { ... }``), or a bare flag (``value`` None)."""

    key: str
    value: Value | Block | None
    equals: bool = dataclasses.field(default=False, compare=False)  # written ``key = value``
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Block:
    settings: tuple[Setting, ...]
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class RecipeDecl:
    name: str
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Include:
    path: str
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Let:
    name: str
    value: Value
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Calibration:
    block: Block
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Target:
    backend: str
    block: Block | None
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Scheme:
    """``scheme a8 = uint8 asymmetric per_tensor observer percentile(99.99)``."""

    name: str
    words: tuple[Ident | Call, ...]
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Where:
    """``where SELECTOR { option = value ... }``: per-selector option overrides of a step."""

    selector: Selector
    args: tuple[Arg, ...]
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    args: tuple[Arg, ...] = ()
    on: Selector | None = None
    exclude: Selector | None = None
    where: tuple[Where, ...] = ()
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Use:
    """``use NAME``: splice a named pipeline here."""

    name: str
    span: Span = _span()


@dataclasses.dataclass(frozen=True)
class Pipeline:
    name: str | None
    steps: tuple[Step | Use, ...]
    span: Span = _span()


Statement = Union[RecipeDecl, Include, Let, Calibration, Target, Scheme, Pipeline]  # noqa: UP007


@dataclasses.dataclass(frozen=True)
class Comment:
    text: str
    line: int
    column: int


@dataclasses.dataclass(frozen=True)
class RecipeFile:
    """One parsed file (includes are resolved later)."""

    path: str
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...] = dataclasses.field(default=(), compare=False, repr=False)
