"""``quantize``: turn the observed FP32 graph into a QDQ graph the target fuses into integer
kernels.

Placement (onnxruntime's x86 QDQ transformer, :mod:`qcc.quant.capability`):

* every activation a quantized node reads, and the output it writes, gets one
  QuantizeLinear; each consumer reads its own DequantizeLinear. When the producer is
  quantized, every consumer (float ones too) reads the DQ, because onnxruntime fuses
  ``DQ -> Conv -> Q`` only when the Conv's output feeds nothing but its Q;
* weights become int8 constants behind a DequantizeLinear (per channel on the op's output
  channel axis, symmetric, ``[-127, 127]``); a Conv/Gemm bias becomes int32 with scale
  exactly ``f32(x_scale * w_scale[c])``;
* ops whose Q/DQ onnxruntime drops (MaxPool, Reshape, Transpose, nearest Resize, ...) take
  their input's parameters for their outputs, so the drop is legal; they are quantized only
  when a neighbour is;
* a Relu, or a Clip whose lower bound is 0, is absorbed into the Q after it: that Q gets the
  zero point at the type minimum and a range inside the Clip's, and the tensor between the
  producer and the Relu gets no quantizer (fusion groups from ``fuse-activations`` are never
  split);
* a tensor read only by saturating functions (quantized Sigmoids, and the Mul of a SiLU,
  ``x * Sigmoid(x)``) gets the part of its observed range where their integer outputs still
  change, evaluated with their own output parameters (``saturation-cut``): clipping the
  rest changes none of their outputs, and the tails' levels go to the values that matter
  (a Sigmoid saturates at about +-6 for 8-bit outputs, while a detector's background
  objectness logits or a SiLU's inputs reach -30);
* graph inputs and outputs stay float: a Q/DQ pair sits after an input and before an output;
* everything else stays float between a DQ and a Q, with no quantizer between two float ops.
  The report lists every op kept in float and why.

For a ``.tflite`` output (``observe`` plans for the ``tflite`` table) the same placement
follows TFLite's quantization spec instead: int8 activations, int8 constant operands, fixed
LOGISTIC/SOFTMAX/TANH output parameters (unless a shared group has other sources: then the
backend requantizes), one scale across CONCATENATION and the other shared ops, and constant
Add/Sub operands no finer than 2^-9 of the output scale (XNNPACK's limit).

``on``/``exclude`` choose which nodes are quantized (``quantize exclude op(Softmax)``);
excluded nodes stay in float.

Does not fire when ``observe`` and ``calibrate`` have not run (an error), or on tensors with
no observations. Needs opset 13 for per-channel weights (an error names the fix).
"""

from __future__ import annotations

import collections

import numpy as np

from qcc.errors import PassError
from qcc.frontend import lower_model
from qcc.ir import DType, Graph, Node, Value, constant_value, fusion_group
from qcc.pipeline import PassContext, PassResult, register_pass
from qcc.quant.capability import TARGETS, Kind, OpCapability, Role
from qcc.quant.observers import observed_range
from qcc.quant.params import QParams, compute_qparams, quantize_bias, quantize_weight
from qcc.quant.params import dequantize as dequantize_array
from qcc.quant.params import quantize as quantize_array
from qcc.quant.plan import DEFAULT_ACTIVATIONS, get_plan
from qcc.quant.scheme import Granularity, QDType, QuantScheme

_REALIZED_GROUPS = {"conv-relu", "conv-clip"}  # what onnxruntime executes as one kernel
# grid points on which a saturating consumer's quantized output is evaluated (a few times
# finer than the 256 levels of the input, so the cut is within a fraction of a step)
_SATURATION_GRID = 4096


