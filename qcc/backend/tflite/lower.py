"""Lowering of a QDQ INT8 ONNX graph to a TFLite subgraph in NHWC.

The input follows qcc's QDQ convention (docs/tflite.md): an activation is ``Q -> DQ``, weights
and constant operands are ``DQ(int8 constant)``, a bias is ``DQ(int32 constant)``. A node is an
**integer unit** when every data input is such a DQ output and every output feeds exactly one
``QuantizeLinear`` (through a Relu/Clip for ops with a fused activation): it becomes one int8
TFLite op whose input tensors are the DQ inputs and whose output tensor is the Q output. Any
other node is lowered to the float32 builtin: a DQ it reads becomes DEQUANTIZE, a Q that reads
it becomes QUANTIZE (TFLite runs such mixed graphs).

Ops TFLite requires to keep their input's parameters (pools, reshapes, concatenation, ...) are
written with the input's parameters; when the ONNX Q disagrees, a QUANTIZE (int8 -> int8)
requantizes. Fixed-output ops (LOGISTIC, SOFTMAX, TANH) likewise.

Layout: see ``layout.py``. Every activation carries its permutation; ops that need NHWC get
it, axis-dependent ops remap their axes, ONNX Transposes only change the permutation, and a
TRANSPOSE is written only where physical orders really disagree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import onnx

from qcc.backend.tflite import layout
from qcc.backend.tflite.graph import OnnxGraph, attrs
from qcc.backend.tflite.writer import ACTIVATIONS, PADDING, Quant, TFLiteModel

_FIXED_OUTPUT = {
    "Sigmoid": Quant.of(1 / 256, -128),
    "Softmax": Quant.of(1 / 256, -128),
    "Tanh": Quant.of(1 / 128, 0),
}
# Ops whose int8 TFLite kernel needs the output parameters equal to the input's.
_SHARED = {
    "MaxPool",
    "AveragePool",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Identity",
    "Pad",
    "Resize",
    "Slice",
    "Split",
    "Gather",
    "DepthToSpace",
    "SpaceToDepth",
}
# Ops with an int8 TFLite kernel; DQ -> any other op -> Q runs in float (DEQUANTIZE, QUANTIZE).
_INT8_OPS = _SHARED | {
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Concat",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "ReduceMean",
    "ReduceMax",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "HardSwish",
    "LeakyRelu",
    "Relu",
    "Clip",
    "PRelu",
}
# Ops that take a fused activation (a Relu or Clip(0, 6) right after them).
_FUSABLE = {"Conv", "Gemm", "MatMul", "Add", "Sub", "Mul"}
# Inputs that are parameters (constants read at compile time), not quantized data.
_PARAM_INPUTS = {
    "Reshape": {1},
    "Resize": {1, 2, 3},
    "Slice": {1, 2, 3, 4},
    "Pad": {1, 2, 3},
    "Split": {1},
    "Gather": {1},
    "Squeeze": {1},
    "Unsqueeze": {1},
    "Clip": {1, 2},
    "ReduceMean": {1},
    "ReduceMax": {1},
    "ReduceSum": {1},
}
_FLOAT_UNARY = {
    "Abs": "ABS",
    "Neg": "NEG",
    "Exp": "EXP",
    "Log": "LOG",
    "Sqrt": "SQRT",
    "Floor": "FLOOR",
    "Ceil": "CEIL",
    "Sin": "SIN",
    "Cos": "COS",
    "Gelu": "GELU",
}
_BINARY = {
    "Add": ("ADD", "AddOptions"),
    "Sub": ("SUB", "SubOptions"),
    "Mul": ("MUL", "MulOptions"),
    "Div": ("DIV", "DivOptions"),
    "Max": ("MAXIMUM", None),
    "Min": ("MINIMUM", None),
    "Pow": ("POW", None),
}


@dataclasses.dataclass(frozen=True)
class Act:
    """A lowered activation: tensor index, logical (ONNX) shape, physical permutation."""

    index: int
    shape: tuple[int, ...]
    perm: tuple[int, ...]
    dtype: str
    quant: Quant | None = None
    # A flattened [N, K] whose K elements are in physical (not logical) order: logical element
    # cols[j] sits at j. Only FULLY_CONNECTED reads such a tensor (its weight columns permute).
    cols: tuple[int, ...] | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclasses.dataclass(frozen=True)
class DQ:
    """What a DequantizeLinear output is: an int8 activation or a quantized constant."""

    src: str  # the DQ's integer input
    quant: Quant  # scale, zero point, axis (ONNX axis)
    const: np.ndarray | None = None  # the integer constant, for weights and constant operands


@dataclasses.dataclass
class Unit:
    """How a node is lowered: int8 (with its Q nodes) or float, and its fused activation."""

    qs: list[onnx.NodeProto | None]  # per output, the Q that makes it int8 (None: float)
    fused: str = "NONE"  # the Relu / Clip after the op ...
    fused_node: onnx.NodeProto | None = None
    inline: bool = True  # ... as the op's fused activation (else a separate op after it)

    @property
    def act(self) -> str:
        """The op's fused_activation_function."""
        return self.fused if self.inline else "NONE"

    @property
    def int8(self) -> bool:
        return bool(self.qs) and self.qs[0] is not None


def _qparams(
    g: OnnxGraph, node: onnx.NodeProto, what: str
) -> tuple[np.ndarray, np.ndarray, int, np.dtype]:
    """Scale, zero point, axis and integer type of a Q or DQ node (constants required)."""
    if len(node.input) < 2 or node.input[1] not in g.consts:
        raise g.error(node, f"{what} scale must be a constant")
    scale = np.asarray(g.consts[node.input[1]], dtype=np.float32)
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in g.consts:
            raise g.error(node, f"{what} zero point must be a constant")
        zp = np.asarray(g.consts[node.input[2]])
    else:
        zp = np.zeros(scale.shape, dtype=np.uint8)
    a = attrs(node)
    if a.get("block_size", 0):
        raise g.error(node, "blocked quantization (block_size) is not supported by TFLite")
    return scale, zp, int(a.get("axis", 1)), zp.dtype


