"""The quantization plan that ``observe`` makes and ``calibrate`` and ``quantize`` consume.

It lives in the compile session (``ctx.session.state["quant"]``) and is keyed by IR objects,
not names, so passes that run in between (and rename or replace values) cannot confuse it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qcc.errors import PassError
from qcc.ir import Node, Value
from qcc.quant.scheme import Granularity, QDType, QuantScheme

DEFAULT_WEIGHTS = QuantScheme(
    "w8", QDType.INT8, symmetric=True, granularity=Granularity.PER_CHANNEL
)
DEFAULT_ACTIVATIONS = QuantScheme("a8", QDType.UINT8, symmetric=False)

KEY = "quant"


@dataclasses.dataclass
class QuantPlan:
    target: str
    weights: dict[Node, QuantScheme] = dataclasses.field(default_factory=dict)
    activations: dict[Node, QuantScheme] = dataclasses.field(default_factory=dict)
    # value -> (observer, scheme whose observer kind and type turn its statistics into a range)
    observers: dict[Value, tuple[Any, QuantScheme]] = dataclasses.field(default_factory=dict)
    # value -> (source, op, a, b): a tensor whose range follows from its source's by a
    # monotone scalar map (op "scale": x * a; "shift": x + a; "clip": clamp to [a, b];
    # "sigmoid", "tanh"); it has no observer of its own (see passes/observe.py)
    derived: dict[Value, tuple[Value, str, float, float]] = dataclasses.field(default_factory=dict)
    calibrated: int = 0  # samples seen
    fp32_model: bytes | None = None  # the FP32 model as observed, for error reports
    # quantized tensor (its name in the FP32 model) -> (its QuantizeLinear's output, params)
    quantized: dict[str, tuple[str, Any]] = dataclasses.field(default_factory=dict)
    # op -> its bias before correct-bias changed it (None: it had none); quantize restores
    # it on ops it keeps in float
    float_bias: dict[Node, Any] = dataclasses.field(default_factory=dict)


def get_plan(session, pass_name: str) -> QuantPlan:
    plan = session.state.get(KEY)
    if plan is None:
        raise PassError(f"{pass_name} needs a quantization plan: run `observe` before it")
    return plan
