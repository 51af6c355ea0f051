"""Calibration data: find it, check it against the model, and stream it in batches.

Sources (a recipe's ``calibration { data ... }`` or ``qcc compile --calib PATH``):

* ``x.npy``: one array ``[N, *input_shape]`` for a one-input model (sample ``i`` is
  ``arr[i]``); memory-mapped, so a large file is not read at once;
* ``x.npz``: one such array per input name;
* a folder or a glob: ``.npy``/``.npz`` files (each one sample, or ``[N, ...]`` of samples),
  or images (``.png``, ``.jpg``, ...) turned into input tensors by the recipe's ``preprocess``
  settings (Pillow);
* ``"pkg.module:function"``: a callable returning an iterable of feed dicts (or of arrays for
  a one-input model). It is the only code a recipe can make qcc run, and it is named
  explicitly.

:func:`open_calibration` checks every input's dtype, rank and static dimensions against the
model before any sample is used, so a bad file fails with exit 2 before calibration starts.
Sampling (``samples``) is a seeded draw without replacement, in file order.
"""

from __future__ import annotations

import dataclasses
import glob as globmod
import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from qcc.errors import QccError
from qcc.ir import Model, Value

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class CalibrationError(QccError):
    """The calibration data is missing, unreadable or does not fit the model."""