@register_pass(
    "quantize",
    selectable=True,
    valid={
        "concat_range_ratio": (lambda v: v >= 0, ">= 0"),
        "float_conv_inputs": (lambda v: v >= 0, ">= 0"),
        "target_sqnr": (lambda v: v >= 0, ">= 0 (dB; 0 turns the search off)"),
        "max_float": (lambda v: v >= 0, ">= 0"),
        "search_samples": (lambda v: v >= 1, ">= 1"),
    },
)
def quantize(
    graph: Graph,
    ctx: PassContext,
    *,
    concat_range_ratio: float = 16.0,
    saturation_cut: bool = True,
    float_conv_inputs: int = 0,
    target_sqnr: float = 0.0,
    max_float: int = 8,
    search_samples: int = 4,
) -> PassResult:
    """Insert QuantizeLinear/DequantizeLinear so the target runs the planned ops in integer.

    Options:
        concat-range-ratio: keep a Concat in float when the ranges of its inputs differ by more
            than this factor (one output scale would erase the small-range inputs: detector
            heads that concatenate box coordinates with probabilities); 0 disables the check.
        saturation-cut: narrow the range of a tensor read only by Sigmoid or x * Sigmoid(x)
            (SiLU) to where their quantized outputs still change, so the levels of the
            saturated tails (a detector's background logits, a SiLU's strongly negative
            inputs) go to the values that matter; false keeps the observed range.
        float-conv-inputs: keep a Conv (group 1) with at most this many input channels in
            float (image and audio stems); 0 (the default) keeps none. onnxruntime's float
            convolution plus a QuantizeLinear of its output is 2-2.4x faster than
            QuantizeLinear + QLinearConv at 1-3 input channels (x86, onnxruntime 1.31: 3->16
            channels 3x3/2 on 224x224, 264 vs 532 us), even at 4, slower from 8 up; and the
            first layer is the one most sensitive to quantization. The price: the stem's
            output is a float island for `qcc verify` (float kernels sum in their own order).
        target-sqnr: accuracy target in dB: the output SQNR against FP32 (worst graph output,
            on the first search-samples calibration samples) that the search for layers to
            keep in float aims at; 0 (the default) quantizes everything planned.
        max-float: the most op groups (an op with its fused activation) the accuracy target
            may return to float.
        search-samples: calibration samples the accuracy search runs (from the start of the
            set).
    """
    plan = get_plan(ctx.session, "quantize")
    if plan.calibrated == 0 and any(o.empty for o, _ in plan.observers.values()):
        raise PassError("quantize needs calibration: run `calibrate` before it")
    q = _Quantizer(graph, ctx, plan, concat_range_ratio, saturation_cut, float_conv_inputs)
    measure = None
    if target_sqnr > 0:
        from qcc.passes._float_search import search_float

        data = ctx.session.calibration
        if data is None:
            raise PassError("target-sqnr needs calibration data to measure the error on")
        measure = search_float(
            q, target_sqnr, max_float=max_float, samples=min(search_samples, data.count)
        )
    result = q.run()
    if measure is not None:  # the simulation's verdict, checked on the real placement
        real = measure(lower_model(ctx.model))
        result.stats["target:sqnr-dB-measured"] = round(real, 2)
        result.note(f"measured on the quantized model: {real:.2f} dB")
    return result


