"""A tiny builder of QDQ INT8 ONNX graphs (qcc's TFLite convention) and runners for the tests.

``G`` builds ``x -> Q -> DQ -> op -> Q -> DQ -> y`` graphs with per-channel int8 weights,
int32 biases and int8 constant operands; ``run_ort`` runs the ONNX model in onnxruntime and
``run_tflite`` runs the converted bytes in LiteRT, feeding NHWC for rank-4 inputs and
returning NCHW, so the two can be compared element by element.
"""

from __future__ import annotations

import importlib
from collections import Counter
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from onnx import TensorProto
from onnx import helper as oh
from onnx import numpy_helper as nh

RESOLVERS = {"default": OpResolverType.AUTO, "ref": OpResolverType.BUILTIN_REF}


class G:
    """A QDQ graph under construction."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.feeds: dict[str, np.ndarray] = {}
        self.out_scales: dict[str, float] = {}
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}{self._n}"

    def const(self, arr: np.ndarray, base: str = "c") -> str:
        n = self.name(base)
        self.inits.append(nh.from_array(np.asarray(arr), n))
        return n

    def qdq(self, x: str, scale: float, zp: int) -> str:
        """``x -> Q -> DQ`` with int8 (scale, zp); returns the DQ output."""
        s = self.const(np.array(scale, np.float32), "s")
        z = self.const(np.array(zp, np.int8), "z")
        q = self.name(f"{x}_q")
        d = self.name(f"{x}_dq")
        self.nodes.append(oh.make_node("QuantizeLinear", [x, s, z], [q]))
        self.nodes.append(oh.make_node("DequantizeLinear", [q, s, z], [d]))
        return d

    def input(self, shape: tuple[int, ...], scale: float = 0.05, zp: int = 3) -> str:
        """A float graph input, quantized; the feed lies on the int8 grid."""
        n = f"in{len(self.inputs)}"
        self.inputs.append(oh.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)))
        q = self.rng.integers(-128, 128, shape)
        self.feeds[n] = ((q - zp) * np.float32(scale)).astype(np.float32)
        return self.qdq(n, scale, zp)

    def weight(self, shape: tuple[int, ...], axis: int) -> tuple[str, np.ndarray]:
        """DQ(int8 weight in [-127, 127], per-channel scale on ``axis``, zp 0)."""
        w = self.rng.integers(-127, 128, shape).astype(np.int8)
        scale = (self.rng.random(shape[axis]) * 0.01 + 0.002).astype(np.float32)
        d = self.name("w_dq")
        ins = [
            self.const(w, "w"),
            self.const(scale, "ws"),
            self.const(np.zeros(shape[axis], np.int8)),
        ]
        self.nodes.append(oh.make_node("DequantizeLinear", ins, [d], axis=axis))
        return d, scale

    def bias(self, n: int, x_scale: float, w_scale: np.ndarray) -> str:
        b = self.rng.integers(-2000, 2000, n).astype(np.int32)
        s = (np.float64(x_scale) * w_scale.astype(np.float64)).astype(np.float32)
        d = self.name("b_dq")
        ins = [self.const(b, "b"), self.const(s, "bs"), self.const(np.zeros(n, np.int32))]
        self.nodes.append(oh.make_node("DequantizeLinear", ins, [d], axis=0))
        return d

    def qconst(self, arr: np.ndarray, scale: float, zp: int = 0) -> str:
        """DQ(int8 constant) with per-tensor parameters."""
        d = self.name("k_dq")
        ins = [
            self.const(np.asarray(arr, np.int8), "k"),
            self.const(np.array(scale, np.float32)),
            self.const(np.array(zp, np.int8)),
        ]
        self.nodes.append(oh.make_node("DequantizeLinear", ins, [d]))
        return d

    def op(self, op: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> list[str] | str:
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(oh.make_node(op, inputs, outs, name=self.name(f"{op}_"), **attrs))
        return outs[0] if n_out == 1 else outs

    def output(self, x: str, scale: float | None = None, zp: int = 0) -> None:
        """``x`` (quantized with (scale, zp) first when given) becomes a graph output."""
        if scale is not None:
            x = self.qdq(x, scale, zp)
            self.out_scales[x] = scale
        self.outputs.append(oh.make_tensor_value_info(x, TensorProto.FLOAT, None))

    def model(self, opset: int = 17) -> onnx.ModelProto:
        g = oh.make_graph(self.nodes, "g", self.inputs, self.outputs, initializer=self.inits)
        return oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)], ir_version=9)


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def run_tflite(
    data: bytes,
    feeds: dict[str, np.ndarray],
    resolver: str = "default",
    nhwc: bool = True,
) -> list[np.ndarray]:
    it = Interpreter(model_content=data, experimental_op_resolver_type=RESOLVERS[resolver])
    it.allocate_tensors()
    by_name = {d["name"]: d for d in it.get_input_details()}
    for name, x in feeds.items():
        d = by_name[name]
        if nhwc and x.ndim == 4:
            x = x.transpose(0, 2, 3, 1)
        if d["dtype"] == np.int8:
            s, z = d["quantization"]
            x = np.clip(np.rint(x / s) + z, -128, 127).astype(np.int8)
        it.set_tensor(d["index"], np.ascontiguousarray(x))
    it.invoke()
    outs = []
    for d in it.get_output_details():
        y = it.get_tensor(d["index"])
        if d["dtype"] == np.int8:
            s, z = d["quantization"]
            y = (y.astype(np.float32) - z) * np.float32(s)
        if nhwc and y.ndim == 4:
            y = y.transpose(0, 3, 1, 2)
        outs.append(y)
    return outs


def read_model(data: bytes) -> Any:
    return importlib.import_module("tflite.Model").Model.GetRootAs(data, 0)


def op_counts(data: bytes) -> Counter[str]:
    m = read_model(data)
    sg = m.Subgraphs(0)
    enum = importlib.import_module("tflite.BuiltinOperator").BuiltinOperator
    names = {v: k for k, v in vars(enum).items() if not k.startswith("_")}
    return Counter(
        names[m.OperatorCodes(sg.Operators(i).OpcodeIndex()).BuiltinCode()]
        for i in range(sg.OperatorsLength())
    )


def tensor(data: bytes, name: str) -> Any:
    sg = read_model(data).Subgraphs(0)
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        if t.Name().decode() == name:
            return t
    raise KeyError(name)