@dataclasses.dataclass
class CalibrationSet:
    """Validated samples: ``get(i)`` is a feed dict for the model's inputs."""

    source: str
    inputs: list[Value]
    count: int
    get: Callable[[int], dict[str, np.ndarray]]

    def batches(self, batch: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(samples in the batch, feed)``; samples are concatenated on axis 0 when every
        input's first dimension is dynamic, else fed one at a time."""
        dynamic = all(v.shape and not _static(v.shape[0]) for v in self.inputs)
        step = max(1, batch) if dynamic else 1
        for start in range(0, self.count, step):
            idx = range(start, min(start + step, self.count))
            feeds = [self.get(i) for i in idx]
            if len(feeds) == 1:
                yield 1, feeds[0]
                continue
            try:
                yield (
                    len(feeds),
                    {k: np.concatenate([f[k] for f in feeds], axis=0) for k in feeds[0]},
                )
            except ValueError:  # samples of different shapes: one at a time
                for f in feeds:
                    yield 1, f


def _static(d) -> bool:
    """A known dimension (exporters write -1 or 0 for dynamic ones)."""
    return isinstance(d, int) and d > 0


def _inputs(model: Model) -> list[Value]:
    g = model.graph
    return [v for v in g.inputs if v.name not in g.initializers]


def _check_sample(model_inputs: list[Value], feed: dict[str, np.ndarray], where: str) -> None:
    names = [v.name for v in model_inputs]
    missing = [n for n in names if n not in feed]
    extra = [k for k in feed if k not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unknown name(s) {', '.join(map(repr, extra))}")
        raise CalibrationError(
            f"{where}: {'; '.join(parts)} (the model's inputs are {', '.join(map(repr, names))})"
        )
    for v in model_inputs:
        arr = feed[v.name]
        want = v.dtype.numpy if v.dtype is not None else None
        if want is not None and arr.dtype != want:
            raise CalibrationError(
                f"{where}: input {v.name!r} is {arr.dtype}, the model wants {want} "
                f"(convert it with arr.astype(np.{want}))"
            )
        if v.shape is not None:
            shown = "[" + ", ".join(str(d) if _static(d) else "?" for d in v.shape) + "]"
            if arr.ndim != len(v.shape) or any(
                _static(d) and d != s for d, s in zip(v.shape, arr.shape, strict=False)
            ):
                raise CalibrationError(
                    f"{where}: input {v.name!r} has shape {list(arr.shape)}, the model wants "
                    f"{shown}"
                )


def open_calibration(
    source: str | os.PathLike[str],
    model: Model,
    *,
    samples: int | None = None,
    seed: int = 0,
    preprocess=None,
    base: Path | None = None,
) -> CalibrationSet:
    """Open and check ``source`` against ``model``'s inputs (raises CalibrationError)."""
    inputs = _inputs(model)
    text = str(source)
    if _is_callable(text) and not Path(text).exists():
        items = _from_callable(text, inputs)
        getter, count = items.__getitem__, len(items)
    else:
        path = Path(text)
        if base is not None and not path.is_absolute():
            path = base / path
        getter, count = _from_files(path, inputs, preprocess)
    if count == 0:
        raise CalibrationError(f"calibration data {text!r} holds no samples")
    order = list(range(count))
    if samples is not None and samples < count:
        rng = np.random.default_rng(seed)
        order = sorted(rng.choice(count, size=samples, replace=False).tolist())
    # check every sample's layout cheaply where it is known up front, else the first one
    _check_sample(inputs, getter(order[0]), f"calibration sample {order[0]} of {text!r}")
    return CalibrationSet(text, inputs, len(order), lambda i: getter(order[i]))


def _is_callable(text: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", text) is not None


def _from_callable(text: str, inputs: list[Value]) -> list[dict[str, np.ndarray]]:
    mod_name, fn_name = text.split(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise CalibrationError(f"cannot load calibration callable {text!r}: {e}") from None
    try:
        items = list(fn())
    except Exception as e:  # the user's code: report, do not crash
        raise CalibrationError(
            f"calibration callable {text!r} failed: {type(e).__name__}: {e}"
        ) from None
    out = []
    for item in items:
        if isinstance(item, np.ndarray):
            if len(inputs) != 1:
                raise CalibrationError(
                    f"calibration callable {text!r} yields arrays, but the model has "
                    f"{len(inputs)} inputs: yield dicts of input name to array"
                )
            item = {inputs[0].name: item}
        out.append({k: np.asarray(v) for k, v in dict(item).items()})
    return out


def _from_files(path: Path, inputs: list[Value], preprocess) -> tuple[Callable[[int], dict], int]:
    if any(ch in str(path) for ch in "*?["):
        files = sorted(Path(p) for p in globmod.glob(str(path)))
        if not files:
            raise CalibrationError(f"calibration data {str(path)!r} matches no file")
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise CalibrationError(f"calibration folder {str(path)!r} is empty")
    elif path.is_file():
        files = [path]
    else:
        raise CalibrationError(f"calibration data {str(path)!r} does not exist")
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    arrays = [f for f in files if f.suffix.lower() in (".npy", ".npz")]
    if images and arrays:
        raise CalibrationError(f"calibration data {str(path)!r} mixes images and arrays")
    if images:
        return _images(images, inputs, preprocess)
    if not arrays:
        raise CalibrationError(f"calibration data {str(path)!r} holds no .npy, .npz or image files")
    parts: list[tuple[Callable[[int], dict], int]] = [_array_file(f, inputs) for f in arrays]
    offsets = np.cumsum([0] + [n for _, n in parts])

    def get(i: int) -> dict[str, np.ndarray]:
        k = int(np.searchsorted(offsets, i, side="right") - 1)
        return parts[k][0](i - int(offsets[k]))

    return get, int(offsets[-1])


def _array_file(f: Path, inputs: list[Value]) -> tuple[Callable[[int], dict], int]:
    try:
        if f.suffix.lower() == ".npy":
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
            if len(inputs) != 1:
                raise CalibrationError(
                    f"{f}: a .npy holds one input, but the model has inputs "
                    f"{', '.join(repr(v.name) for v in inputs)}: use an .npz with one array "
                    "per input"
                )
            data = {inputs[0].name: arr}
        else:
            z = np.load(f, allow_pickle=False)
            data = {k: z[k] for k in z.files}
    except CalibrationError:
        raise
    except Exception as e:  # a corrupt or foreign file
        raise CalibrationError(f"cannot read calibration file {str(f)!r}: {e}") from None
    ranks = {v.name: len(v.shape) if v.shape is not None else None for v in inputs}
    batched = {}
    counts = set()
    for k, a in data.items():
        r = ranks.get(k)
        is_batch = r is None or a.ndim == r + 1
        batched[k] = is_batch
        counts.add(a.shape[0] if is_batch else 1)
    if len(counts) > 1:
        raise CalibrationError(
            f"{f}: its arrays hold different numbers of samples {sorted(counts)}"
        )
    n = counts.pop() if counts else 0
    _check_sample(
        inputs, {k: (a[0] if batched[k] else a) for k, a in data.items()}, f"sample 0 of {str(f)!r}"
    )

    def get(i: int) -> dict[str, np.ndarray]:
        return {k: np.array(a[i] if batched[k] else a) for k, a in data.items()}

    return get, n


def _images(files: list[Path], inputs: list[Value], pre) -> tuple[Callable[[int], dict], int]:
    if len(inputs) != 1:
        raise CalibrationError("image calibration data needs a model with exactly one input")
    if pre is None:
        raise CalibrationError(
            "image calibration data needs preprocessing: add preprocess { resize ..., "
            "scale ..., layout ... } to the recipe's calibration block"
        )
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise CalibrationError("reading images needs Pillow (pip install pillow)") from None
    name = inputs[0].name

    def get(i: int) -> dict[str, np.ndarray]:
        try:
            with Image.open(files[i]) as im:
                im = im.convert("L" if pre.color == "gray" else "RGB")
                if pre.resize is not None:
                    im = im.resize(pre.resize, Image.BILINEAR)
                x = np.asarray(im, dtype=np.float32)
        except Exception as e:
            raise CalibrationError(f"cannot read image {str(files[i])!r}: {e}") from None
        if x.ndim == 2:
            x = x[:, :, None]
        if pre.color == "bgr":
            x = x[:, :, ::-1]
        x = x * np.float32(pre.scale)
        if pre.mean is not None:
            x = x - np.asarray(pre.mean, np.float32)
        if pre.std is not None:
            x = x / np.asarray(pre.std, np.float32)
        if pre.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return {name: np.ascontiguousarray(x[None], dtype=np.float32)}

    return get, len(files)
