"""TFLite's int8 MUL against LiteRT where the builtin kernels run it (a MUL the XNNPACK delegate
does not take, and the reference resolver)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.interp.tflite.builder import Builder
from tests.interp.tflite.test_kernels import check, rand_i8

I8 = np.int8
X = [2, 3, 4, 6]  # N, H, W, C: sizes 2 / odd / even


def _binary(op: str, kshape, dim: int, const_first: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    b = Builder()
    x = b.tensor("x", X, I8, scale=0.05, zp=3)
    k = b.const("k", rng.integers(-60, 60, kshape).astype(I8), scale=0.02, zp=-1, dim=dim)
    # MUL's output scale keeps sa*sb/sy within XNNPACK's range
    y = b.tensor("y", X, I8, scale=0.004 if op == "MUL" else 0.06, zp=2)
    b.op(op, [k, x] if const_first else [x, k], [y], op.capitalize() + "Options")
    return b.build([x], [y]), [rand_i8(rng, X)]


@pytest.mark.parametrize("profile", ["tflite-ref"])
def test_mul_multiplier_is_computed_in_float32(profile):
    """mul.cc's Prepare multiplies and divides the float scales in float32: 0.05 * 0.02 / 0.004
    is 0.25 there (one rounding up), 0.2499999862... in double: 1 LSB apart on a few elements."""
    content, feeds = _binary("MUL", X, 1, False)  # not delegated: the builtin kernel
    check(content, feeds, profile)
