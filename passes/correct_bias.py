"""``correct-bias``: empirical bias correction of quantized weights (Nagel et al. 2019,
"Data-Free Quantization Through Weight Equalization and Bias Correction", section 4.2).

Quantizing the weights of ``y = W x + b`` to ``W_q`` shifts the expected output of each
output channel by ``E[(W_q - W) x]``: rounding errors that do not average out over the
input channels (few input channels, as in depthwise convolutions, or inputs with a large
mean, as after a ReLU) add a constant offset the following layers amplify. The pass
measures ``E[(W - W_q) x]`` on calibration data, with ``x`` the op's FP32 input and the mean
over samples, batch and spatial positions (the convolution is linear in its weights, so this
is the mean difference between the float output and the output with quantized weights), and
adds it to the bias: ``b' = b + E[(W - W_q) x]``, so ``E[W_q x + b'] = E[W x + b]``.

``W_q`` is computed exactly as ``quantize`` will (the op's weight scheme, the same rounding),
so the correction matches the written model; the corrected bias then goes through
``quantize``'s int32 rule unchanged (scale exactly ``f32(x_scale * w_scale[c])``). One
onnxruntime run of the FP32 model computes every correction: each corrected op gets an extra
branch ``op(x, W - W_q)`` reduced to its per-channel mean. The original bias is kept in the
quantization plan, and ``quantize`` puts it back on an op it keeps in float.

Fires on Conv (grouped and depthwise included) and Gemm that ``observe`` planned with 8-bit
integer weights and activations and whose weights are constant; one without a bias gets one.
Does not fire on MatMul (it has no bias input; the Add after it is a separate op), on
ConvTranspose (onnxruntime runs it in float), on a Gemm whose C is not a constant vector or
whose beta is not 1, or inside subgraphs. Run it after ``calibrate`` and before
``quantize``.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from qcc.errors import PassError
from qcc.frontend import lower_model
from qcc.frontend.ort_eval import session_options
from qcc.ir import Graph, Node, constant_value
from qcc.pipeline import PassContext, PassResult, register_pass
from qcc.quant.capability import TARGETS, Kind, Role
from qcc.quant.params import dequantize, quantize_weight
from qcc.quant.plan import get_plan
from qcc.quant.scheme import QDType


@register_pass("correct-bias", selectable=True, valid={"samples": (lambda v: v >= 1, ">= 1")})
def correct_bias(graph: Graph, ctx: PassContext, *, samples: int = 64) -> PassResult:
    """Shift each quantized Conv/Gemm bias by the mean output error its weight quantization
    causes on the calibration data.

    Options:
        samples: calibration samples the mean is taken over (from the start of the set).
    """
    plan = get_plan(ctx.session, "correct-bias")
    data = ctx.session.calibration
    if data is None:
        raise PassError(
            "no calibration data: give --calib PATH or add a calibration { data ... } block"
        )
    capability = TARGETS[plan.target]
    targets: list[tuple[Node, np.ndarray]] = []  # (op, W - W_q)
    for node in graph:
        if node not in plan.weights or not ctx.selected(node):
            continue
        if node.op_type not in ("Conv", "Gemm") or node.domain:
            continue
        cap = capability(node)
        w_scheme, a_scheme = plan.weights[node], plan.activations[node]
        if cap.kind is not Kind.LINEAR or (1, Role.WEIGHT) not in cap.inputs:
            continue
        if w_scheme.dtype.bits != 8 or a_scheme.dtype.bits != 8:
            continue
        if a_scheme.dtype is QDType.FLOAT or w_scheme.dtype is QDType.FLOAT:
            continue
        if node.op_type == "Gemm" and node.input(2) is None and node.attr("beta", 1.0) != 1.0:
            continue
        w = constant_value(node.input(1))
        axis = cap.weight_axis if w_scheme.axis is None else w_scheme.axis
        q, wq = quantize_weight(w, w_scheme, axis)
        delta = (w.astype(np.float32) - dequantize(q, wq)).astype(np.float32)
        if np.any(delta):
            targets.append((node, delta))
    result = PassResult()
    if not targets:
        return result
    means = _measure(ctx, targets, min(samples, data.count))
    largest = 0.0
    for (node, _), shift in zip(targets, means, strict=True):
        old = node.input(2)
        b = constant_value(old)
        plan.float_bias.setdefault(node, None if b is None else np.array(b))
        base = np.zeros(shift.shape, np.float32) if b is None else b.astype(np.float32)
        new = graph.add_constant(
            (base + shift).astype(np.float32), f"{node.name or 'bias'}_corrected"
        )
        if old is None:
            node.set_inputs([*node.inputs[:2], new])
        else:
            node.replace_input(2, new)
            graph.remove_unused_constants([old])
        largest = max(largest, float(np.max(np.abs(shift))))
        result.count(f"corrected:{node.op_type}")
    result.note(
        f"{len(targets)} biases corrected over {min(samples, data.count)} samples; "
        f"largest shift {largest:.4g}"
    )
    return result


def _measure(ctx: PassContext, targets: list[tuple[Node, np.ndarray]], n: int) -> list[np.ndarray]:
    """Per target, the mean over ``n`` samples of ``op(x, W - W_q)`` per output channel."""
    proto = lower_model(ctx.model)
    gp = proto.graph
    lowered = dict(zip(ctx.model.graph, list(gp.node), strict=True))
    opset = ctx.model.graph.opset_imports.get("", 0)
    names: list[str] = []
    for k, (node, delta) in enumerate(targets):
        dw, err, mean = (f"qcc.correct-bias.{what}.{k}" for what in ("delta", "error", "mean"))
        gp.initializer.append(numpy_helper.from_array(delta, dw))
        src = lowered[node]
        op = helper.make_node(node.op_type, [src.input[0], dw], [err])
        if node.op_type == "Conv":
            op.attribute.extend(src.attribute)
            axes = [0, *range(2, delta.ndim)]
        else:  # Gemm without C: alpha * A' B'
            op.attribute.extend(a for a in src.attribute if a.name in ("alpha", "transA", "transB"))
            axes = [0]
        gp.node.append(op)
        if opset >= 18:
            ax = f"qcc.correct-bias.axes.{k}"
            gp.initializer.append(numpy_helper.from_array(np.array(axes, np.int64), ax))
            gp.node.append(helper.make_node("ReduceMean", [err, ax], [mean], keepdims=0))
        else:
            gp.node.append(helper.make_node("ReduceMean", [err], [mean], axes=axes, keepdims=0))
        gp.output.append(onnx.ValueInfoProto(name=mean))
        names.append(mean)
    sess = ort.InferenceSession(
        proto.SerializeToString(),
        session_options(optimize=True),
        providers=["CPUExecutionProvider"],
    )
    sums: list[np.ndarray | float] = [0.0] * len(targets)
    advance = ctx.session.progress_bar(n, "correcting biases")
    for i in range(n):
        for k, o in enumerate(sess.run(names, ctx.session.calibration.get(i))):
            sums[k] = sums[k] + o.astype(np.float64)
        advance(1)
    return [np.asarray(np.asarray(s) / n, dtype=np.float32) for s in sums]