class _Quantizer:
    def __init__(
        self,
        graph: Graph,
        ctx: PassContext,
        plan,
        concat_range_ratio: float,
        saturation_cut: bool = True,
        float_conv_inputs: int = 0,
    ) -> None:
        self.concat_range_ratio = concat_range_ratio
        self.saturation_cut_enabled = saturation_cut
        self.float_conv_inputs = float_conv_inputs
        self.g = graph
        self.ctx = ctx
        self.plan = plan
        self.cap = TARGETS[plan.target]
        self.kind: dict[Node, Kind] = {}
        self.caps: dict[Node, OpCapability] = {}
        self.floats: collections.Counter[tuple[str, str]] = collections.Counter()
        self.result = PassResult()
        # nodes the accuracy target returns to float (qcc.passes._float_search)
        self.forced_float: set[Node] = set()
        # tensors whose range params() narrowed to their consumers' unsaturated inputs
        self.cut_tensors: list[Value] = []

    # ------------------------------------------------------------------ classification
    def classify(self) -> None:
        self.kind, self.caps, self.floats = {}, {}, collections.Counter()
        for node in self.g:
            cap = self.cap(node)
            self.caps[node] = cap
            reason = self._float_reason(node, cap)
            if reason:
                self.kind[node] = Kind.FLOAT
                plumbing = node.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant")
                if not plumbing and not reason.startswith("-"):
                    self.floats[(node.op_type, reason)] += 1
            else:
                self.kind[node] = cap.kind
        # a fusion group onnxruntime does not run as one integer kernel (an unrealized rule,
        # or an anchor it runs in float such as ConvTranspose) stays float as a whole: no
        # quantizer may go inside a group
        for node in list(self.kind):
            group = fusion_group(node)
            if group is None:
                continue
            realized = group.rule in _REALIZED_GROUPS and self.kind.get(group.anchor) is Kind.LINEAR
            if not realized and self.kind[node] is not Kind.FLOAT:
                self.kind[node] = Kind.FLOAT
                why = f"in fusion group {group.rule}, which onnxruntime runs in float"
                self.floats[(node.op_type, why)] += 1
        self._prune_shared()

    def _float_reason(self, node: Node, cap: OpCapability) -> str:
        if cap.kind is Kind.FLOAT:
            return cap.reason or "no integer kernel"
        if not self.ctx.selected(node):
            return "excluded by the recipe"
        if node in self.forced_float:
            return "kept in float for the accuracy target"
        if node not in self.plan.activations:
            return "not observed"
        if self.plan.activations[node].dtype.bits != 8:
            return "16-bit activations have no onnxruntime integer kernel"
        for i, role in cap.inputs:
            v = node.input(i)
            if role is Role.ACTIVATION and not self._quantizable(v):
                if v is not None and v.dtype is not None and v.dtype is not DType.FLOAT:
                    return "-non-float"  # shape plumbing on integers: not worth reporting
                return "an input has no observed float range"
        if not self._quantizable(node.outputs[0], allow_unobserved=cap.kind is Kind.ABSORBED):
            out = node.outputs[0]
            if out.dtype is not None and out.dtype is not DType.FLOAT:
                return "-non-float"
            return "its output has no observed float range"
        if cap.kind is Kind.LINEAR:
            w = self.plan.weights[node]
            a = self.plan.activations[node]
            if w.dtype is QDType.FLOAT:
                return "weights kept in float by the scheme"
            if a.dtype is QDType.INT8 and w.dtype is QDType.UINT8:
                raise PassError(
                    f"node {node.describe()}: int8 activations need int8 weights "
                    "(onnxruntime has no s8u8 kernel)"
                )
            if a.dtype.bits != 8 or w.dtype.bits != 8:
                return "16-bit linear ops have no onnxruntime integer kernel"
        if node.op_type == "Conv" and self.float_conv_inputs and int(node.attr("group", 1)) == 1:
            w = constant_value(node.input(1))
            if w is not None and w.ndim >= 3 and w.shape[1] <= self.float_conv_inputs:
                limit = self.float_conv_inputs
                return f"{w.shape[1]} input channel(s), float-conv-inputs = {limit}"
        if node.op_type == "Concat" and self.concat_range_ratio > 0:
            amax = []
            for v in node.inputs:
                r = self.range_of(v) if v is not None else None
                if r is not None and max(abs(r[0]), abs(r[1])) > 0:
                    amax.append(max(abs(r[0]), abs(r[1])))
            if amax and max(amax) / min(amax) > self.concat_range_ratio:
                return (
                    f"its inputs' ranges differ by more than {self.concat_range_ratio:g}x "
                    "(one scale would erase the small ones)"
                )
        if cap.kind is Kind.ABSORBED and node.op_type == "Clip":
            lo = constant_value(node.input(1))
            if node.input(1) is not None and (lo is None or float(lo) != 0.0):
                return "Clip whose lower bound is not 0 cannot be absorbed"
            if node.input(2) is not None and constant_value(node.input(2)) is None:
                return "Clip with a non-constant bound"
        return ""

    def _quantizable(self, v: Value | None, allow_unobserved: bool = False) -> bool:
        if v is None or v.dtype is not DType.FLOAT:
            return False
        if v.const is not None:
            return True
        return allow_unobserved or v in self.plan.observers or v in self.plan.derived

    def _prune_shared(self) -> None:
        """Keep a shared-params op only next to another quantized op (else it adds error and
        Q/DQ for nothing)."""
        changed = True
        while changed:
            changed = False
            for node, k in self.kind.items():
                if k is not Kind.SHARED:
                    continue
                up = any(
                    x is not None
                    and x.producer is not None
                    and self.kind.get(x.producer, Kind.FLOAT) is not Kind.FLOAT
                    for x in self._activation_inputs(node)
                )
                down = any(
                    self.kind.get(u.node, Kind.FLOAT) is not Kind.FLOAT
                    for o in node.outputs
                    for u in o.uses
                )
                if not (up or down):
                    self.kind[node] = Kind.FLOAT
                    changed = True

    def _activation_inputs(self, node: Node) -> list[Value | None]:
        return [node.input(i) for i, role in self.caps[node].inputs if role is Role.ACTIVATION]

    def quantized(self, node: Node | None) -> bool:
        return node is not None and self.kind.get(node, Kind.FLOAT) is not Kind.FLOAT

    # ------------------------------------------------------------------ what gets a Q
    def internal(self, v: Value) -> bool:
        """A producer output consumed only by the Relu/Clip absorbed into the next Q."""
        p = v.producer
        if p is None or self.kind.get(p) not in (Kind.LINEAR, Kind.INTEGER) or v.is_graph_output:
            return False
        users = v.consumers()
        return (
            len(users) == 1 and self.kind.get(users[0]) is Kind.ABSORBED and v is users[0].input(0)
        )

    def tensors(self) -> list[Value]:
        chosen: dict[Value, None] = {}
        for node, k in self.kind.items():
            if k is Kind.FLOAT:
                continue
            for i, role in self.caps[node].inputs:
                v = node.input(i)
                if role is Role.ACTIVATION and v is not None and not self.internal(v):
                    chosen[v] = None
            outs = node.outputs if k is Kind.SHARED else node.outputs[:1]
            for o in outs:
                if o.dtype is DType.FLOAT and not self.internal(o) and o.name:
                    chosen[o] = None
        return list(chosen)

    # ------------------------------------------------------------------ parameters
    def params(self, tensors: list[Value]) -> dict[Value, QParams]:
        parent: dict[Value, Value] = {v: v for v in tensors}

        def find(v: Value) -> Value:
            while parent[v] is not v:
                parent[v] = parent[parent[v]]
                v = parent[v]
            return v

        for node, k in self.kind.items():
            if k is Kind.SHARED:  # one scale for the output and every activation input
                for x in self._activation_inputs(node):
                    for o in node.outputs:
                        if o in parent and x in parent:
                            parent[find(o)] = find(x)
        groups: dict[Value, list[Value]] = collections.defaultdict(list)
        for v in tensors:
            groups[find(v)].append(v)
        out: dict[Value, QParams] = {}
        ranges: dict[Value, tuple[float, float]] = {}
        self.cut_tensors = []
        for root, members in groups.items():
            ranges[root] = self._group_range(members)
            qp = self._group_qparams(members, *ranges[root])
            for v in members:
                out[v] = qp
        # a tensor read only by saturating functions (Sigmoid, x * Sigmoid(x)) needs no levels
        # where their quantized outputs no longer change: consumers' parameters first
        order = {n: i for i, n in enumerate(self.g)}

        def position(root: Value) -> int:
            return max(order.get(v.producer, -1) for v in groups[root])

        cut_groups = (
            sorted(groups, key=position, reverse=True) if self.saturation_cut_enabled else []
        )
        for root in cut_groups:
            members = groups[root]
            lo, hi = ranges[root]
            cut = self._saturation_cut(members, lo, hi, out)
            if cut is None:
                continue
            qp = self._group_qparams(members, *cut)
            for v in members:
                out[v] = qp
            self.cut_tensors.extend(members)
        if self.cap.min_constant_ratio:
            self._floor_constant_scales(out)
        return out

    def _group_clamps(self, members: list[Value]) -> tuple[float, float, QuantScheme]:
        """``(clamp_lo, clamp_hi, scheme)`` of a parameter group: the bounds every source of
        the group guarantees (an absorbed Relu/Clip, a quantized Sigmoid/Softmax; a shared
        op's output has its input's) and the scheme of its producer."""
        scheme = None
        # one Relu'd input of a Concat must not clip the others: the loosest source decides
        source_lo, source_hi = [], []
        for v in members:
            s = self.scheme_of(v)
            if scheme is None or (
                v.producer is not None and self.kind.get(v.producer) is not Kind.SHARED
            ):
                scheme = s or scheme
            p = v.producer
            if p is not None and self.kind.get(p) is Kind.SHARED:
                continue
            c_lo, c_hi = -np.inf, np.inf
            if p is not None and self.kind.get(p) is Kind.ABSORBED:
                c_lo = 0.0
                if p.op_type == "Clip" and p.input(2) is not None:
                    c_hi = float(constant_value(p.input(2)))
            if p is not None and p.op_type in ("Softmax", "Sigmoid") and self.quantized(p):
                c_lo = 0.0
            source_lo.append(c_lo)
            source_hi.append(c_hi)
        clamp_lo = min(source_lo, default=-np.inf)
        clamp_hi = max(source_hi, default=np.inf)
        return clamp_lo, clamp_hi, scheme or DEFAULT_ACTIVATIONS

    def _group_range(self, members: list[Value]) -> tuple[float, float]:
        """The union of the members' observed ranges, inside the group's clamps."""
        lo, hi = np.inf, -np.inf
        for v in members:
            r = self.range_of(v)
            if r is not None:
                lo, hi = min(lo, r[0]), max(hi, r[1])
        if not np.isfinite(lo):
            lo, hi = 0.0, 0.0
        clamp_lo, clamp_hi, _ = self._group_clamps(members)
        lo, hi = max(lo, clamp_lo), min(hi, clamp_hi)
        return lo, max(hi, lo)

    def _group_qparams(self, members: list[Value], lo: float, hi: float) -> QParams:
        """The group's parameters for values in ``[lo, hi]``."""
        clamp_lo, clamp_hi, scheme = self._group_clamps(members)
        symmetric = scheme.symmetric and clamp_lo < 0  # absorbed: zero point at the minimum
        qp = compute_qparams(lo, hi, scheme.dtype, symmetric=symmetric)
        if np.isfinite(clamp_hi):
            qp = _fit_below(qp, clamp_hi)
        fixed = self.fixed_output(members)
        if fixed is not None and qp.dtype is QDType.INT8:
            qp = QParams(
                QDType.INT8,
                np.asarray(fixed[0], np.float32),
                np.asarray(fixed[1], np.int8),
            )
        return qp

    def _saturation_cut(
        self, members: list[Value], lo: float, hi: float, out: dict[Value, QParams]
    ) -> tuple[float, float] | None:
        """A narrower range for a group read only by saturating functions, or None.

        Every consumer of every member must be a quantized Sigmoid or the Mul of a SiLU
        (``x * Sigmoid(x)``), with its output's parameters in ``out``. Evaluated on a fine
        grid of ``[lo, hi]`` with the consumers' own quantization (the SiLU's Mul reads the
        quantized Sigmoid), each consumer's integer output is constant below some ``a`` and
        above some ``b``; clipping the input to the widest such ``[a, b]`` (plus one input
        step for its rounding) changes no consumer's output, and the levels the tails took
        go to the values that matter: a Sigmoid's input below about -6 (the saturated
        background of a detector's objectness logits, a SiLU's strongly negative inputs)
        only costs resolution."""
        if hi <= lo:
            return None
        t = np.linspace(lo, hi, _SATURATION_GRID, dtype=np.float32)
        a, b = np.inf, -np.inf
        for v in members:
            if v.is_graph_output or not v.uses:
                return None
            for user in v.consumers():
                levels = self._saturating_output(user, v, t, out)
                if levels is None:
                    return None
                changed = np.nonzero(levels != levels[0])[0]
                if changed.size == 0:  # constant over the whole range: no bound from it
                    continue
                a = min(a, float(t[changed[0] - 1]))
                b = max(b, float(t[np.nonzero(levels != levels[-1])[0][-1] + 1]))
        if not np.isfinite(a):
            return None
        step = (b - a) / 255.0
        a, b = max(lo, a - step), min(hi, b + step)
        return (a, b) if b - a < hi - lo else None

    def _saturating_output(
        self, user: Node, v: Value, t: np.ndarray, out: dict[Value, QParams]
    ) -> np.ndarray | None:
        """The integer output of ``user`` for inputs ``v = t``, when ``user`` is a quantized
        Sigmoid of ``v`` or the Mul of ``v * Sigmoid(v)``; else None."""
        if not self.quantized(user) or self.internal(user.outputs[0]):
            return None
        qy = out.get(user.outputs[0])
        if qy is None or qy.per_channel:
            return None
        if user.op_type == "Sigmoid" and user.input(0) is v:
            return quantize_array(_sigmoid(t), qy)
        if user.op_type == "Mul" and len(user.inputs) == 2 and v in user.inputs:
            other = user.input(1) if user.input(0) is v else user.input(0)
            s = other.producer if other is not None else None
            if s is None or s.op_type != "Sigmoid" or s.input(0) is not v or other is v:
                return None
            qs = out.get(other)
            if not self.quantized(s) or qs is None:
                return None
            sig = dequantize_array(quantize_array(_sigmoid(t), qs), qs)
            return quantize_array(t * sig, qy)
        return None

    def _floor_constant_scales(self, out: dict[Value, QParams]) -> None:
        """A constant operand of an integer Add/Sub gets a scale of at least
        ``min_constant_ratio`` times the output's: XNNPACK delegates an int8 ADD only when
        each input's scale over the output's is at least 2^-10, and a tiny learned bias
        (PP-LCNet's 1.7e-5) quantized at ``|b| / 127`` falls below it; at the floor the
        constant still lands within a fraction of an output step of its value."""
        floor = self.cap.min_constant_ratio
        for node, k in self.kind.items():
            if k is not Kind.INTEGER or node.op_type not in ("Add", "Sub"):
                continue
            y = node.outputs[0]
            if self.internal(y):  # the Relu/Clip absorbed into the Q after it
                y = y.consumers()[0].outputs[0]
            qy = out.get(y)
            if qy is None:
                continue
            least = np.float32(float(qy.scale) * floor)
            for v in node.inputs[:2]:
                qv = out.get(v) if v is not None and v.const is not None else None
                if qv is None or qv.per_channel or qv.scale >= least:
                    continue
                out[v] = QParams(
                    qv.dtype, np.asarray(least, np.float32), np.zeros((), qv.zero_point.dtype)
                )

    def fixed_output(self, members: list[Value]) -> tuple[float, int] | None:
        """The (scale, zero point) the target fixes for a group whose sources are all outputs
        of one kind of fixed-output op (TFLite's LOGISTIC, SOFTMAX and TANH), or None.

        A group that also has other sources (a Concat of box coordinates and sigmoid scores)
        takes its parameters from the ranges: fixing them would clip the other sources to the
        sigmoid's [0, 1); the backend requantizes the op's fixed output into the group's."""
        fixed = set()
        for v in members:
            p = v.producer
            if p is not None and self.kind.get(p) is Kind.SHARED:
                continue
            if p is None or not self.quantized(p) or p.op_type not in self.cap.fixed_outputs:
                return None
            fixed.add(self.cap.fixed_outputs[p.op_type])
        return fixed.pop() if len(fixed) == 1 else None

    def range_of(self, v: Value) -> tuple[float, float] | None:
        if v.const is not None:
            c = v.const.astype(np.float64)
            return (float(c.min()), float(c.max())) if c.size else (0.0, 0.0)
        step = self.plan.derived.get(v)
        if step is not None:  # a monotone scalar map of another tensor (observe._derived)
            src, op, a, b = step
            r = self.range_of(src)
            if r is None:
                return None
            if op == "scale":
                return r[0] * a, r[1] * a
            if op == "shift":
                return r[0] + a, r[1] + a
            if op == "sigmoid":
                return float(_sigmoid(np.float32(r[0]))), float(_sigmoid(np.float32(r[1])))
            if op == "tanh":
                return float(np.tanh(np.float32(r[0]))), float(np.tanh(np.float32(r[1])))
            return min(max(r[0], a), b), min(max(r[1], a), b)
        entry = self.plan.observers.get(v)
        if entry is None:
            return None
        obs, scheme = entry
        lo, hi = observed_range(obs, scheme.observer, scheme.dtype, scheme.symmetric)
        return float(np.min(lo)), float(np.max(hi))

    def scheme_of(self, v: Value) -> QuantScheme | None:
        entry = self.plan.observers.get(v)
        if entry is not None:
            return entry[1]
        if v in self.plan.derived:
            return self.scheme_of(self.plan.derived[v][0])
        p = v.producer
        if p is not None and p in self.plan.activations:
            return self.plan.activations[p]
        for u in v.consumers():
            if u in self.plan.activations:
                return self.plan.activations[u]
        return None

    # ------------------------------------------------------------------ rewriting
    def run(self) -> PassResult:
        self.classify()
        self.restore_float_biases()
        tensors = self.tensors()
        qparams = self.params(tensors)
        opset = self.g.opset_imports.get("", 0)
        for node, k in list(self.kind.items()):
            if k is Kind.LINEAR:
                self.weights(node, qparams, opset)
        for v in tensors:
            self.insert_qdq(v, qparams[v])
        counts = collections.Counter(
            (n.op_type, k.value) for n, k in self.kind.items() if k is not Kind.FLOAT
        )
        for (op, kind), n in sorted(counts.items()):
            self.result.count(f"{kind}:{op}", n)
        self.result.stats["tensors"] = len(tensors)
        if self.cut_tensors:
            self.result.count("saturation-cut", len(self.cut_tensors))
        if self.floats:
            listing = ", ".join(
                f"{op} x{n} ({why})" for (op, why), n in sorted(self.floats.items())
            )
            self.result.note(f"kept in float: {listing}")
        return self.result

    def restore_float_biases(self) -> None:
        """``correct-bias`` corrected for weight quantization; an op kept in float gets its
        original bias back."""
        restored = 0
        for node, orig in self.plan.float_bias.items():
            if node.is_erased or self.kind.get(node, Kind.FLOAT) is not Kind.FLOAT:
                continue
            old = node.input(2)
            if orig is None:
                node.set_inputs(node.inputs[:2])
            else:
                node.replace_input(2, self.g.add_constant(orig, f"{old.name}_original"))
            self.g.remove_unused_constants([old])
            restored += 1
        if restored:
            self.result.stats["float-bias-restored"] = restored

    def weights(self, node: Node, qparams: dict[Value, QParams], opset: int) -> None:
        for i, (q, scale, zero, axis) in self.weight_arrays(node, qparams, opset).items():
            self._dq_const(node, i, q, scale, zero, axis, f"{node.input(i).name}_quantized")

    def weight_arrays(
        self, node: Node, qparams: dict[Value, QParams], opset: int
    ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, int | None]]:
        """The quantized weight and bias of a linear node: ``{input index: (integers, scale,
        zero point, axis)}``. Does not change the graph (the accuracy search simulates with
        exactly these values)."""
        cap = self.caps[node]
        scheme = self.plan.weights[node]
        xq = qparams.get(node.input(0))
        out: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, int | None]] = {}
        wq = None
        for i, role in cap.inputs:
            v = node.input(i)
            if role is Role.WEIGHT:
                w = constant_value(v)
                per_channel = scheme.granularity is Granularity.PER_CHANNEL
                axis = cap.weight_axis if scheme.axis is None else scheme.axis
                if per_channel and opset < 13:
                    raise PassError(
                        f"node {node.describe()}: per-channel weights need opset 13 or later and "
                        f"the model is opset {opset}; add `min_opset = 13` to the recipe's "
                        "target block (or use a per_tensor weight scheme)"
                    )
                bias = next(
                    (
                        constant_value(node.input(j))
                        for j, r in cap.inputs
                        if r is Role.BIAS and j < len(node.inputs) and node.input(j) is not None
                    ),
                    None,
                )
                per_tensor_x = xq is not None and not xq.per_channel
                q, wq = quantize_weight(
                    w,
                    scheme,
                    axis,
                    bias=bias if per_tensor_x else None,
                    x_scale=float(xq.scale) if per_tensor_x else None,
                    on_widen=lambda n: self.result.count("weight-scale-widened-for-int32-bias", n),
                )
                out[i] = (q, wq.scale, wq.zero_point, wq.axis)
            elif role is Role.BIAS:
                b = constant_value(v)
                if wq is None or xq is None or xq.per_channel:
                    continue
                q, bscale = quantize_bias(b.reshape(-1), xq.scale, wq.scale)
                if wq.per_channel:
                    scale, zero, axis = bscale, np.zeros(bscale.shape, np.int32), 0
                else:  # one weight scale: one bias scale
                    scale, zero, axis = (
                        bscale.reshape(-1)[0].reshape(()),
                        np.zeros((), np.int32),
                        None,
                    )
                out[i] = (q.reshape(b.shape), scale, zero, axis)
        return out

    def _dq_const(
        self,
        node: Node,
        index: int,
        q: np.ndarray,
        scale: np.ndarray,
        zero_point: np.ndarray,
        axis: int | None,
        hint: str,
    ) -> None:
        g = self.g
        old = node.input(index)
        qv = g.add_constant(q, hint)
        sv = g.add_constant(scale, f"{hint}_scale")
        zv = g.add_constant(zero_point, f"{hint}_zero_point")
        attrs = {"axis": axis} if scale.ndim == 1 else {}
        dq = Node(
            "DequantizeLinear",
            [qv, sv, zv],
            attrs=attrs,
            name=g.names.fresh_node(f"{node.name or node.op_type}/DequantizeLinear_{index}"),
        )
        g.insert_before(node, dq)
        node.replace_input(index, dq.output)
        dq.output.dtype = DType.FLOAT
        dq.output.shape = tuple(q.shape)
        g.remove_unused_constants([old])

    def insert_qdq(self, v: Value, qp: QParams) -> None:
        g = self.g
        uses = list(v.uses)
        if not uses and not v.is_graph_output:
            return
        if v.const is not None and not v.is_graph_input:
            # a constant operand (Add's bias, Mul's scale): quantize it now, behind a DQ. On
            # x86 onnxruntime computes int8 activations in the uint8 domain and fuses only
            # uint8 constant operands, which have their own parameters anyway (TFLite: int8,
            # or, when an op shares parameters, the shared ones).
            if qp.dtype is QDType.INT8 and self.cap.uint8_constants:
                c = v.const.astype(np.float64)
                qp = compute_qparams(c.min(), c.max(), QDType.UINT8, symmetric=False)
            v.quant = qp
            for use in uses:
                if self.quantized(use.node):
                    q = quantize_array(v.const, qp)
                    self._dq_const(
                        use.node, use.index, q, qp.scale, qp.zero_point, None, f"{v.name}_quantized"
                    )
            return
        producer_q = self.quantized(v.producer) and not self.internal(v)
        scale = g.add_constant(qp.scale, f"{v.name}_scale")
        zp = g.add_constant(qp.zero_point, f"{v.name}_zero_point")
        q = Node(
            "QuantizeLinear", [v, scale, zp], name=g.names.fresh_node(f"{v.name}_QuantizeLinear")
        )
        q.output.dtype = DType.from_numpy(qp.zero_point.dtype)
        q.output.shape = v.shape
        if v.producer is not None and v.producer.graph is g:
            g.insert_after(v.producer, q)
        else:
            first = _first_user(g, [u.node for u in uses])
            if first is None:
                g.append(q)
            else:
                g.insert_before(first, q)
        v.quant = qp
        self.plan.quantized[v.name] = (q.output.name, qp)
        for use in uses:
            consumer = use.node
            if not producer_q and not self.quantized(consumer):
                continue  # a float producer's float consumers keep the exact value
            dq = Node(
                "DequantizeLinear",
                [q.output, scale, zp],
                name=g.names.fresh_node(f"{v.name}_DequantizeLinear"),
            )
            dq.output.dtype = DType.FLOAT
            dq.output.shape = v.shape
            if consumer.graph is g:
                g.insert_before(consumer, dq)
            else:  # a read from inside a subgraph: dequantize in the main graph
                g.insert_after(q, dq)
            consumer.replace_input(use.index, dq.output)
        if v.is_graph_output and producer_q:
            dq = Node(
                "DequantizeLinear",
                [q.output, scale, zp],
                name=g.names.fresh_node(f"{v.name}_DequantizeLinear"),
            )
            dq.output.dtype, dq.output.shape = v.dtype, v.shape
            g.insert_after(q, dq)
            name = v.name
            g.outputs[:] = [dq.output if o is v else o for o in g.outputs]
            v.rename(g.names.fresh_value(f"{name}_float"), reuse=True)
            dq.output.rename(name, reuse=True)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-t.astype(np.float64)))).astype(np.float32)


def _first_user(g: Graph, users: list[Node]) -> Node | None:
    wanted = {id(u) for u in users if u.graph is g}
    for n in g:
        if id(n) in wanted:
            return n
    return None


def _fit_below(qp: QParams, hi: float) -> QParams:
    """Shrink the scale by ulps until the Q's top value ``(qmax - zp) * scale`` is <= ``hi``,
    so onnxruntime sees the range inside the Clip's and absorbs it."""
    qmax = qp.dtype.qrange[1]
    scale = np.float32(qp.scale)
    zp = int(qp.zero_point)
    while np.float32(np.float32(qmax - zp) * scale) > np.float32(hi) and scale > 0:
        scale = np.nextafter(scale, np.float32(0))
    return QParams(qp.dtype, np.asarray(scale, np.float32), qp.zero_point, qp.axis)
