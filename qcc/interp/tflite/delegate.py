"""Which operators LiteRT's default XNNPACK delegate takes, so the ``tflite-xnnpack`` profile
runs each operator in the arithmetic LiteRT actually uses.

Under ``OpResolverType.AUTO``/``BUILTIN`` LiteRT hands every operator the XNNPACK delegate
accepts to XNNPACK (float32 requantization, ``arith="xnnpack"``); the rest run in TFLite's
optimized builtin kernels (``arith="builtin"``). The rules here were read in
``tflite/delegates/xnnpack/xnnpack_delegate.cc`` and measured: ``tests/interp/tflite`` compares
:func:`xnnpack_takes` with the partition LiteRT reports (its ``DELEGATE`` node) on random
single-op models, and ``qcc verify`` checks it again on every model it runs.

Quantization of the 8-bit tensors an operator reads and writes: the delegate's activation type
checks (``CheckTensorFloat32OrQInt8Type``, ``CheckTensorQInt8OrQUInt8Type`` and
``CheckTensorFloat32OrQUInt8Type`` in ``xnnpack_delegate.cc``) accept an int8/uint8 tensor only
with affine quantization, exactly one scale and ``quantized_dimension == 0``. A per-tensor
tensor whose ``quantized_dimension`` is another axis (which TFLite's own kernels ignore) keeps
the operator out of XNNPACK, whatever its shape: an ADD whose per-tensor constant says
``quantized_dimension: 1`` runs in the builtin kernels. Not checked that way: the weights
(input 1) of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV and BATCH_MATMUL,
checked by ``CheckTensorFloat32OrQCInt8Type``, which looks at ``quantized_dimension`` only when
there is more than one scale, and TRANSPOSE's output, which ``VisitTransposeNode`` does not
type-check. Measured on ai-edge-litert 2.3.0 for every tensor of every int8 operator in
``_QS8`` (``tests/interp/tflite/test_delegate.py``; the source read was LiteRT's main branch,
whose BATCH_MATMUL no longer takes an int8 A, so the measurement is what this follows).
"""

from __future__ import annotations

import numpy as np

from qcc.interp.tflite.model import Operator, Tensor, TFLiteModel

# int8 operators the delegate takes (measured with ai-edge-litert 2.3.0); the conditions below
# narrow some of them
_QS8 = {
    "ADD",
    "SUB",
    "MUL",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "TRANSPOSE_CONV",
    "MAX_POOL_2D",
    "MEAN",
    "CONCATENATION",
    "LOGISTIC",
    "TANH",
    "LEAKY_RELU",
    "PAD",
    "TRANSPOSE",
    "DEPTH_TO_SPACE",
    "RESHAPE",
    "RESIZE_BILINEAR",
    "SPLIT",
    "QUANTIZE",
    "DEQUANTIZE",
    "BATCH_MATMUL",
    "STRIDED_SLICE",
}
_F32 = _QS8 | {
    "AVERAGE_POOL_2D",
    "SOFTMAX",
    "HARD_SWISH",
    "RELU",
    "RELU6",
    "DIV",
    "SQRT",
    "RSQRT",
    "MAXIMUM",
    "MINIMUM",
    "ABS",
    "NEG",
    "SQUARE",
    "SQUARED_DIFFERENCE",
}


# operators whose input 1 the delegate checks as a weight (one scale: any quantized_dimension)
_WEIGHT_AT_1 = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"}
# operators whose outputs the delegate does not type-check
_OUTPUT_UNCHECKED = {"TRANSPOSE"}
_8BIT = (np.dtype(np.int8), np.dtype(np.uint8))


def _t(model: TFLiteModel, i: int) -> Tensor | None:
    return None if i < 0 else model.tensors[i]


def _ratio_ok(num: float, den: float, lo: float, hi: float) -> bool:
    r = np.float32(num) / np.float32(den)
    return lo <= r < hi


