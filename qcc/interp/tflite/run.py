"""The run loop of the TFLite interpreter: ``TFLiteInterpreter(path_or_bytes, profile)``.

Operators execute in the order of the flatbuffer (TFLite's own execution order), each in the
arithmetic its profile gives it: ``tflite-ref`` runs everything in the reference kernels
(``OpResolverType.BUILTIN_REF``); ``tflite-xnnpack`` (LiteRT's default resolver) runs the
operators the XNNPACK delegate takes in XNNPACK's arithmetic and the others in TFLite's
optimized builtin kernels (:mod:`qcc.interp.tflite.delegate`). Values are freed after their last
use; an error names the operator ("while executing operator 3 'conv1' (CONV_2D)"). The
``observe``/``override`` hooks serve ``qcc verify`` as in :class:`qcc.interp.Interpreter`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from qcc.interp.registry import InterpError
from qcc.interp.tflite import kernels as _kernels  # noqa: F401  (registers the kernels)
from qcc.interp.tflite.delegate import xnnpack_takes
from qcc.interp.tflite.model import Tensor, TFLiteModel, read
from qcc.interp.tflite.registry import Call, TKernel, tlookup

PROFILES = {
    "tflite-xnnpack": "LiteRT's default resolver: XNNPACK delegate, builtin kernels for the rest",
    "tflite-ref": "LiteRT's reference kernels (OpResolverType.BUILTIN_REF)",
}


@dataclass
class TStep:
    call: Call
    kernel: TKernel
    exact: bool
    free: tuple[int, ...] = ()


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise InterpError(
            f"profile {profile!r} does not run .tflite models; use one of: "
            + ", ".join(sorted(PROFILES))
        )


class TFLiteInterpreter:
    """Executes the main subgraph of a .tflite under one profile. Build once, run many times."""

    def __init__(
        self,
        model: TFLiteModel | str | os.PathLike[str] | bytes,
        profile: str = "tflite-xnnpack",
    ) -> None:
        check_profile(profile)
        self.profile = profile
        self.model = model if isinstance(model, TFLiteModel) else read(model)
        m = self.model  # only the main subgraph runs; control flow operators have no kernel
        self.steps: list[TStep] = []
        missing: list[str] = []
        for op in m.operators:
            if profile == "tflite-ref":
                arith = "ref"
            else:
                arith = "xnnpack" if xnnpack_takes(m, op) else "builtin"
            spec = tlookup(op.op, arith)
            if spec is None:
                missing.append(m.describe(op))
                continue
            call = Call(
                m,
                op,
                [None if i < 0 else m.tensors[i] for i in op.inputs],
                [m.tensors[i] for i in op.outputs],
                arith,
            )
            self.steps.append(TStep(call, spec, spec.is_exact(call)))
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise InterpError(
                f"no kernel in profile {profile!r} for operator " + ", ".join(missing[:3]) + more,
                path=m.path,
            )
        self._plan_frees()

    def _plan_frees(self) -> None:
        last: dict[int, int] = {}
        for i, st in enumerate(self.steps):
            for t in st.call.op.inputs:
                if t >= 0 and not self.model.tensors[t].is_constant:
                    last[t] = i
        outs = set(self.model.outputs)
        frees: dict[int, list[int]] = {}
        for t, i in last.items():
            if t not in outs:
                frees.setdefault(i, []).append(t)
        for i, st in enumerate(self.steps):
            st.free = tuple(frees.get(i, ()))

    @property
    def inputs(self) -> list[Tensor]:
        return [self.model.tensors[i] for i in self.model.inputs]

    @property
    def outputs(self) -> list[Tensor]:
        return [self.model.tensors[i] for i in self.model.outputs]

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
        env: dict[int, np.ndarray] = {}
        for t in self.inputs:
            if t.name not in feeds:
                raise InterpError(f"no data for input tensor {t.name!r}", path=self.model.path)
            arr = np.asarray(feeds[t.name])
            if arr.dtype != t.dtype:
                raise InterpError(
                    f"input tensor {t.name!r} is {t.dtype}, data is {arr.dtype}",
                    path=self.model.path,
                )
            if tuple(arr.shape) != tuple(t.shape):
                raise InterpError(
                    f"input tensor {t.name!r} has shape {list(t.shape)}, data has "
                    f"{list(arr.shape)}",
                    path=self.model.path,
                )
            env[t.index] = arr
        unknown = set(feeds) - {t.name for t in self.inputs}
        if unknown:
            raise InterpError(
                f"data for unknown input tensor(s): {', '.join(sorted(unknown))}",
                path=self.model.path,
            )
        return env

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        *,
        keep: Iterable[str] = (),
        observe: Callable[[Call, Tensor, np.ndarray], None] | None = None,
        override: Callable[[Call, Tensor, np.ndarray], np.ndarray | None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run on one set of inputs (keyed by input tensor name); returns the outputs by name,
        plus the tensors named in ``keep``."""
        env = self.check_feeds(feeds)
        tensors = self.model.tensors
        keep_names = set(keep)
        kept: dict[str, np.ndarray] = {}
        for st in self.steps:
            call = st.call
            args = []
            for i in call.op.inputs:
                if i < 0:
                    args.append(None)
                elif tensors[i].is_constant:
                    args.append(tensors[i].data)
                elif i in env:
                    args.append(env[i])
                else:
                    raise InterpError(
                        f"while executing operator {call.describe()}: input tensor "
                        f"{tensors[i].name!r} has no value",
                        path=self.model.path,
                    )
            try:
                res = st.kernel.fn(call, *args)
            except InterpError as e:
                raise InterpError(
                    f"while executing operator {call.describe()}: {e.message}",
                    path=self.model.path,
                ) from e
            except Exception as e:
                raise InterpError(
                    f"while executing operator {call.describe()}: {type(e).__name__}: {e}",
                    path=self.model.path,
                ) from e
            outs = res if isinstance(res, tuple) else (res,)
            for t, arr in zip(call.outs, outs, strict=False):
                arr = np.asarray(arr)
                if arr.dtype != t.dtype:
                    arr = arr.astype(t.dtype)
                if observe is not None:
                    observe(call, t, arr)
                if override is not None:
                    new = override(call, t, arr)
                    if new is not None:
                        arr = new
                env[t.index] = arr
                if t.name in keep_names:
                    kept[t.name] = arr
            for i in st.free:
                env.pop(i, None)
        result: dict[str, np.ndarray] = {}
        for i in self.model.outputs:
            t = tensors[i]
            if t.is_constant:
                result[t.name] = t.data
            elif i in env:
                result[t.name] = env[i]
            else:
                raise InterpError(
                    f"output tensor {t.name!r} was not computed", path=self.model.path
                )
        result.update(kept)
        return result