class Lowering:
    """One conversion: walks the ONNX graph in order and fills a :class:`TFLiteModel`."""

    def __init__(self, g: OnnxGraph, io: str, keep_nchw: Collection[str]) -> None:
        if io not in ("float32", "int8"):
            raise ValueError(f"io must be 'float32' or 'int8', not {io!r}")
        self.g = g
        self.io = io
        self.keep = set(keep_nchw)
        unknown = self.keep - set(g.inputs) - set(g.outputs)
        if unknown:
            raise g.error(None, f"keep_nchw names no graph input or output: {sorted(unknown)}")
        self.m = TFLiteModel()
        self.acts: dict[str, Act] = {}
        self.dq: dict[str, DQ] = {}
        self.done: set[int] = set()
        self._float_of: dict[str, Act] = {}
        self._moves: dict[tuple[int, tuple[int, ...]], Act] = {}
        self.transposes: list[str] = []  # the tensors layout had to transpose
        self._q_quants: dict[int, Quant] = {}  # id(QuantizeLinear) -> its parameters

    # -- entry -----------------------------------------------------------------------------

    def run(self) -> TFLiteModel:
        self._graph_inputs()
        for node in self.g.nodes:
            if id(node) in self.done:
                continue
            self._node(node)
        self._graph_outputs()
        return self.m

    def _node(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise self.g.error(node, f"custom domain '{node.domain}' is not supported by TFLite")
        if op == "DequantizeLinear":
            return self._dequantize(node)
        if op == "QuantizeLinear":
            return self._quantize(node)
        handler = _HANDLERS.get(op)
        if handler is None:
            raise self.g.error(node, f"{op} has no TFLite lowering")
        handler(self, node, self._unit(node))

    # -- graph inputs and outputs ------------------------------------------------------------

    def _io_perm(self, name: str, rank: int) -> tuple[int, ...]:
        """The physical order of a graph input or output: NHWC for rank 4 unless kept NCHW."""
        return layout.identity(rank) if name in self.keep else layout.preferred(rank)

    def _graph_inputs(self) -> None:
        g = self.g
        for name in g.inputs:
            shape = g.shape(name)
            perm = self._io_perm(name, len(shape))
            dtype = str(g.dtypes.get(name, np.dtype(np.float32)))
            uses = g.uses(name)
            if (
                self.io == "int8"
                and dtype == "float32"
                and len(uses) == 1
                and uses[0][0].op_type == "QuantizeLinear"
            ):
                q = uses[0][0]
                quant = self._q_quant(q)
                t = self.m.add_tensor(name, layout.physical(shape, perm), "int8", quant=quant)
                self.acts[q.output[0]] = Act(t, shape, perm, "int8", quant)
                self.done.add(id(q))
            else:
                if dtype not in ("float32", "int32", "int64", "bool"):
                    raise g.error(None, f"input '{name}' has type {dtype}, not supported")
                if dtype == "int64":
                    dtype = "int32"
                t = self.m.add_tensor(name, layout.physical(shape, perm), dtype)
                self.acts[name] = Act(t, shape, perm, dtype)
            self.m.inputs.append(t)

    def _graph_outputs(self) -> None:
        g = self.g
        for name in g.outputs:
            shape = g.shape(name)
            want = self._io_perm(name, len(shape))
            if self.io == "int8" and name in self.dq and self.dq[name].const is None:
                a = self.int_in(name, None)
            elif name in self.dq or name in self.acts:
                a = self.float_in(name, None)
            elif name in g.consts:
                raise g.error(
                    None, f"output '{name}' is a constant; TFLite needs a computed output"
                )
            else:
                raise g.error(None, f"output '{name}' was not lowered")
            a = self.ensure(a, want)
            if a.index in self.m.outputs or a.index in self.m.inputs:
                a = self._copy(a)
            self._rename(a.index, name)
            self.m.outputs.append(a.index)

    def _rename(self, index: int, name: str) -> None:
        t = self.m.tensors[index]
        if t.name == name:
            return
        for other in self.m.tensors:
            if other.name == name:
                other.name = self.m.unique_name(f"{name}/inner")
                self.m._names.add(other.name)
        t.name = name
        self.m._names.add(name)

    def _copy(self, a: Act) -> Act:
        t = self.m.add_tensor(
            self.m.tensors[a.index].name + "/copy",
            self.m.tensors[a.index].shape,
            a.dtype,
            quant=a.quant,
        )
        self._reshape_op(a.index, t, self.m.tensors[a.index].shape)
        return dataclasses.replace(a, index=t)

    # -- Q and DQ --------------------------------------------------------------------------------

    def _q_quant(self, q: onnx.NodeProto) -> Quant:
        """The parameters of the int8 activation ``q`` writes (asked several times per Q)."""
        quant = self._q_quants.get(id(q))
        if quant is None:
            quant = self._q_quants[id(q)] = self._read_q_quant(q)
        return quant

    def _read_q_quant(self, q: onnx.NodeProto) -> Quant:
        scale, zp, _axis, dtype = _qparams(self.g, q, "QuantizeLinear")
        if dtype != np.int8:
            raise self.g.error(
                q,
                f"{dtype} activations are not supported: TFLite's integer kernels take int8 "
                "(quantize with int8 activations, recipe int8-tflite)",
            )
        if scale.size != 1:
            raise self.g.error(q, "per-channel activation quantization is not supported")
        return Quant.of(scale, zp)

    def _dequantize(self, node: onnx.NodeProto) -> None:
        g = self.g
        scale, zp, axis, dtype = _qparams(g, node, "DequantizeLinear")
        src = node.input[0]
        if src in g.consts:
            arr = np.asarray(g.consts[src])
            if arr.dtype not in (np.int8, np.int32):
                raise g.error(node, f"{arr.dtype} constants are not supported (int8 or int32)")
            axis = axis % max(arr.ndim, 1)
            self.dq[node.output[0]] = DQ(src, Quant.of(scale, zp, axis), arr)
            return
        if dtype != np.int8:
            raise g.error(
                node,
                f"{dtype} activations are not supported: TFLite's integer kernels take int8 "
                "(quantize with int8 activations, recipe int8-tflite)",
            )
        if scale.size != 1:
            raise g.error(node, "per-channel activation quantization is not supported")
        if src not in self.acts:
            raise g.error(node, f"input '{src}' is not an int8 activation")
        self.dq[node.output[0]] = DQ(src, Quant.of(scale, zp))

    def _quantize(self, node: onnx.NodeProto) -> None:
        quant = self._q_quant(node)
        src = node.input[0]
        out = node.output[0]
        if src in self.dq and self.dq[src].const is None:
            a = self.int_in(src, node)
            self.acts[out] = self.requant(a, quant, out)
            return
        a = self.float_in(src, node)
        if a.dtype != "float32":
            raise self.g.error(node, f"QuantizeLinear of a {a.dtype} tensor is not supported")
        t = self.m.add_tensor(out, self.m.tensors[a.index].shape, "int8", quant=quant)
        self.m.add_op("QUANTIZE", [a.index], [t])
        self.acts[out] = dataclasses.replace(a, index=t, dtype="int8", quant=quant)

    def requant(self, a: Act, quant: Quant, name: str) -> Act:
        """``a`` with parameters ``quant`` (a QUANTIZE int8 -> int8 when they differ)."""
        if a.quant == quant:
            return a
        t = self.m.add_tensor(name, self.m.tensors[a.index].shape, "int8", quant=quant)
        self.m.add_op("QUANTIZE", [a.index], [t])
        return dataclasses.replace(a, index=t, quant=quant)

    # -- unit analysis -------------------------------------------------------------------------

    def _kind(self, name: str) -> str:
        if name in self.dq:
            return "qconst" if self.dq[name].const is not None else "qact"
        if name in self.g.consts:
            return "const"
        return "act"

    def _inline(self, node: onnx.NodeProto) -> bool:
        """Whether the TFLite op of ``node`` has a fused activation."""
        if node.op_type == "MatMul":
            return self._kind(node.input[1]) in ("const", "qconst")
        if node.op_type == "ConvTranspose":  # as CONV_2D + DEPTH_TO_SPACE: the conv's
            return _depth_to_space_block(self.g, node) is not None
        return node.op_type in _FUSABLE

    def _fusion(self, node: onnx.NodeProto) -> tuple[str, onnx.NodeProto | None]:
        """The Relu / Clip(0, 6) right after ``node`` (single use), if any."""
        if node.op_type in ("Relu", "Clip") or len(node.output) != 1:
            return "NONE", None
        out = node.output[0]
        uses = self.g.uses(out)
        if len(uses) != 1 or out in self.g.outputs:
            return "NONE", None
        user = uses[0][0]
        act = self._activation_kind(user)
        if act in ("RELU", "RELU6", "RELU_N1_TO_1"):
            return act, user
        if user.op_type == "Clip":
            return "CLIP", user  # absorbed by the int8 Q when its range lies inside the clip
        return "NONE", None

    def _activation_kind(self, node: onnx.NodeProto) -> str | None:
        if node.op_type == "Relu":
            return "RELU"
        if node.op_type != "Clip":
            return None
        lo, hi = self._clip_bounds(node)
        if lo == 0.0 and hi == 6.0:
            return "RELU6"
        if lo == 0.0 and hi == math.inf:
            return "RELU"
        if lo == -1.0 and hi == 1.0:
            return "RELU_N1_TO_1"
        return None

    def _clip_bounds(self, node: onnx.NodeProto) -> tuple[float, float]:
        a = attrs(node)
        lo, hi = float(a.get("min", -math.inf)), float(a.get("max", math.inf))
        for i, default in ((1, lo), (2, hi)):
            name = node.input[i] if len(node.input) > i else ""
            if not name:
                continue
            v = self.float_const_or_none(name)
            if v is None:
                raise self.g.error(node, "Clip bounds must be constants")
            if i == 1:
                lo = float(v.reshape(-1)[0])
            else:
                hi = float(v.reshape(-1)[0])
            del default
        return lo, hi

    def _int_operands(self, node: onnx.NodeProto, data: list[tuple[int, str]]) -> bool:
        """Whether the constant operands fit the int8 kernel (else the op runs in float)."""
        if node.op_type in ("Add", "Sub", "Mul", "Concat", "PRelu"):
            return all(
                self.dq[n].quant.per_tensor and self.dq[n].const.dtype == np.int8
                for _, n in data
                if self.dq[n].const is not None
            )
        return True

    def _unit(self, node: onnx.NodeProto) -> Unit:
        g = self.g
        params = _PARAM_INPUTS.get(node.op_type, set())
        data = [(i, n) for i, n in enumerate(node.input) if n and i not in params]
        fused, fnode = self._fusion(node)
        kinds = [self._kind(n) for _, n in data]
        outs = [o for o in node.output]
        is_int = (
            node.op_type in _INT8_OPS
            and bool(data)
            and all(k in ("qact", "qconst") for k in kinds)
            and "qact" in kinds
            and self._int_operands(node, data)
        )
        qs: list[onnx.NodeProto | None] = []
        if is_int:
            for k, o in enumerate(outs):
                if not o:
                    qs.append(None)
                    continue
                tail = fnode.output[0] if (fnode is not None and k == 0) else o
                uses = g.uses(tail)
                if tail in g.outputs or len(uses) != 1 or uses[0][0].op_type != "QuantizeLinear":
                    is_int = False
                    break
                qs.append(uses[0][0])
        if is_int and fused == "CLIP":
            assert fnode is not None and qs[0] is not None
            lo, hi = self._clip_bounds(fnode)
            q = self._q_quant(qs[0])
            # Q(clip(x)) == Q(x) for every x when the clip bounds quantize outside [-128, 127].
            s, z = q.scale[0], q.zero_point[0]
            is_int = (lo == -math.inf or np.rint(lo / s) + z <= -128) and (
                hi == math.inf or np.rint(hi / s) + z >= 127
            )
            if is_int:
                fused = "NONE"
        inline = self._inline(node)
        if not is_int:
            if not inline or fused == "CLIP":
                return Unit([None] * len(outs))
            if fnode is not None:
                self.done.add(id(fnode))
            return Unit([None] * len(outs), fused, fnode)
        for q in qs:
            if q is not None:
                self._q_quant(q)  # type check
                self.done.add(id(q))
        if fnode is not None:
            self.done.add(id(fnode))
        return Unit(qs, fused, fnode, inline)

    # -- reading inputs ------------------------------------------------------------------------

    def int_in(self, name: str, node: onnx.NodeProto | None) -> Act:
        d = self.dq.get(name)
        if d is None or d.const is not None:
            raise self.g.error(node, f"'{name}' is not an int8 activation")
        a = self.acts[d.src]
        if a.quant != d.quant:
            raise self.g.error(
                self.g.producer.get(name),
                f"DequantizeLinear reads '{d.src}' with other parameters than it was quantized "
                "with; TFLite tensors carry one set",
            )
        return a

    def float_in(self, name: str, node: onnx.NodeProto | None) -> Act:
        if name in self._float_of:
            return self._float_of[name]
        d = self.dq.get(name)
        if d is not None and d.const is None:
            a = self.int_in(name, node)
            t = self.m.add_tensor(name, self.m.tensors[a.index].shape, "float32")
            self.m.add_op("DEQUANTIZE", [a.index], [t])
            f = dataclasses.replace(a, index=t, dtype="float32", quant=None)
            self._float_of[name] = f
            return f
        if name in self.acts:
            return self.acts[name]
        raise self.g.error(node, f"input '{name}' is not available as a float tensor")

    def float_const_or_none(self, name: str) -> np.ndarray | None:
        d = self.dq.get(name)
        if d is not None and d.const is not None:
            return _dequantize_const(d)
        if name in self.g.consts:
            return np.asarray(self.g.consts[name])
        return None

    def float_const(self, node: onnx.NodeProto, name: str) -> np.ndarray:
        v = self.float_const_or_none(name)
        if v is None:
            raise self.g.error(node, f"input '{name}' must be a constant")
        return v.astype(np.float32) if v.dtype == np.float64 else v

    def act_in(self, node: onnx.NodeProto, unit: Unit, name: str) -> Act:
        return self.int_in(name, node) if unit.int8 else self.float_in(name, node)

    def param(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        if len(node.input) <= index or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.g.consts:
            raise self.g.error(node, f"{what} must be a constant")
        return np.asarray(self.g.consts[name])

    # -- outputs -------------------------------------------------------------------------------

    def out_name(self, node: onnx.NodeProto, unit: Unit, k: int = 0) -> str:
        q = unit.qs[k] if k < len(unit.qs) else None
        if q is not None:
            return q.output[0]
        if k == 0 and unit.fused_node is not None:
            return unit.fused_node.output[0]
        return node.output[k]

    def new_out(
        self,
        node: onnx.NodeProto,
        unit: Unit,
        k: int,
        perm: Sequence[int],
        *,
        quant: Quant | None = None,
        dtype: str | None = None,
        shape: Sequence[int] | None = None,
    ) -> tuple[int, Callable[[], None]]:
        """The tensor an op writes its ``k``-th output to, and a commit callback.

        ``quant`` forces the op's output parameters (shared or fixed); when the ONNX Q has
        other parameters the commit writes a requantizing QUANTIZE.
        """
        shape = tuple(shape if shape is not None else self.g.shape(node.output[k], node))
        perm = tuple(perm)
        name = self.out_name(node, unit, k)
        phys = layout.physical(shape, perm)
        if not unit.int8:
            t = self.m.add_tensor(name, phys, dtype or "float32")
            self.acts[name] = Act(t, shape, perm, dtype or "float32")
            return t, lambda: None
        q = unit.qs[k]
        assert q is not None
        qq = self._q_quant(q)
        if k == 0 and not unit.inline and unit.fused != "NONE":
            tq = quant or qq
            tmp = self.m.add_tensor(f"{name}/{node.op_type}", phys, "int8", quant=tq)
            fin = self.m.add_tensor(name, phys, "int8", quant=qq)
            self.acts[name] = Act(fin, shape, perm, "int8", qq)
            return tmp, lambda: self.m.add_op(unit.fused, [tmp], [fin]) and None
        if quant is None or quant == qq:
            t = self.m.add_tensor(name, phys, "int8", quant=qq)
            self.acts[name] = Act(t, shape, perm, "int8", qq)
            return t, lambda: None
        tmp = self.m.add_tensor(f"{name}/{node.op_type}", phys, "int8", quant=quant)
        a = Act(tmp, shape, perm, "int8", quant)

        def commit() -> None:
            self.acts[name] = self.requant(a, qq, name)

        return tmp, commit

    def alias(self, node: onnx.NodeProto, unit: Unit, a: Act, shape: Sequence[int], perm) -> None:
        """The output is the input's tensor seen with another logical shape or permutation."""
        name = self.out_name(node, unit, 0)
        b = dataclasses.replace(a, shape=tuple(shape), perm=tuple(perm))
        if unit.int8:
            q = unit.qs[0]
            assert q is not None
            b = self.requant(b, self._q_quant(q), name)
        self.acts[name] = b

    # -- layout moves --------------------------------------------------------------------------

    def ensure(self, a: Act, perm: Sequence[int]) -> Act:
        """``a`` in physical order ``perm`` (RESHAPE when only unit axes move, else TRANSPOSE)."""
        perm = tuple(perm)
        if a.perm == perm:
            return a
        key = (a.index, perm)
        if key in self._moves:
            return self._moves[key]
        src = self.m.tensors[a.index]
        phys = layout.physical(a.shape, perm)
        t = self.m.add_tensor(
            f"{src.name}/{'x'.join(map(str, perm))}", phys, a.dtype, quant=a.quant
        )
        if layout.same_data_order(a.shape, a.perm, perm):
            self._reshape_op(a.index, t, phys)
        else:
            p = np.asarray(layout.transpose_param(a.perm, perm), dtype=np.int32)
            c = self.const(f"{src.name}/perm", p, "int32")
            self.m.add_op("TRANSPOSE", [a.index, c], [t])
            self.transposes.append(src.name)
        b = dataclasses.replace(a, index=t, perm=perm)
        self._moves[key] = b
        return b

    def _reshape_op(self, src: int, dst: int, phys: Sequence[int]) -> None:
        shape = np.asarray(phys, dtype=np.int32)
        c = self.const(f"{self.m.tensors[dst].name}/shape", shape, "int32")
        self.m.add_op("RESHAPE", [src, c], [dst], ("ReshapeOptions", {"NewShape": list(phys)}))

    def reshape(self, a: Act, shape: Sequence[int], out: int | None = None) -> Act:
        """``a`` reshaped to logical ``shape`` (free when the permutation allows, see layout)."""
        shape = tuple(int(d) for d in shape)
        perm = layout.reshape_perm(a.shape, a.perm, shape)
        if perm is None:
            a = self.ensure(a, layout.identity(a.rank))
            perm = layout.reshape_perm(a.shape, a.perm, shape)
            assert perm is not None
        phys = layout.physical(shape, perm)
        if out is None:
            if phys == self.m.tensors[a.index].shape:
                return dataclasses.replace(a, shape=shape, perm=perm)
            name = self.m.tensors[a.index].name + "/reshape"
            out = self.m.add_tensor(name, phys, a.dtype, quant=a.quant)
        self._reshape_op(a.index, out, phys)
        return dataclasses.replace(a, index=out, shape=shape, perm=perm)

    def broadcast_rank(self, a: Act, rank: int, perm: Sequence[int]) -> Act:
        if a.rank < rank:
            a = self.reshape(a, (1,) * (rank - a.rank) + a.shape)
        return self.ensure(a, perm)

    # -- constants -----------------------------------------------------------------------------

    def const(self, name: str, data: np.ndarray, dtype: str, quant: Quant | None = None) -> int:
        return self.m.add_tensor(name, data.shape, dtype, data=data, quant=quant)

    def operand(self, node: onnx.NodeProto, unit: Unit, name: str, rank: int, perm) -> int:
        """An elementwise operand as a tensor of ``rank`` in physical order ``perm``."""
        kind = self._kind(name)
        if kind in ("act", "qact"):
            a = self.int_in(name, node) if unit.int8 else self.float_in(name, node)
            return self.broadcast_rank(a, rank, perm).index
        if unit.int8:
            d = self.dq[name]
            assert d.const is not None
            if not d.quant.per_tensor:
                raise self.g.error(node, "a per-channel constant operand is not supported")
            arr, dtype, quant = d.const, str(d.const.dtype), d.quant
        else:
            arr = self.float_const(node, name)
            dtype, quant = ("float32" if arr.dtype.kind == "f" else "int32"), None
        arr = np.asarray(arr).reshape((1,) * (rank - arr.ndim) + arr.shape)
        arr = np.ascontiguousarray(arr.transpose(perm))
        return self.const(name, arr, dtype, quant)


def _dequantize_const(d: DQ) -> np.ndarray:
    assert d.const is not None
    scale = np.asarray(d.quant.scale, dtype=np.float32)
    zp = np.asarray(d.quant.zero_point, dtype=np.float32)
    q = d.const.astype(np.float32)
    if scale.size > 1:
        shape = [1] * q.ndim
        shape[d.quant.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q - zp) * scale).astype(np.float32)


# -- op lowerings ------------------------------------------------------------------------------

_HANDLERS: dict[str, Callable[[Lowering, onnx.NodeProto, Unit], None]] = {}


def _handles(*ops: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        for op in ops:
            _HANDLERS[op] = fn
        return fn

    return deco


def _window_padding(
    lw: Lowering,
    node: onnx.NodeProto,
    in_hw: Sequence[int],
    k: Sequence[int],
    s: Sequence[int],
    d: Sequence[int],
    out_hw: Sequence[int],
) -> tuple[str, list[tuple[int, int]] | None]:
    """TFLite padding for a windowed op: SAME, VALID, or VALID after an explicit PAD."""
    a = attrs(node)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    pads = list(a.get("pads", [0] * 4))
    begins = []
    for i in range(2):
        eff = (k[i] - 1) * d[i] + 1
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            total = max((out_hw[i] - 1) * s[i] + eff - in_hw[i], 0)
            begins.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
        elif auto == "VALID":
            begins.append(0)
        else:
            begins.append(int(pads[i]))
    ends = [
        max(0, (out_hw[i] - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_hw[i] - begins[i])
        for i in range(2)
    ]
    if all(b == 0 and e == 0 for b, e in zip(begins, ends, strict=False)):
        return "VALID", None
    same = True
    for i in range(2):
        eff = (k[i] - 1) * d[i] + 1
        total = max((out_hw[i] - 1) * s[i] + eff - in_hw[i], 0)
        if out_hw[i] != -(-in_hw[i] // s[i]) or begins[i] != total // 2:
            same = False
    if same:
        return "SAME", None
    return "VALID", list(zip(begins, ends, strict=False))


def _pad_act(lw: Lowering, a: Act, pads_hw: list[tuple[int, int]], value: str = "zero") -> Act:
    """An explicit PAD of the H and W axes of an NHWC activation."""
    phys = np.zeros((4, 2), dtype=np.int32)
    phys[1] = pads_hw[0]
    phys[2] = pads_hw[1]
    return _pad_phys(lw, a, phys, value)


def _pad_phys(lw: Lowering, a: Act, phys_pads: np.ndarray, value: str | float) -> Act:
    src = lw.m.tensors[a.index]
    shape = tuple(int(x + p.sum()) for x, p in zip(src.shape, phys_pads, strict=False))
    logical = list(a.shape)
    for j, ax in enumerate(a.perm):
        logical[ax] = shape[j]
    t = lw.m.add_tensor(f"{src.name}/pad", shape, a.dtype, quant=a.quant)
    pc = lw.const(f"{src.name}/pads", phys_pads.astype(np.int32), "int32")
    if value == "zero":
        lw.m.add_op("PAD", [a.index, pc], [t])
    else:
        if value == "lowest":
            v = (
                np.array([-128], np.int8)
                if a.dtype == "int8"
                else np.array([np.finfo(np.float32).min], np.float32)
            )
        else:
            v = np.array([value], dtype=np.dtype(a.dtype))
        vc = lw.const(f"{src.name}/pad_value", v.reshape(()), a.dtype, quant=a.quant)
        lw.m.add_op("PADV2", [a.index, pc, vc], [t])
    return dataclasses.replace(a, index=t, shape=tuple(logical))


def _bias(
    lw: Lowering,
    node: onnx.NodeProto,
    unit: Unit,
    index: int,
    n: int,
    x: Act,
    wq: Quant | None,
    tile: int = 1,
) -> int:
    """The bias tensor: int32 with scale ``sx * sw[c]`` (int8), float32 otherwise; ``tile``
    repeats it (and its scales) for a convolution whose channels are taps of ``n``."""
    name = node.input[index] if len(node.input) > index and node.input[index] else None
    label = name or f"{node.name or node.output[0]}/bias"
    if not unit.int8:
        b = lw.float_const(node, name) if name else np.zeros(n, np.float32)
        return lw.const(label, np.tile(b.astype(np.float32).reshape(n), tile), "float32")
    assert x.quant is not None and wq is not None
    sx = float(x.quant.scale[0])
    sw = np.asarray(wq.scale, dtype=np.float64)
    want = (np.float64(sx) * sw).astype(np.float32)
    if name is None:
        b = np.zeros(n, np.int32)
    else:
        d = lw.dq.get(name)
        if d is None or d.const is None or d.const.dtype != np.int32:
            raise lw.g.error(node, "the bias must be DequantizeLinear of an int32 constant")
        b = d.const.reshape(n).astype(np.int64)
        have = np.broadcast_to(np.asarray(d.quant.scale, np.float64), (n,))
        if any(d.quant.zero_point):
            raise lw.g.error(node, "the bias zero point must be 0")
        w64 = np.broadcast_to(want.astype(np.float64), (n,))
        if np.any(np.abs(have - w64) > 1e-6 * w64):
            # TFLite takes the bias scale to be sx*sw: rescale the integers to it.
            b = np.rint(b * have / w64).astype(np.int64)
        b = np.clip(b, -(2**31), 2**31 - 1).astype(np.int32)
    if tile > 1:
        b = np.tile(b, tile)
        want = np.tile(want, tile) if want.size > 1 else want
    return lw.const(label, b, "int32", Quant.of(want, 0, 0))


def _weight(lw: Lowering, node: onnx.NodeProto, name: str) -> tuple[np.ndarray, Quant]:
    d = lw.dq.get(name)
    if d is None or d.const is None or d.const.dtype != np.int8:
        raise lw.g.error(node, "weights must be DequantizeLinear of an int8 constant")
    if any(d.quant.zero_point):
        raise lw.g.error(node, "weight zero points must be 0 (TFLite's int8 spec)")
    return d.const, d.quant


@_handles("Conv")
def _conv(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    g = lw.g
    xs = g.shape(node.input[0], node)
    if len(xs) != 4:
        raise g.error(node, f"only 2-D convolutions are supported (input rank {len(xs)})")
    x = lw.ensure(lw.act_in(node, unit, node.input[0]), layout.NHWC)
    if unit.int8:
        w, wq = _weight(lw, node, node.input[1])
    else:
        w, wq = lw.float_const(node, node.input[1]), None
    a = attrs(node)
    group = int(a.get("group", 1))
    cout, cin_g, kh, kw = w.shape
    strides = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    ys = g.shape(node.output[0], node)
    padding, explicit = _window_padding(lw, node, xs[2:], (kh, kw), strides, dil, ys[2:])
    if explicit:
        x = _pad_act(lw, x, explicit)
    wname = node.input[1]
    if group == 1:
        op = "CONV_2D"
        wt = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        qaxis = 0
        opts = {
            "Padding": PADDING[padding],
            "StrideW": strides[1],
            "StrideH": strides[0],
            "FusedActivationFunction": ACTIVATIONS[unit.act],
            "DilationWFactor": dil[1],
            "DilationHFactor": dil[0],
        }
        table = "Conv2DOptions"
    elif group == xs[1] and cin_g == 1:
        op = "DEPTHWISE_CONV_2D"
        wt = np.ascontiguousarray(w.reshape(cout, kh, kw).transpose(1, 2, 0)[None])
        qaxis = 3
        opts = {
            "Padding": PADDING[padding],
            "StrideW": strides[1],
            "StrideH": strides[0],
            "DepthMultiplier": cout // group,
            "FusedActivationFunction": ACTIVATIONS[unit.act],
            "DilationWFactor": dil[1],
            "DilationHFactor": dil[0],
        }
        table = "DepthwiseConv2DOptions"
    else:
        raise g.error(
            node,
            f"grouped convolution (group={group}, {cin_g} channels per group) is not supported",
        )
    if unit.int8:
        assert wq is not None
        wquant = dataclasses.replace(wq, axis=qaxis) if not wq.per_tensor else wq
        wi = lw.const(wname, wt, "int8", wquant)
    else:
        wi = lw.const(wname, wt.astype(np.float32), "float32")
    bi = _bias(lw, node, unit, 2, cout, x, wq)
    t, commit = lw.new_out(node, unit, 0, layout.NHWC)
    lw.m.add_op(op, [x.index, wi, bi], [t], (table, opts))
    commit()


@_handles("ConvTranspose")
def _conv_transpose(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    g = lw.g
    xs = g.shape(node.input[0], node)
    ys = g.shape(node.output[0], node)
    if len(xs) != 4:
        raise g.error(node, "only 2-D transposed convolutions are supported")
    a = attrs(node)
    if int(a.get("group", 1)) != 1:
        raise g.error(node, "group != 1 is not supported by TRANSPOSE_CONV")
    if any(int(v) != 1 for v in a.get("dilations", [1, 1])):
        raise g.error(node, "dilations are not supported by TRANSPOSE_CONV")
    if any(int(v) for v in a.get("output_padding", [0, 0])):
        raise g.error(node, "output_padding is not supported by TRANSPOSE_CONV")
    x = lw.ensure(lw.act_in(node, unit, node.input[0]), layout.NHWC)
    if unit.int8:
        w, wq = _weight(lw, node, node.input[1])
    else:
        w, wq = lw.float_const(node, node.input[1]), None
    _cin, cout, kh, kw = w.shape
    s = list(a.get("strides", [1, 1]))
    padding = None
    for cand in ("VALID", "SAME"):
        ok = True
        for i, k in enumerate((kh, kw)):
            if cand == "VALID":
                ok &= ys[2 + i] == (xs[2 + i] - 1) * s[i] + k
            else:
                total = max((xs[2 + i] - 1) * s[i] + k - ys[2 + i], 0)
                pads = list(a.get("pads", [0, 0, 0, 0]))
                auto = a.get("auto_pad", b"NOTSET")
                auto = auto.decode() if isinstance(auto, bytes) else auto
                begin = (
                    pads[i]
                    if auto == "NOTSET"
                    else (total - total // 2 if auto == "SAME_LOWER" else total // 2)
                )
                ok &= ys[2 + i] == xs[2 + i] * s[i] and begin == total // 2
        if ok:
            padding = cand
            break
    if padding is None:
        raise g.error(node, "these pads are neither SAME nor VALID for TRANSPOSE_CONV")
    block = _depth_to_space_block(g, node)
    if block is not None:
        _conv_transpose_as_depth_to_space(lw, node, unit, x, w, wq, block)
        return
    wt = np.ascontiguousarray(w.transpose(1, 2, 3, 0))
    if unit.int8:
        assert wq is not None
        wquant = dataclasses.replace(wq, axis=0)
        wi = lw.const(node.input[1], wt, "int8", wquant)
    else:
        wi = lw.const(node.input[1], wt.astype(np.float32), "float32")
    bi = _bias(lw, node, unit, 2, cout, x, wq)
    shape = lw.const(
        f"{node.output[0]}/output_shape",
        np.asarray(layout.physical(ys, layout.NHWC), np.int32),
        "int32",
    )
    opts = {"Padding": PADDING[padding], "StrideW": s[1], "StrideH": s[0]}
    t, commit = lw.new_out(node, unit, 0, layout.NHWC)
    lw.m.add_op(
        "TRANSPOSE_CONV", [shape, wi, x.index, bi], [t], ("TransposeConvOptions", opts), version=3
    )
    commit()


def _depth_to_space_block(g, node: onnx.NodeProto) -> int | None:
    """The block size when a ConvTranspose is a 1x1 convolution then DEPTH_TO_SPACE: square
    kernel equal to the stride, no padding, group 1, no dilation or output padding, 2-D."""
    a = attrs(node)
    shape = g.shape(node.input[1], node)
    if len(shape) != 4 or shape[2] != shape[3] or shape[2] < 2:
        return None
    k = int(shape[2])
    if list(a.get("strides", [1, 1])) != [k, k] or int(a.get("group", 1)) != 1:
        return None
    if any(int(v) for v in a.get("pads", [0, 0, 0, 0])) or any(
        int(v) for v in a.get("output_padding", [0, 0])
    ):
        return None
    if any(int(v) != 1 for v in a.get("dilations", [1, 1])):
        return None
    auto = a.get("auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "VALID"):
        return None
    xs, ys = g.shape(node.input[0], node), g.shape(node.output[0], node)
    if len(xs) != 4 or list(ys[2:]) != [xs[2] * k, xs[3] * k]:
        return None
    return k


def _conv_transpose_as_depth_to_space(
    lw: Lowering,
    node: onnx.NodeProto,
    unit: Unit,
    x: Act,
    w: np.ndarray,
    wq: Quant | None,
    k: int,
) -> None:
    """Kernel == stride and no padding: each output pixel is one input pixel's dot product
    with one kernel tap, so the op is a 1x1 CONV_2D to ``k*k*Cout`` channels (channel
    ``(i*k + j)*Cout + c`` holds tap (i, j) of output channel c) followed by DEPTH_TO_SPACE,
    with the same sums and requantization. XNNPACK runs an int8 TRANSPOSE_CONV with few output
    channels far slower (ppocrv4_det's last layer: 99 ms against 1.7 ms)."""
    cin, cout = int(w.shape[0]), int(w.shape[1])
    w2 = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(k * k * cout, 1, 1, cin))
    if unit.int8:
        assert wq is not None
        wquant = wq if wq.per_tensor else Quant.of(np.tile(wq.scale, k * k), 0, 0)
        wi = lw.const(node.input[1], w2, "int8", wquant)
    else:
        wi = lw.const(node.input[1], w2.astype(np.float32), "float32")
    bi = _bias(lw, node, unit, 2, cout, x, wq, tile=k * k)
    t, commit = lw.new_out(node, unit, 0, layout.NHWC)
    out = lw.m.tensors[t]
    n, h, wd = out.shape[0], out.shape[1] // k, out.shape[2] // k
    mid = lw.m.add_tensor(f"{out.name}/conv", (n, h, wd, k * k * cout), out.dtype, quant=out.quant)
    opts = {
        "Padding": PADDING["VALID"],
        "StrideW": 1,
        "StrideH": 1,
        "FusedActivationFunction": ACTIVATIONS[unit.act],
        "DilationWFactor": 1,
        "DilationHFactor": 1,
    }
    lw.m.add_op("CONV_2D", [x.index, wi, bi], [mid], ("Conv2DOptions", opts))
    lw.m.add_op("DEPTH_TO_SPACE", [mid], [t], ("DepthToSpaceOptions", {"BlockSize": k}))
    commit()


def _fc(
    lw: Lowering,
    node: onnx.NodeProto,
    unit: Unit,
    x: Act,
    w_nk: np.ndarray,
    wq: Quant | None,
    bias_index: int | None,
) -> None:
    if x.cols is not None:
        w_nk = np.ascontiguousarray(w_nk[:, list(x.cols)])
        x = dataclasses.replace(x, cols=None)
    if x.perm[-1] != x.rank - 1:
        x = lw.ensure(x, layout.identity(x.rank))
    n = w_nk.shape[0]
    if unit.int8:
        assert wq is not None
        wi = lw.const(node.input[1], w_nk, "int8", dataclasses.replace(wq, axis=0))
    else:
        wi = lw.const(node.input[1], w_nk.astype(np.float32), "float32")
    if bias_index is not None or unit.int8:
        bi = _bias(lw, node, unit, bias_index if bias_index is not None else 99, n, x, wq)
    else:
        bi = -1
    keep = x.rank > 2
    perm = x.perm if keep else layout.identity(2)
    t, commit = lw.new_out(node, unit, 0, perm)
    opts = {"FusedActivationFunction": ACTIVATIONS[unit.act], "KeepNumDims": keep}
    lw.m.add_op("FULLY_CONNECTED", [x.index, wi, bi], [t], ("FullyConnectedOptions", opts))
    commit()


@_handles("Gemm")
def _gemm(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    a = attrs(node)
    if int(a.get("transA", 0)) or float(a.get("alpha", 1.0)) != 1.0:
        raise lw.g.error(node, "Gemm with transA or alpha != 1 is not supported")
    if len(node.input) > 2 and node.input[2] and float(a.get("beta", 1.0)) != 1.0:
        raise lw.g.error(node, "Gemm with beta != 1 is not supported")
    x = lw.act_in(node, unit, node.input[0])
    if unit.int8:
        w, wq = _weight(lw, node, node.input[1])
    else:
        w, wq = lw.float_const(node, node.input[1]), None
    if not int(a.get("transB", 0)):
        w = w.T
    if len(node.input) > 2 and node.input[2]:
        c = lw.g.shape(node.input[2], node)
        if len(c) > 1 and int(np.prod(c)) != c[-1]:
            raise lw.g.error(node, "Gemm C must be a bias of shape [N]")
    _fc(
        lw,
        node,
        unit,
        x,
        np.ascontiguousarray(w),
        wq,
        2 if len(node.input) > 2 and node.input[2] else None,
    )


@_handles("MatMul")
def _matmul(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    bname = node.input[1]
    kind = lw._kind(bname)
    if kind in ("qconst", "const"):
        if unit.int8:
            w, wq = _weight(lw, node, bname)
        else:
            w, wq = lw.float_const(node, bname), None
        if w.ndim == 2:
            x = lw.act_in(node, unit, node.input[0])
            _fc(lw, node, unit, x, np.ascontiguousarray(w.T), wq, None)
            return
    ins = []
    adj = []
    for name in node.input[:2]:
        if lw._kind(name) in ("qconst", "const"):
            raise lw.g.error(node, "MatMul with a constant operand of rank > 2 is not supported")
        a = lw.act_in(node, unit, name)
        if a.rank < 2:
            raise lw.g.error(node, "MatMul of a vector is not supported")
        ident = layout.identity(a.rank)
        swapped = (*ident[:-2], ident[-1], ident[-2])
        if a.perm == swapped:
            adj.append(True)
        else:
            a = lw.ensure(a, ident)
            adj.append(False)
        ins.append(a)
    ys = lw.g.shape(node.output[0], node)
    t, commit = lw.new_out(node, unit, 0, layout.identity(len(ys)))
    opts = {"AdjX": adj[0], "AdjY": adj[1]}
    lw.m.add_op("BATCH_MATMUL", [ins[0].index, ins[1].index], [t], ("BatchMatMulOptions", opts))
    commit()


def _main_act(lw: Lowering, node: onnx.NodeProto, names: Sequence[str], rank: int) -> Act | None:
    for n in names:
        if lw._kind(n) in ("act", "qact") and len(lw.g.shape(n, node)) == rank:
            return lw.acts.get(lw.dq[n].src) if n in lw.dq else lw.acts.get(n)
    return None


@_handles("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow")
def _binary(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    op, table = _BINARY[node.op_type]
    if unit.int8 and node.op_type not in ("Add", "Sub", "Mul"):
        raise lw.g.error(node, f"{node.op_type} has no int8 TFLite kernel")
    if node.op_type in ("Max", "Min") and len(node.input) != 2:
        raise lw.g.error(node, f"{node.op_type} with {len(node.input)} inputs is not supported")
    ys = lw.g.shape(node.output[0], node)
    rank = len(ys)
    main = _main_act(lw, node, node.input, rank)
    perm = main.perm if main is not None else layout.identity(rank)
    if not unit.int8 and node.op_type == "Pow":
        e = lw.float_const_or_none(node.input[1])
        if e is not None and e.size == 1 and float(e.reshape(-1)[0]) == 2.0:
            x = lw.broadcast_rank(lw.float_in(node.input[0], node), rank, perm)
            t, commit = lw.new_out(node, unit, 0, perm)
            lw.m.add_op(
                "MUL", [x.index, x.index], [t], ("MulOptions", {"FusedActivationFunction": 0})
            )
            commit()
            return
    ins = [lw.operand(node, unit, n, rank, perm) for n in node.input[:2]]
    t, commit = lw.new_out(node, unit, 0, perm)
    opts = None
    if table is not None:
        opts = (table, {"FusedActivationFunction": ACTIVATIONS[unit.act]})
    lw.m.add_op(op, ins, [t], opts)
    commit()


def _unary_out(
    lw: Lowering, node: onnx.NodeProto, unit: Unit, op: str, opts=None, quant: Quant | None = None
) -> None:
    x = lw.act_in(node, unit, node.input[0])
    t, commit = lw.new_out(node, unit, 0, x.perm, quant=quant)
    lw.m.add_op(op, [x.index], [t], opts)
    commit()


@_handles("Sigmoid", "Tanh", "HardSwish", "Relu", "LeakyRelu", *_FLOAT_UNARY)
def _unary(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    op = node.op_type
    fixed = _FIXED_OUTPUT.get(op) if unit.int8 else None
    if op == "Sigmoid":
        _unary_out(lw, node, unit, "LOGISTIC", quant=fixed)
    elif op == "Tanh":
        _unary_out(lw, node, unit, "TANH", quant=fixed)
    elif op == "HardSwish":
        _unary_out(lw, node, unit, "HARD_SWISH")
    elif op == "Relu":
        _unary_out(lw, node, unit, "RELU")
    elif op == "LeakyRelu":
        alpha = float(attrs(node).get("alpha", 0.01))
        _unary_out(lw, node, unit, "LEAKY_RELU", ("LeakyReluOptions", {"Alpha": alpha}))
    else:
        if unit.int8:
            raise lw.g.error(node, f"{op} has no int8 TFLite kernel")
        _unary_out(lw, node, unit, _FLOAT_UNARY[op])


@_handles("Clip")
def _clip(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    kind = lw._activation_kind(node)
    if kind is not None:
        _unary_out(lw, node, unit, kind)
        return
    lo, hi = lw._clip_bounds(node)
    x = lw.act_in(node, unit, node.input[0])
    cur = x
    steps = [(op, v) for op, v in (("MAXIMUM", lo), ("MINIMUM", hi)) if math.isfinite(v)]
    if not steps:
        lw.alias(node, unit, x, x.shape, x.perm)
        return
    for i, (op, v) in enumerate(steps):
        if unit.int8:
            assert cur.quant is not None
            s, z = cur.quant.scale[0], cur.quant.zero_point[0]
            c = np.array(np.clip(np.rint(v / s) + z, -128, 127), dtype=np.int8)
            ci = lw.const(
                f"{node.output[0]}/{op.lower()}", c.reshape((1,) * x.rank), "int8", cur.quant
            )
        else:
            ci = lw.const(
                f"{node.output[0]}/{op.lower()}", np.full((1,) * x.rank, v, np.float32), "float32"
            )
        if i == len(steps) - 1:
            t, commit = lw.new_out(node, unit, 0, x.perm, quant=x.quant if unit.int8 else None)
        else:
            t = lw.m.add_tensor(
                f"{node.output[0]}/{op.lower()}",
                lw.m.tensors[x.index].shape,
                x.dtype,
                quant=x.quant,
            )
            commit = None
        lw.m.add_op(op, [cur.index, ci], [t])
        cur = dataclasses.replace(cur, index=t)
        if commit:
            commit()


@_handles("HardSigmoid")
def _hard_sigmoid(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    if unit.int8:
        raise lw.g.error(node, "HardSigmoid has no int8 TFLite kernel (keep it in float)")
    a = attrs(node)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    x = lw.float_in(node.input[0], node)
    shape = lw.m.tensors[x.index].shape
    one = (1,) * x.rank
    cur = x.index
    base = node.output[0]
    for i, (op, v) in enumerate(
        (("MUL", alpha), ("ADD", beta), ("MAXIMUM", 0.0), ("MINIMUM", 1.0))
    ):
        c = lw.const(f"{base}/hs{i}", np.full(one, v, np.float32), "float32")
        if i == 3:
            t, commit = lw.new_out(node, unit, 0, x.perm)
        else:
            t, commit = lw.m.add_tensor(f"{base}/hs{i}_out", shape, "float32"), None
        opts = None
        if op in ("MUL", "ADD"):
            opts = ("MulOptions" if op == "MUL" else "AddOptions", {"FusedActivationFunction": 0})
        lw.m.add_op(op, [cur, c], [t], opts)
        cur = t
        if commit:
            commit()


@_handles("Softmax")
def _softmax(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    x = lw.act_in(node, unit, node.input[0])
    axis = int(attrs(node).get("axis", -1)) % x.rank
    if x.perm[-1] != axis:
        x = lw.ensure(x, (*(a for a in x.perm if a != axis), axis))
    fixed = _FIXED_OUTPUT["Softmax"] if unit.int8 else None
    t, commit = lw.new_out(node, unit, 0, x.perm, quant=fixed)
    lw.m.add_op("SOFTMAX", [x.index], [t], ("SoftmaxOptions", {"Beta": 1.0}))
    commit()


@_handles("MaxPool", "AveragePool")
def _pool(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    g = lw.g
    if len(node.output) > 1 and node.output[1]:
        raise g.error(node, "MaxPool's Indices output is not supported")
    xs = g.shape(node.input[0], node)
    if len(xs) != 4:
        raise g.error(node, "only 2-D pooling is supported")
    a = attrs(node)
    k = list(a["kernel_shape"])
    s = list(a.get("strides", [1, 1]))
    if any(int(v) != 1 for v in a.get("dilations", [1, 1])):
        raise g.error(node, "dilated pooling is not supported")
    x = lw.ensure(lw.act_in(node, unit, node.input[0]), layout.NHWC)
    ys = g.shape(node.output[0], node)
    padding, explicit = _window_padding(lw, node, xs[2:], k, s, [1, 1], ys[2:])
    avg = node.op_type == "AveragePool"
    if explicit:
        if avg and not int(a.get("count_include_pad", 0)):
            raise g.error(
                node, "AveragePool pads TFLite cannot express (not SAME) with count_include_pad=0"
            )
        x = _pad_act(lw, x, explicit, "zero" if avg else "lowest")
    elif avg and padding == "SAME" and int(a.get("count_include_pad", 0)):
        x = _pad_act(lw, x, _same_pads(xs[2:], k, s, ys[2:]))
        padding = "VALID"
    t, commit = lw.new_out(node, unit, 0, layout.NHWC, quant=x.quant)
    opts = {
        "Padding": PADDING[padding],
        "StrideW": s[1],
        "StrideH": s[0],
        "FilterWidth": k[1],
        "FilterHeight": k[0],
        "FusedActivationFunction": 0,
    }
    op = "AVERAGE_POOL_2D" if avg else "MAX_POOL_2D"
    lw.m.add_op(op, [x.index], [t], ("Pool2DOptions", opts))
    commit()


def _same_pads(in_hw, k, s, out_hw) -> list[tuple[int, int]]:
    out = []
    for i in range(2):
        total = max((out_hw[i] - 1) * s[i] + k[i] - in_hw[i], 0)
        out.append((total // 2, total - total // 2))
    return out


def _reduce(lw: Lowering, node: onnx.NodeProto, unit: Unit, op: str, axes, keep: bool) -> None:
    x = lw.act_in(node, unit, node.input[0])
    axes = sorted(int(v) % x.rank for v in axes)
    phys_axes = np.asarray(sorted(x.perm.index(v) for v in axes), np.int32)
    ai = lw.const(f"{node.output[0]}/axes", phys_axes, "int32")
    perm = x.perm if keep else layout.remove_axes(x.perm, axes)
    if not perm:
        perm = ()
    t, commit = lw.new_out(node, unit, 0, perm)
    lw.m.add_op(op, [x.index, ai], [t], ("ReducerOptions", {"KeepDims": keep}))
    commit()


@_handles("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    rank = len(lw.g.shape(node.input[0], node))
    op = "MEAN" if node.op_type == "GlobalAveragePool" else "REDUCE_MAX"
    _reduce(lw, node, unit, op, range(2, rank), True)


@_handles("ReduceMean", "ReduceMax", "ReduceSum")
def _reduce_node(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    a = attrs(node)
    rank = len(lw.g.shape(node.input[0], node))
    axes = a.get("axes")
    if len(node.input) > 1 and node.input[1]:
        axes = lw.param(node, 1, "axes")
    if axes is None or len(axes) == 0:
        if a.get("noop_with_empty_axes", 0):
            x = lw.act_in(node, unit, node.input[0])
            lw.alias(node, unit, x, x.shape, x.perm)
            return
        axes = range(rank)
    op = {"ReduceMean": "MEAN", "ReduceMax": "REDUCE_MAX", "ReduceSum": "SUM"}[node.op_type]
    if unit.int8 and op == "SUM":
        raise lw.g.error(node, "ReduceSum has no int8 TFLite kernel")
    _reduce(lw, node, unit, op, list(axes), bool(a.get("keepdims", 1)))


@_handles("Concat")
def _concat(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    ys = lw.g.shape(node.output[0], node)
    rank = len(ys)
    axis = int(attrs(node)["axis"]) % rank
    main = _main_act(lw, node, node.input, rank)
    perm = main.perm if main is not None else layout.identity(rank)
    qq = lw._q_quant(unit.qs[0]) if unit.int8 and unit.qs[0] is not None else None
    ins = []
    for name in node.input:
        if lw._kind(name) in ("act", "qact"):
            a = lw.ensure(lw.act_in(node, unit, name), perm)
            if qq is not None:
                a = lw.requant(a, qq, f"{name}/requant")
            ins.append(a.index)
        elif unit.int8:
            d = lw.dq[name]
            assert d.const is not None and qq is not None
            f = _dequantize_const(d)
            c = np.clip(np.rint(f / qq.scale[0]) + qq.zero_point[0], -128, 127).astype(np.int8)
            ins.append(lw.const(name, np.ascontiguousarray(c.transpose(perm)), "int8", qq))
        else:
            c = lw.float_const(node, name).astype(np.float32)
            ins.append(lw.const(name, np.ascontiguousarray(c.transpose(perm)), "float32"))
    t, commit = lw.new_out(node, unit, 0, perm)
    opts = {"Axis": perm.index(axis), "FusedActivationFunction": 0}
    lw.m.add_op("CONCATENATION", ins, [t], ("ConcatenationOptions", opts))
    commit()


@_handles("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def _reshape(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    x = lw.act_in(node, unit, node.input[0])
    ys = tuple(lw.g.shape(node.output[0], node))
    if (
        layout.reshape_perm(x.shape, x.perm, ys) is None
        and len(ys) == 2
        and x.rank > 2
        and ys[0] == x.shape[0]
        and x.perm[0] == 0
        and _only_fully_connected(lw, node.output[0])
    ):
        # Flatten -> FULLY_CONNECTED: flatten the physical data as it is and permute the
        # weight columns instead of transposing the activation.
        inner = [p - 1 for p in x.perm[1:]]
        cols = np.arange(int(np.prod(x.shape[1:]))).reshape(x.shape[1:]).transpose(inner)
        out = lw.m.add_tensor(lw.m.tensors[x.index].name + "/flatten", ys, x.dtype, quant=x.quant)
        lw._reshape_op(x.index, out, ys)
        b = dataclasses.replace(
            x, index=out, shape=ys, perm=(0, 1), cols=tuple(int(c) for c in cols.reshape(-1))
        )
        lw.alias(node, unit, b, b.shape, b.perm)
        return
    b = lw.reshape(x, ys)
    lw.alias(node, unit, b, b.shape, b.perm)


def _only_fully_connected(lw: Lowering, name: str, depth: int = 0) -> bool:
    """Whether every use of ``name`` (through Q and DQ) is input A of a FULLY_CONNECTED."""
    g = lw.g
    uses = g.uses(name)
    if name in g.outputs or not uses or depth > 4:
        return False
    for n, i in uses:
        if i != 0:
            return False
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            if not _only_fully_connected(lw, n.output[0], depth + 1):
                return False
            continue
        if n.op_type not in ("Gemm", "MatMul") or len(n.input) < 2:
            return False
        if n.op_type == "Gemm" and int(attrs(n).get("transA", 0)):
            return False
        b = n.input[1]
        src = g.producer.get(b)
        if src is not None and src.op_type == "DequantizeLinear":
            b = src.input[0]
        if b not in g.consts or g.consts[b].ndim != 2:
            return False
    return True


@_handles("Identity", "Cast")
def _identity(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    if node.op_type == "Cast":
        to = int(attrs(node)["to"])
        src = lw.g.dtypes.get(node.input[0])
        if to != onnx.TensorProto.FLOAT or (src is not None and src != np.float32):
            raise lw.g.error(node, "Cast is supported only as a float32 no-op")
    x = lw.act_in(node, unit, node.input[0])
    lw.alias(node, unit, x, x.shape, x.perm)


@_handles("Transpose")
def _transpose(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    x = lw.act_in(node, unit, node.input[0])
    q = attrs(node).get("perm")
    q = list(q) if q is not None else list(reversed(range(x.rank)))
    qinv = [q.index(i) for i in range(x.rank)]
    shape = tuple(x.shape[i] for i in q)
    perm = tuple(qinv[p] for p in x.perm)
    lw.alias(node, unit, x, shape, perm)


@_handles("Pad")
def _pad(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    a = attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    x = lw.act_in(node, unit, node.input[0])
    pads = lw.param(node, 1, "pads")
    if pads is None:
        pads = np.asarray(a.get("pads", [0] * 2 * x.rank))
    pads = [int(v) for v in pads]
    axes = lw.param(node, 3, "axes")
    axes = [int(v) % x.rank for v in axes] if axes is not None else list(range(x.rank))
    if any(v < 0 for v in pads):
        raise lw.g.error(node, "negative pads are not supported")
    n = len(axes)
    logical = np.zeros((x.rank, 2), np.int64)
    for i, ax in enumerate(axes):
        logical[ax] = (pads[i], pads[i + n])
    phys = logical[list(x.perm)].astype(np.int32)
    value: Any = 0.0
    if len(node.input) > 2 and node.input[2]:
        v = lw.float_const_or_none(node.input[2])
        if v is None:
            raise lw.g.error(node, "the pad value must be a constant")
        value = float(v.reshape(-1)[0]) if v.size else 0.0
    if mode == "constant":
        if value == 0.0:
            b = _pad_phys(lw, x, phys, "zero")
        elif unit.int8:
            assert x.quant is not None
            qv = int(np.clip(np.rint(value / x.quant.scale[0]) + x.quant.zero_point[0], -128, 127))
            b = _pad_phys(lw, x, phys, float(qv))
        else:
            b = _pad_phys(lw, x, phys, value)
    elif mode == "reflect":
        src = lw.m.tensors[x.index]
        shape = tuple(int(d + p.sum()) for d, p in zip(src.shape, phys, strict=False))
        t = lw.m.add_tensor(f"{src.name}/mirror_pad", shape, x.dtype, quant=x.quant)
        pc = lw.const(f"{src.name}/pads", phys, "int32")
        lw.m.add_op("MIRROR_PAD", [x.index, pc], [t], ("MirrorPadOptions", {"Mode": 0}))
        b = dataclasses.replace(x, index=t)
    else:
        raise lw.g.error(node, f"Pad mode '{mode}' is not supported")
    ys = lw.g.shape(node.output[0], node)
    lw.alias(node, unit, b, ys, x.perm)


def _nearest_index(in_n: int, out_n: int, scale: float, ctm: str, mode: str) -> np.ndarray:
    x = np.arange(out_n, dtype=np.float32)
    s = np.float32(scale)
    if ctm == "half_pixel":
        v = (x + np.float32(0.5)) / s - np.float32(0.5)
    elif ctm == "pytorch_half_pixel":
        v = (x + np.float32(0.5)) / s - np.float32(0.5) if out_n > 1 else np.zeros_like(x)
    elif ctm == "align_corners":
        v = x * np.float32(in_n - 1) / np.float32(out_n - 1) if out_n > 1 else np.zeros_like(x)
    elif ctm == "asymmetric":
        v = x / s
    elif ctm == "tf_half_pixel_for_nn":
        v = (x + np.float32(0.5)) / s
    else:
        return np.full(out_n, -1)
    if mode == "round_prefer_floor":
        r = np.ceil(v - np.float32(0.5))
    elif mode == "round_prefer_ceil":
        r = np.floor(v + np.float32(0.5))
    elif mode == "floor":
        r = np.floor(v)
    else:
        r = np.ceil(v)
    return np.clip(r, 0, in_n - 1).astype(np.int64)


def _tflite_nearest(in_n: int, out_n: int, align: bool, half: bool) -> np.ndarray:
    x = np.arange(out_n, dtype=np.float32)
    if align and out_n > 1:
        scale = np.float32(in_n - 1) / np.float32(out_n - 1)
    else:
        scale = np.float32(in_n) / np.float32(out_n)
    off = np.float32(0.5) if half else np.float32(0.0)
    v = (x + off) * scale
    r = np.floor(v + np.float32(0.5)) if align else np.floor(v)
    r = np.minimum(r, in_n - 1)
    if half:
        r = np.maximum(r, 0)
    return r.astype(np.int64)


@_handles("Resize", "Upsample")
def _resize(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    g = lw.g
    xs = g.shape(node.input[0], node)
    ys = g.shape(node.output[0], node)
    if len(xs) != 4 or xs[:2] != ys[:2]:
        raise g.error(node, "only resizing H and W of a rank-4 tensor is supported")
    a = attrs(node)

    def s(key: str, default: str) -> str:
        v = a.get(key, default)
        return v.decode() if isinstance(v, bytes) else v

    mode = s("mode", "nearest")
    ctm = s("coordinate_transformation_mode", "half_pixel")
    if a.get("antialias", 0) or a.get("exclude_outside", 0):
        raise g.error(node, "antialias / exclude_outside are not supported")
    scales = None
    if node.op_type == "Resize" and len(node.input) > 2 and node.input[2]:
        sc = lw.param(node, 2, "scales")
        if sc is not None and sc.size:
            scales = [float(v) for v in sc.reshape(-1)]
    if scales is None:
        scales = [ys[i] / xs[i] for i in range(4)]
    if mode == "nearest":
        nmode = s("nearest_mode", "round_prefer_floor")
        choice = None
        for align, half in ((False, False), (False, True), (True, False)):
            if all(
                np.array_equal(
                    _nearest_index(xs[i], ys[i], scales[i], ctm, nmode),
                    _tflite_nearest(xs[i], ys[i], align, half),
                )
                for i in (2, 3)
            ):
                choice = (align, half)
                break
        if choice is None:
            raise g.error(
                node,
                f"nearest Resize with coordinate_transformation_mode={ctm}, nearest_mode={nmode} "
                "has no RESIZE_NEAREST_NEIGHBOR equivalent for these sizes",
            )
        op, table = "RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighborOptions"
    elif mode == "linear":
        if ctm in ("half_pixel", "pytorch_half_pixel") and (ctm == "half_pixel" or min(ys[2:]) > 1):
            choice = (False, True)
        elif ctm == "align_corners":
            choice = (True, False)
        elif ctm == "asymmetric":
            choice = (False, False)
        else:
            raise g.error(node, f"linear Resize with {ctm} has no RESIZE_BILINEAR equivalent")
        op, table = "RESIZE_BILINEAR", "ResizeBilinearOptions"
    else:
        raise g.error(node, f"Resize mode '{mode}' is not supported")
    x = lw.ensure(lw.act_in(node, unit, node.input[0]), layout.NHWC)
    size = lw.const(f"{node.output[0]}/size", np.asarray(ys[2:], np.int32), "int32")
    t, commit = lw.new_out(node, unit, 0, layout.NHWC, quant=x.quant)
    opts = {"AlignCorners": choice[0], "HalfPixelCenters": choice[1]}
    lw.m.add_op(op, [x.index, size], [t], (table, opts))
    commit()


@_handles("Slice")
def _slice(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    x = lw.act_in(node, unit, node.input[0])
    starts = lw.param(node, 1, "starts")
    ends = lw.param(node, 2, "ends")
    axes = lw.param(node, 3, "axes")
    steps = lw.param(node, 4, "steps")
    assert starts is not None and ends is not None
    axes_l = [int(v) % x.rank for v in axes] if axes is not None else list(range(len(starts)))
    steps_l = [int(v) for v in steps] if steps is not None else [1] * len(starts)
    begin = [0] * x.rank
    end = list(x.shape)
    stride = [1] * x.rank
    end_mask = 0
    for ax, b, e, st in zip(axes_l, starts, ends, steps_l, strict=False):
        bb, ee, ss = slice(int(b), int(e), st).indices(x.shape[ax])
        begin[ax], end[ax], stride[ax] = bb, ee, ss
        if ee < 0:
            end_mask |= 1 << x.perm.index(ax)
            end[ax] = 0
    p = list(x.perm)
    pb, pe, ps = [begin[a] for a in p], [end[a] for a in p], [stride[a] for a in p]
    t, commit = lw.new_out(node, unit, 0, x.perm, quant=x.quant)
    phys = [int(x.shape[a]) for a in p]
    if end_mask == 0 and _unit_stride_slices(lw, x, phys, pb, pe, ps, t, node.output[0]):
        commit()
        return
    _strided_slice_op(lw, x.index, t, pb, pe, ps, node.output[0], end_mask)
    commit()


def _strided_slice_op(
    lw: Lowering,
    src: int,
    dst: int,
    begin: Sequence[int],
    end: Sequence[int],
    stride: Sequence[int],
    name: str,
    end_mask: int = 0,
) -> None:
    bi = lw.const(f"{name}/begin", np.asarray(begin, np.int32), "int32")
    ei = lw.const(f"{name}/end", np.asarray(end, np.int32), "int32")
    si = lw.const(f"{name}/strides", np.asarray(stride, np.int32), "int32")
    opts = {"BeginMask": 0, "EndMask": end_mask, "ShrinkAxisMask": 0}
    lw.m.add_op("STRIDED_SLICE", [src, bi, ei, si], [dst], ("StridedSliceOptions", opts))


def _unit_stride_slices(
    lw: Lowering,
    x: Act,
    phys: list[int],
    begin: list[int],
    end: list[int],
    stride: list[int],
    out: int,
    name: str,
) -> bool:
    """Write a slice with strides > 1 as slices with stride 1 (False: not possible).

    XNNPACK takes STRIDED_SLICE only with unit strides; a strided one runs in TFLite's
    element-by-element kernel (the space-to-depth stem of YOLOv5/YOLOX-style detectors: 8 such
    slices cost 22 ms of a 40 ms model). Along an axis of ``n`` with stride ``s`` keeping
    ``k`` elements from ``b``, a window of ``k*s`` elements holding them all at one phase
    ``r`` is cut first (all axes at once, unit strides; needs ``k*s <= n``), then for each
    strided axis a RESHAPE to ``[outer, k, s, inner]``, a slice of phase ``r`` and a RESHAPE
    back: the same elements in the same order, each op delegated.
    """
    if all(s == 1 for s in stride) or any(s < 1 for s in stride):
        return False
    counts = [len(range(b, e, s)) for b, e, s in zip(begin, end, stride, strict=True)]
    if 0 in counts:
        return False
    cut_begin, cut_end, phase = list(begin), list(end), [0] * len(stride)
    for j, s in enumerate(stride):
        if s > 1:
            # a window of k*s elements holding the wanted ones at one phase r: shifted back by
            # what would run past the end (less than s), which needs k*s <= n
            if counts[j] * s > phys[j]:
                return False
            phase[j] = max(0, begin[j] + counts[j] * s - phys[j])
            cut_begin[j] = begin[j] - phase[j]
            cut_end[j] = cut_begin[j] + counts[j] * s
    dims = [ce - b for b, ce in zip(cut_begin, cut_end, strict=True)]
    cur = x.index
    dtype, quant = x.dtype, x.quant
    if dims != phys:
        cur_t = lw.m.add_tensor(f"{name}/cut", dims, dtype, quant=quant)
        _strided_slice_op(lw, cur, cur_t, cut_begin, cut_end, [1] * len(dims), f"{name}/cut")
        cur = cur_t
    strided = [j for j, s in enumerate(stride) if s > 1]
    for n, j in enumerate(strided):
        s, k = stride[j], counts[j]
        outer, inner = int(np.prod(dims[:j])), int(np.prod(dims[j + 1 :]))
        split = [outer, k, s, inner]
        r = lw.m.add_tensor(f"{name}/phase{j}", split, dtype, quant=quant)
        lw._reshape_op(cur, r, split)
        dims[j] = k
        last = n == len(strided) - 1
        r0 = phase[j]
        picked = [outer, k, 1, inner]
        sl = lw.m.add_tensor(f"{name}/phase{j}/{r0}", picked, dtype, quant=quant)
        _strided_slice_op(
            lw, r, sl, [0, 0, r0, 0], [outer, k, r0 + 1, inner], [1, 1, 1, 1], f"{name}/phase{j}"
        )
        if last:
            lw._reshape_op(sl, out, dims)
        cur = sl
    return True


@_handles("Split")
def _split(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    x = lw.act_in(node, unit, node.input[0])
    axis = int(attrs(node).get("axis", 0)) % x.rank
    sizes = [lw.g.shape(o, node)[axis] for o in node.output]
    pa = x.perm.index(axis)
    outs, commits = [], []
    for k in range(len(node.output)):
        t, c = lw.new_out(node, unit, k, x.perm, quant=x.quant)
        outs.append(t)
        commits.append(c)
    ai = lw.const(f"{node.output[0]}/axis", np.asarray(pa, np.int32), "int32")
    if len(set(sizes)) == 1:
        lw.m.add_op("SPLIT", [ai, x.index], outs, ("SplitOptions", {"NumSplits": len(outs)}))
    else:
        si = lw.const(f"{node.output[0]}/sizes", np.asarray(sizes, np.int32), "int32")
        lw.m.add_op("SPLIT_V", [x.index, si, ai], outs, ("SplitVOptions", {"NumSplits": len(outs)}))
    for c in commits:
        c()


@_handles("Gather")
def _gather(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    x = lw.act_in(node, unit, node.input[0])
    idx = lw.param(node, 1, "Gather indices")
    assert idx is not None
    axis = int(attrs(node).get("axis", 0)) % x.rank
    idx = np.where(idx < 0, idx + x.shape[axis], idx).astype(np.int32)
    if idx.ndim > 1:
        x = lw.ensure(x, layout.identity(x.rank))
    if idx.ndim == 0:
        perm = layout.remove_axes(x.perm, [axis])
    elif idx.ndim == 1:
        perm = x.perm
    else:
        perm = layout.identity(x.rank - 1 + idx.ndim)
    ii = lw.const(f"{node.output[0]}/indices", idx, "int32")
    t, commit = lw.new_out(node, unit, 0, perm, quant=x.quant)
    opts = {"Axis": x.perm.index(axis), "BatchDims": 0}
    lw.m.add_op("GATHER", [x.index, ii], [t], ("GatherOptions", opts))
    commit()


@_handles("DepthToSpace", "SpaceToDepth")
def _depth_space(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    a = attrs(node)
    mode = a.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if node.op_type == "DepthToSpace" and mode != "DCR":
        raise lw.g.error(node, f"DepthToSpace mode {mode} is not supported (DCR only)")
    x = lw.ensure(lw.act_in(node, unit, node.input[0]), layout.NHWC)
    op = "DEPTH_TO_SPACE" if node.op_type == "DepthToSpace" else "SPACE_TO_DEPTH"
    table = "DepthToSpaceOptions" if op == "DEPTH_TO_SPACE" else "SpaceToDepthOptions"
    t, commit = lw.new_out(node, unit, 0, layout.NHWC, quant=x.quant)
    lw.m.add_op(op, [x.index], [t], (table, {"BlockSize": int(a["blocksize"])}))
    commit()


@_handles("PRelu")
def _prelu(lw: Lowering, node: onnx.NodeProto, unit: Unit) -> None:
    ys = lw.g.shape(node.output[0], node)
    x = lw.act_in(node, unit, node.input[0])
    alpha = lw.operand(node, unit, node.input[1], len(ys), x.perm)
    t, commit = lw.new_out(node, unit, 0, x.perm)
    lw.m.add_op("PRELU", [x.index, alpha], [t])
    commit()


def lower(g: OnnxGraph, io: str, keep_nchw: Collection[str]) -> tuple[TFLiteModel, list[str]]:
    """Lower ``g``; returns the model and the tensors layout had to TRANSPOSE."""
    lw = Lowering(g, io, keep_nchw)
    m = lw.run()
    return m, lw.transposes