def _activation_quant_ok(t: Tensor | None) -> bool:
    """Whether an 8-bit tensor passes the delegate's activation checks: affine, one scale,
    ``quantized_dimension == 0`` (tensors of other types are not concerned)."""
    if t is None or t.dtype not in _8BIT:
        return True
    return t.quant is not None and t.quant.scale.size == 1 and t.quant.dim == 0


def xnnpack_takes(model: TFLiteModel, op: Operator) -> bool:
    """Whether the XNNPACK delegate (LiteRT's default) runs ``op``."""
    ins = [_t(model, i) for i in op.inputs]
    outs = [_t(model, i) for i in op.outputs]
    if not outs or outs[0] is None:
        return False
    y = outs[0]
    x = ins[0] if ins else None
    quant = y.dtype in (np.dtype(np.int8), np.dtype(np.uint8)) or (
        x is not None and x.dtype in (np.dtype(np.int8), np.dtype(np.uint8))
    )
    name = op.op
    if not quant:
        return name in _F32 and all(
            t is None or t.dtype in (np.dtype(np.float32), np.dtype(np.int32)) for t in ins
        )
    if name not in _QS8:
        return False
    for t in (*ins, *outs):
        # a subnormal, zero or infinite scale anywhere (a dead channel's weight scale) keeps the
        # operator out of XNNPACK (measured on ppocrv4_rec: 1x1 convs with 2.5e-42 scales)
        if t is not None and t.quant is not None and not np.all(np.isfinite(t.quant.scale)):
            return False
        if (
            t is not None
            and t.quant is not None
            and np.any(np.abs(t.quant.scale) < np.finfo(np.float32).tiny)
        ):
            return False
    if op.activation not in ("NONE", "RELU", "RELU_N1_TO_1", "RELU6"):
        return False
    checked = [t for k, t in enumerate(ins) if not (k == 1 and name in _WEIGHT_AT_1)]
    if name not in _OUTPUT_UNCHECKED:
        checked += outs
    if not all(_activation_quant_ok(t) for t in checked):
        return False
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        w = ins[1]  # TRANSPOSE_CONV's weights are input 1 too
        if w is None or w.data is None:
            return False
    if name == "TRANSPOSE_CONV":
        w = ins[1]
        o = op.options
        if o.get("padding") == "SAME" and (
            o.get("stride_h", 1) > w.shape[1] or o.get("stride_w", 1) > w.shape[2]
        ):
            return False
    if name in ("ADD", "SUB"):
        a, b = ins[0], ins[1]
        if a is None or b is None or a.quant is None or b.quant is None:
            return False
        return _ratio_ok(a.q.s, y.q.s, 2.0**-10, 2.0**8) and _ratio_ok(
            b.q.s, y.q.s, 2.0**-10, 2.0**8
        )
    if name == "STRIDED_SLICE":
        # XNNPACK's slice: unit strides, no ellipsis / new-axis masks
        o = op.options
        st = ins[3] if len(ins) > 3 else None
        if st is None or st.data is None or np.any(st.data != 1):
            return False
        return not (o.get("ellipsis_mask") or o.get("new_axis_mask"))
    if name == "BATCH_MATMUL":
        b = ins[1]
        return b is not None and b.quant is not None and b.q.zp == 0
    if name == "MUL":
        a, b = ins[0], ins[1]
        if a is None or b is None or a.quant is None or b.quant is None:
            return False
        return _ratio_ok(np.float32(a.q.s) * np.float32(b.q.s), y.q.s, 2.0**-16, 2.0**8)
    if name == "LEAKY_RELU":
        pos = np.float32(x.q.s) / np.float32(y.q.s)
        neg = pos * np.float32(op.options.get("alpha", 0.2))
        return 2.0**-8 <= pos <= 2.0**7 and 2.0**-8 <= abs(neg) <= 2.0**7
    if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        o = op.options
        # XNNPACK pools need stride <= filter on each axis (measured)
        if o.get("stride_h", 1) > o.get("filter_height", 1):
            return False
        if o.get("stride_w", 1) > o.get("filter_width", 1):
            return False
    return True
