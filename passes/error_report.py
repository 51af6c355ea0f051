"""``error-report``: how much each quantized tensor differs from FP32, worst first.

Runs the FP32 model (as ``observe`` saw it) and the quantized model on the first calibration
samples, fetching every quantized tensor: the FP32 value by its name, the quantized one at its
QuantizeLinear's output, dequantized here. The SQNR (signal-to-quantization-noise ratio, dB,
energies summed over the samples) of each tensor goes into the report, worst first, together
with the SQNR of every graph output. A tensor with a low SQNR right after a node whose input
SQNR is high is where the error enters; exclude that node (``quantize exclude``) or give it a
wider scheme (``observe ... where ...``).

Does not change the graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from qcc.errors import PassError
from qcc.frontend import lower_model
from qcc.frontend.ort_eval import session_options
from qcc.ir import Graph
from qcc.pipeline import PassContext, PassResult, register_pass
from qcc.quant.params import dequantize, energy_db
from qcc.quant.plan import get_plan


@register_pass("error-report")
def error_report(graph: Graph, ctx: PassContext, *, samples: int = 8, show: int = 10) -> PassResult:
    """Report the SQNR of every quantized tensor and graph output against FP32, worst first.

    Options:
        samples: how many calibration samples to run (from the start of the set).
        show: how many of the worst tensors to list in the report.
    """
    plan = get_plan(ctx.session, "error-report")
    data = ctx.session.calibration
    if data is None or not plan.quantized:
        raise PassError("error-report needs observe, calibrate and quantize before it")
    if plan.fp32_model is None:
        raise PassError("error-report cannot keep a copy of a model above 2 GB")
    fp32 = onnx.ModelProto()
    fp32.ParseFromString(plan.fp32_model)
    quant = lower_model(ctx.model)
    outputs = [v.name for v in graph.outputs]
    # a later pass (fold-dequantize-scale) may have folded a quantizer away
    present = {o for n in quant.graph.node for o in n.output}
    fp32_names = [n for n in plan.quantized if n not in outputs and plan.quantized[n][0] in present]
    q_names = [plan.quantized[n][0] for n in fp32_names]
    _add_outputs(fp32, fp32_names)
    _add_outputs(quant, q_names)
    fs = ort.InferenceSession(
        fp32.SerializeToString(), session_options(optimize=True), providers=["CPUExecutionProvider"]
    )
    qs = ort.InferenceSession(
        quant.SerializeToString(),
        session_options(optimize=True),
        providers=["CPUExecutionProvider"],
    )
    energy: dict[str, list[float]] = {}
    n = min(samples, data.count)
    for i in range(n):
        feed = data.get(i)
        fa = dict(zip(outputs + fp32_names, fs.run(outputs + fp32_names, feed), strict=True))
        qa = dict(zip(outputs + q_names, qs.run(outputs + q_names, feed), strict=True))
        for name in outputs:
            _accumulate(energy, f"output {name}", fa[name], qa[name])
        for name, qname in zip(fp32_names, q_names, strict=True):
            _accumulate(energy, name, fa[name], dequantize(qa[qname], plan.quantized[name][1]))
    sqnr = {k: energy_db(s, e) for k, (s, e) in energy.items()}
    result = PassResult()
    result.stats["samples"] = n
    for name in outputs:
        result.stats[f"sqnr-dB:{name}"] = round(sqnr[f"output {name}"], 2)
    ranked = sorted((v, k) for k, v in sqnr.items() if not k.startswith("output "))
    for v, k in ranked[:show]:
        result.note(f"{v:7.2f} dB  {k}")
    ctx.session.state["error_report"] = sqnr
    return result


def _add_outputs(proto: onnx.ModelProto, names: list[str]) -> None:
    have = {o.name for o in proto.graph.output}
    for n in names:
        if n not in have:
            proto.graph.output.append(onnx.ValueInfoProto(name=n))
            have.add(n)


def _accumulate(energy: dict[str, list[float]], key: str, ref: np.ndarray, got: np.ndarray) -> None:
    ref64 = np.asarray(ref, dtype=np.float64)
    e = energy.setdefault(key, [0.0, 0.0])
    e[0] += float(np.sum(ref64**2))
    e[1] += float(np.sum((ref64 - np.asarray(got, dtype=np.float64)) ** 2))
