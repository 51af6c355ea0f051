"""The run loop of the reference interpreter.

:class:`Interpreter` takes a lifted model, lets the chosen profile rewrite it the way the runtime
would (onnxruntime fusing Q/DQ node units into integer kernels, for ``ort-x86``), resolves one
kernel per node, and executes nodes in order. A value is freed after its last use unless the
caller asked to keep it; an exception from a kernel is re-raised as :class:`InterpError` naming
the node ("while executing node 'conv1' (QLinearConv)").

Hooks serve ``qcc verify``: ``observe`` sees every computed value, and ``override`` can replace
a value by the runtime's own before anything downstream reads it, so each mismatch is found
where it arises and is not counted again in every tensor after it.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from qcc.interp.registry import InterpError, KernelSpec, lookup
from qcc.ir import Model, Node, Value
from qcc.ir.dtypes import DType

log = logging.getLogger(__name__)


@dataclass
class Step:
    """One node to execute: its kernel, its keyword attributes, what to free after it."""

    node: Node
    spec: KernelSpec
    attrs: dict[str, object]
    free: tuple[Value, ...]
    args: tuple[tuple[Value | None, object], ...] = ()


_FROM_ENV = object()  # marks an argument read from the values computed so far


def _arg_plan(node: Node) -> tuple[tuple[Value | None, object], ...]:
    """``(value, source)`` per input: None for an absent input, the array for a constant, or
    :data:`_FROM_ENV` for a value computed at run time."""
    plan = []
    for v in node.inputs:
        if v is None or not v.name:
            plan.append((v, None))
        elif v.is_constant:
            plan.append((v, v.const))
        else:
            plan.append((v, _FROM_ENV))
    return tuple(plan)


@functools.cache
def _takes_num_outputs(fn) -> bool:
    """Kernels whose output count is not in their inputs (Split) declare ``_num_outputs``."""
    return "_num_outputs" in inspect.signature(fn).parameters


def _attr_value(v: object) -> object:
    if isinstance(v, tuple):
        return list(v)
    return v


class Interpreter:
    """Executes one model under one profile. Build once, :meth:`run` many times."""

    def __init__(self, model: Model, profile: str = "ort-x86") -> None:
        from qcc.interp.profiles import get_profile

        self.profile = get_profile(profile)
        self.model = self.profile.prepare(model)
        self.graph = self.model.graph
        opsets = {("" if d == "ai.onnx" else d): v for d, v in self.model.opset_imports.items()}
        self.steps: list[Step] = []
        missing: list[str] = []
        for node in self.graph:
            if node.subgraphs():
                raise InterpError(
                    "control flow (If/Loop/Scan) is not supported by the interpreter",
                    node=node.describe(),
                )
            ver = opsets.get(node.domain, 1 if node.domain else self.model.opset)
            spec = lookup(node.domain, node.op_type, ver, self.profile.name)
            if spec is None:
                missing.append(f"{node.describe()} (opset {ver})")
                continue
            attrs = {k: _attr_value(a.value) for k, a in node.attrs.items()}
            if _takes_num_outputs(spec.fn):
                attrs["_num_outputs"] = len(node.outputs)
            self.steps.append(Step(node, spec, attrs, (), _arg_plan(node)))
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise InterpError(
                f"no kernel in profile {self.profile.name!r} for node "
                + ", ".join(missing[:3])
                + more
            )
        self._plan_frees()

    def _plan_frees(self) -> None:
        last: dict[Value, int] = {}
        for i, st in enumerate(self.steps):
            for v in st.node.inputs:
                if v is not None and not v.is_constant:
                    last[v] = i
        outputs = set(self.graph.outputs)
        frees: dict[int, list[Value]] = {}
        for v, i in last.items():
            if v not in outputs:
                frees.setdefault(i, []).append(v)
        for i, st in enumerate(self.steps):
            st.free = tuple(frees.get(i, ()))

    # ------------------------------------------------------------------ running
    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[Value, np.ndarray]:
        """Match ``feeds`` to the graph inputs by name, checking dtype and rank."""
        env: dict[Value, np.ndarray] = {}
        for v in self.graph.inputs:
            if v.is_constant:
                continue
            if v.name not in feeds:
                raise InterpError(f"no data for graph input {v.name!r}")
            arr = np.asarray(feeds[v.name])
            want = dtype_of(v)
            if want is not None and arr.dtype != want:
                raise InterpError(
                    f"graph input {v.name!r} is {v.dtype.name.lower()}, data is {arr.dtype}"
                )
            if v.shape is not None and arr.ndim != len(v.shape):
                raise InterpError(
                    f"graph input {v.name!r} has rank {len(v.shape)}, data has shape {arr.shape}"
                )
            env[v] = arr
        unknown = set(feeds) - {v.name for v in self.graph.inputs}
        if unknown:
            raise InterpError(f"data for unknown graph input(s): {', '.join(sorted(unknown))}")
        return env

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        *,
        keep: Iterable[str] = (),
        observe: Callable[[Node, Value, np.ndarray], None] | None = None,
        override: Callable[[Node, Value, np.ndarray], np.ndarray | None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run on one set of inputs; returns the graph outputs plus the values named in ``keep``.

        ``observe(node, value, array)`` sees every computed output; ``override`` may return an
        array to use in its place from then on.
        """
        env = self.check_feeds(feeds)
        keep_names = set(keep)
        kept: dict[str, np.ndarray] = {}
        for st in self.steps:
            node = st.node
            try:
                # constants and absent inputs were resolved when the plan was made
                args = [env[v] if c is _FROM_ENV else c for v, c in st.args]
            except KeyError as e:
                v = e.args[0]
                raise InterpError(
                    f"while executing node {node.describe()}: input {v.name!r} "
                    "has no value (graph inputs not fed or nodes out of order)"
                ) from None
            try:
                res = st.spec.fn(*args, **st.attrs)
            except InterpError as e:
                raise InterpError(f"while executing node {node.describe()}: {e.message}") from e
            except Exception as e:
                raise InterpError(
                    f"while executing node {node.describe()}: {type(e).__name__}: {e}"
                ) from e
            outs = res if isinstance(res, tuple) else (res,)
            for v, arr in zip(node.outputs, outs, strict=False):
                if not v.name:
                    continue
                arr = np.asarray(arr)
                if observe is not None:
                    observe(node, v, arr)
                if override is not None:
                    new = override(node, v, arr)
                    if new is not None:
                        arr = new
                env[v] = arr
                if v.name in keep_names:
                    kept[v.name] = arr
            for v in st.free:
                env.pop(v, None)
        result = {}
        for v in self.graph.outputs:
            if v.is_constant:
                result[v.name] = np.asarray(v.const)
            elif v in env:
                result[v.name] = env[v]
            else:
                raise InterpError(f"graph output {v.name!r} was not computed")
        result.update(kept)
        return result


def dtype_of(v: Value) -> np.dtype | None:
    """The numpy dtype of an IR value, if known."""
    if v.dtype is None or v.dtype is DType.UNDEFINED:
        return None
    try:
        return v.dtype.numpy
    except ValueError:
        return None
