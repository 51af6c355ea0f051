"""Float kernels of the interpreter against onnxruntime 1.31.1 (CPU provider).

Every case is a one-node model run by onnxruntime with graph optimizations disabled and by the
interpreter under ``ort-x86`` (the MLAS-exact kernels where there are some) and ``onnx-ref``
(the generic kernels). A kernel registered ``exact=True`` must give 0 mismatching elements,
compared bitwise (float32 as uint32, so -0 and rounding show; two NaNs count as equal whatever
their payload); an inexact one must stay within its case's tolerance. ``EXACT`` is the table of
what was measured; ``test_exact_flags_match_measurements`` holds the registry to it.

At onnxruntime's default optimization level, fusions change some float results; the
``test_default_level_fusions`` cases measure them (see their comments).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from qcc.frontend.lift import lift_model
from qcc.interp import Interpreter
from qcc.interp.kernels import float_ops, mlas
from qcc.interp.registry import lookup

F = np.float32


@dataclass
class Case:
    op: str
    inputs: list  # arrays, or None for a missing optional input
    attrs: dict = field(default_factory=dict)
    opset: int = 17
    outs: int = 1
    const: tuple[int, ...] = ()  # inputs given as initializers
    rtol: float = 0.0  # tolerance for inexact kernels
    atol: float = 0.0
    id: str = ""
    spec_differs: bool = False  # onnxruntime departs from the ONNX spec, which onnx-ref follows


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _edge() -> np.ndarray:
    return np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            1e-30,
            -1e-40,
            0.5,
            1.5,
            2.5,
            -0.5,
            -2.5,
            88.7,
            89.0,
            -104.0,
            18.0,
            -18.0,
            9.0,
            3.925,
            -0.921875,
            3.4e38,
            -3.4e38,
        ],
        F,
    )


def _x(seed=0, n=1 << 14, scale=4.0, edge=True) -> np.ndarray:
    r = _rng(seed)
    v = np.concatenate([r.standard_normal(n).astype(F) * F(scale), r.uniform(-120, 100, n // 4)])
    v = v.astype(F)
    return np.concatenate([v, _edge()]) if edge else v


def _img(shape, seed=0) -> np.ndarray:
    return _rng(seed).standard_normal(shape).astype(F)


def _model(case: Case) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    names, ins, inits, feeds = [], [], [], {}
    for i, a in enumerate(case.inputs):
        if a is None:
            names.append("")
            continue
        n = f"in{i}"
        names.append(n)
        a = np.asarray(a)
        if i in case.const:
            inits.append(onnx.numpy_helper.from_array(a, n))
        else:
            ins.append(
                helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            )
            feeds[n] = a
    outs = [f"out{i}" for i in range(case.outs)]
    node = helper.make_node(case.op, names, outs, **case.attrs)
    graph = helper.make_graph(
        [node],
        "g",
        ins,
        [onnx.ValueInfoProto(name=o) for o in outs],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", case.opset)], ir_version=9
    )
    return model, feeds


def _ort(model: onnx.ModelProto, feeds, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def mismatches(a: np.ndarray, b: np.ndarray) -> int:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    assert a.dtype == b.dtype, f"dtype {a.dtype} != {b.dtype}"
    if a.dtype.kind == "f":
        u = np.dtype(f"u{a.dtype.itemsize}")
        diff = a.view(u) != b.view(u)
        return int(np.sum(diff & ~(np.isnan(a) & np.isnan(b))))
    return int(np.sum(a != b))


def _run_case(case: Case, profile: str):
    model, feeds = _model(case)
    want = _ort(model, feeds)
    interp = Interpreter(lift_model(model), profile=profile)
    got = interp.run(feeds)
    got = [got[f"out{i}"] for i in range(case.outs)]
    spec = lookup("", case.op, case.opset, profile)
    assert spec is not None
    return want, got, spec


# --------------------------------------------------------------------------- the cases

S = (2, 3, 5, 7)
A4, B4 = _img(S, 1), _img(S, 2)
POS = np.abs(_x(3)) + F(1e-3)
INT_A = _rng(4).integers(-50, 50, (4, 6)).astype(np.int64)
INT_B = _rng(5).integers(1, 9, (4, 6)).astype(np.int64) * np.where(
    _rng(6).random((4, 6)) < 0.5, -1, 1
)
ROUND = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 1e7 + 0.5, -0.0, 3.7, -3.7], F)
BOOL_A = _rng(7).random((3, 4)) < 0.5
BOOL_B = _rng(8).random((4,)) < 0.5
IMG = _img((2, 4, 9, 11), 9)
SOFT = (_rng(10).standard_normal((8, 37)) * 5).astype(F)


def _i64(*v):
    return np.array(v, np.int64)


CASES: list[Case] = [
    # elementwise arithmetic, broadcasting, integers
    Case("Add", [A4, B4[:, :, :1]]),
    Case("Sub", [A4, B4[0]]),
    Case("Mul", [A4, np.array(F(0.1))]),
    Case("Div", [A4, B4]),
    Case("Div", [INT_A, INT_B], id="int"),
    Case("Pow", [POS[:4096], _x(11)[:4096]], rtol=1e-6),
    Case("Pow", [_x(12), np.array(F(2))], id="square"),
    Case("Pow", [_x(12), np.array(F(3))], id="cube", rtol=1e-6),
    Case("Pow", [POS[:4096], np.array(F(0.5))], id="sqrt", rtol=1e-6),
    Case("Max", [_x(13), _x(14)[::-1].copy(), np.array(F(0.25))], opset=13),
    Case("Min", [_x(13), _x(14)[::-1].copy()], opset=13),
    Case("Sum", [A4, B4, A4[:1]], opset=13),
    Case("Mean", [A4, B4, B4 * F(3)], opset=13),
    Case("Equal", [INT_A, INT_A[:, :1]]),
    Case("Less", [A4, B4]),
    Case("Greater", [A4, np.array(F(0))]),
    Case("Where", [BOOL_A, _img((3, 4), 15), _img((4,), 16)]),
    Case("Not", [BOOL_A]),
    Case("And", [BOOL_A, BOOL_B]),
    Case("Or", [BOOL_A, BOOL_B]),
    # elementwise unary
    Case("Neg", [_x(20)]),
    Case("Abs", [_x(21)]),
    Case("Sqrt", [POS]),
    Case("Reciprocal", [_x(22)]),
    Case("Floor", [_x(23)]),
    Case("Ceil", [_x(24)]),
    Case("Round", [np.concatenate([_x(25), ROUND])]),
    Case("Exp", [_x(26)], rtol=1e-6),
    Case("Log", [POS], rtol=1e-6),
    Case("Erf", [_x(27)], rtol=1e-6, atol=1e-7),
    Case("Sigmoid", [_x(28)], rtol=1e-5, atol=2e-7),
    Case("Tanh", [_x(29)], rtol=1e-5, atol=1e-7),
    Case("Relu", [_x(30)]),
    Case("LeakyRelu", [_x(31)], {"alpha": 0.1}),
    Case("PRelu", [A4, _img((3, 1, 1), 32)]),
    Case("Elu", [_x(33)], {"alpha": 0.7}, rtol=1e-6, atol=1e-7),
    Case("Selu", [_x(34)], rtol=1e-6, atol=1e-7),
    Case("HardSigmoid", [_x(35)], {"alpha": 0.3, "beta": 0.6}),
    Case("HardSwish", [_x(36)], opset=14),
    Case("Softplus", [_x(37, edge=False)], rtol=1e-6, atol=1e-7),
    Case("Mish", [_x(38, edge=False)], opset=18, rtol=1e-5, atol=1e-6),
    Case("Gelu", [_x(39, edge=False)], opset=20, rtol=1e-6, atol=1e-7),
    Case(
        "Gelu",
        [_x(40, edge=False)],
        {"approximate": "tanh"},
        opset=20,
        id="tanh",
        rtol=1e-5,
        atol=1e-6,
    ),
    Case("Clip", [_x(41), np.array(F(-1)), np.array(F(6))], opset=13),
    Case("Clip", [_x(42), None, np.array(F(6))], opset=13, id="max-only", spec_differs=True),
    Case("Clip", [_x(43)], {"min": -0.5, "max": 0.5}, opset=6, id="v6"),
    Case("Softmax", [SOFT], {"axis": -1}, opset=13, rtol=1e-6, atol=1e-9),
    Case(
        "Softmax",
        [_img((2, 5, 3, 4), 44) * F(4)],
        {"axis": 1},
        opset=13,
        id="axis1",
        rtol=1e-6,
        atol=1e-9,
    ),
    Case(
        "Softmax",
        [_img((2, 5, 3, 4), 45) * F(4)],
        {"axis": 2},
        opset=11,
        id="v11",
        rtol=1e-6,
        atol=1e-9,
    ),
    Case("LogSoftmax", [SOFT], {"axis": -1}, opset=13, rtol=1e-6, atol=1e-6),
    Case("Cast", [_x(46)], {"to": TensorProto.FLOAT16}),
    Case("Cast", [A4 * F(100)], {"to": TensorProto.INT32}, id="toint"),
    Case("CastLike", [INT_A, np.array(F(0))], opset=15),
    # linear algebra
    Case("MatMul", [_img((2, 8, 33), 50), _img((33, 17), 51)], rtol=1e-5, atol=1e-5),
    Case(
        "Gemm",
        [_img((8, 33), 52), _img((17, 33), 53), _img((17,), 54)],
        {"transB": 1, "alpha": 0.5, "beta": 2.0},
        rtol=1e-5,
        atol=1e-5,
    ),
    Case(
        "Einsum",
        [_img((2, 3, 4), 55), _img((2, 4, 5), 56)],
        {"equation": "bij,bjk->bik"},
        opset=12,
        rtol=1e-5,
        atol=1e-6,
    ),
    # convolution
    Case(
        "Conv",
        [IMG, _img((6, 4, 3, 3), 60), _img((6,), 61)],
        {"pads": [1, 1, 1, 1]},
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "Conv",
        [IMG, _img((8, 2, 3, 2), 62)],
        {"group": 2, "strides": [2, 1], "dilations": [1, 2], "pads": [1, 2, 0, 1]},
        id="group",
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "Conv",
        [IMG, _img((4, 1, 3, 3), 63)],
        {"group": 4, "auto_pad": "SAME_LOWER", "strides": [2, 2]},
        id="depthwise",
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "Conv",
        [_img((1, 3, 20), 64), _img((5, 3, 4), 65)],
        {"auto_pad": "VALID"},
        id="1d",
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "ConvTranspose",
        [IMG, _img((4, 3, 3, 3), 66), _img((3,), 67)],
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "ConvTranspose",
        [IMG, _img((4, 2, 2, 3), 68)],
        {"strides": [2, 3], "group": 2, "dilations": [2, 1]},
        id="group",
        rtol=1e-4,
        atol=1e-5,
    ),
    # normalization
    Case(
        "BatchNormalization",
        [IMG, _img((4,), 70), _img((4,), 71), _img((4,), 72), np.abs(_img((4,), 73))],
        {"epsilon": 1e-3},
        opset=15,
    ),
    Case("InstanceNormalization", [IMG, _img((4,), 74), _img((4,), 75)], rtol=1e-5, atol=1e-5),
    Case(
        "LayerNormalization",
        [_img((4, 6, 64), 76) * F(3) + F(1), _img((64,), 77), _img((64,), 78)],
        {"axis": -1},
        rtol=1e-5,
        atol=1e-5,
    ),
    # pooling
    Case("MaxPool", [IMG], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case(
        "MaxPool",
        [IMG],
        {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1, "dilations": [1, 2]},
        opset=12,
        id="ceil-dil",
    ),
    Case(
        "AveragePool",
        [IMG],
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        rtol=1e-6,
    ),
    Case(
        "AveragePool",
        [IMG],
        {"kernel_shape": [3, 2], "pads": [1, 0, 1, 1], "count_include_pad": 1},
        id="incl-pad",
        rtol=1e-6,
    ),
    Case(
        "AveragePool",
        [IMG],
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
        opset=19,
        id="ceil",
        rtol=1e-6,
    ),
    Case(
        "AveragePool",
        [IMG],
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
        opset=11,
        id="ceil-v11",
        rtol=1e-6,
    ),
    Case(
        "AveragePool",
        [IMG],
        {"kernel_shape": [2, 2], "dilations": [2, 1], "pads": [1, 1, 0, 1]},
        opset=19,
        id="dil-v19",
        rtol=1e-6,
    ),
    Case("GlobalAveragePool", [IMG], rtol=1e-6, atol=1e-7),
    Case("GlobalMaxPool", [IMG]),
    # reductions
    Case("ReduceMean", [IMG], {"axes": [2, 3], "keepdims": 1}, opset=13, rtol=1e-6, atol=1e-7),
    Case("ReduceMean", [IMG, _i64(1)], {"keepdims": 0}, opset=18, id="v18", rtol=1e-6, atol=1e-7),
    Case("ReduceSum", [IMG, _i64(-1)], opset=13, rtol=1e-6, atol=1e-6),
    Case("ReduceMax", [IMG], {"axes": [1]}, opset=13),
    Case("ReduceMin", [IMG, _i64(0, 2)], {"keepdims": 0}, opset=18),
    Case("ReduceProd", [IMG], {"axes": [1]}, opset=13, rtol=1e-6, atol=1e-7),
    Case("ReduceL2", [IMG], {"axes": [2, 3]}, opset=13, rtol=1e-6),
    Case("ArgMax", [IMG], {"axis": 1}),
    Case("ArgMin", [np.round(IMG)], {"axis": 3, "keepdims": 0, "select_last_index": 1}, opset=12),
    Case("CumSum", [IMG, np.array(2, np.int64)], opset=14),
    Case(
        "CumSum",
        [IMG, np.array(-1, np.int64)],
        {"exclusive": 1, "reverse": 1},
        opset=14,
        id="excl-rev",
    ),
    # shape and data movement
    Case("Reshape", [A4, _i64(0, -1, 5)], opset=14),
    Case("Flatten", [A4], {"axis": 2}),
    Case("Transpose", [A4], {"perm": [2, 0, 3, 1]}),
    Case("Squeeze", [A4[:, :1], _i64(1)], opset=13),
    Case("Squeeze", [A4[:, :1]], {"axes": [1]}, opset=11, id="v11"),
    Case("Unsqueeze", [A4, _i64(0, -1)], opset=13),
    Case("Unsqueeze", [A4], {"axes": [1]}, opset=11, id="v11"),
    Case("Concat", [A4, B4[:, :2]], {"axis": 1}),
    Case("Split", [IMG, _i64(1, 3)], {"axis": 1}, opset=13, outs=2),
    Case("Split", [IMG], {"axis": 3, "num_outputs": 4}, opset=18, outs=4, id="num-outputs"),
    Case("Split", [IMG], {"axis": 1, "split": [3, 1]}, opset=11, outs=2, id="v11"),
    Case("Slice", [A4, _i64(1, -1), _i64(100, -5), _i64(3, 1), _i64(2, -1)], opset=13),
    Case("Slice", [A4], {"starts": [1], "ends": [4], "axes": [2]}, opset=9, id="v1"),
    Case("Gather", [A4, _i64(0, -1, 2)], {"axis": 2}),
    Case("GatherElements", [_img((3, 4), 80), np.array([[0, 1, -1, 2], [2, 0, 0, 1]], np.int64)]),
    Case("Expand", [A4[:, :1], _i64(3, 2, 1, 1, 7)], opset=13),
    Case("Tile", [A4, _i64(1, 2, 1, 3)]),
    Case("Shape", [A4], {"start": 1, "end": -1}, opset=15),
    Case("Size", [A4]),
    Case(
        "ConstantOfShape",
        [_i64(2, 3)],
        {"value": helper.make_tensor("v", TensorProto.FLOAT, [1], [1.5])},
    ),
    Case("Constant", [], {"value": onnx.numpy_helper.from_array(A4, "c")}),
    Case("Range", [np.array(F(0.1)), np.array(F(7.3)), np.array(F(0.3))], opset=11, rtol=1e-6),
    Case("Identity", [A4]),
    Case("Dropout", [A4], opset=13),
    Case("DepthToSpace", [_img((1, 8, 3, 4), 81)], {"blocksize": 2, "mode": "CRD"}),
    Case("DepthToSpace", [_img((1, 8, 3, 4), 82)], {"blocksize": 2}, id="dcr"),
    Case("SpaceToDepth", [_img((1, 2, 4, 6), 83)], {"blocksize": 2}),
    Case("TopK", [np.round(IMG * 2), _i64(3)], {"axis": 1}, opset=11, outs=2),
    Case("TopK", [np.round(IMG * 2), _i64(4)], {"largest": 0}, opset=11, outs=2, id="smallest"),
    Case("NonZero", [np.round(IMG[0])]),
    Case("Pad", [A4, _i64(0, 1, 2, 0, 0, 2, 1, 3), np.array(F(1.5))], opset=13),
    Case("Pad", [IMG, _i64(0, 0, 2, 3, 0, 0, 1, 2)], {"mode": "reflect"}, opset=13, id="reflect"),
    Case("Pad", [IMG, _i64(0, 0, -1, 3, 0, 0, 1, -2)], {"mode": "edge"}, opset=13, id="edge-neg"),
    Case(
        "Pad", [IMG, _i64(1, 2, 1, 2), None, _i64(2, 3)], {"mode": "wrap"}, opset=19, id="wrap-axes"
    ),
    Case("Pad", [A4], {"pads": [0, 1, 0, 0, 0, 0, 2, 0], "value": -1.0}, opset=9, id="v2"),
    # resize
    *[
        Case(
            "Resize",
            [IMG, None, np.array([1, 1, 2.0, 1.5], F)],
            {"mode": "nearest", "coordinate_transformation_mode": ctm, "nearest_mode": nm},
            opset=13,
            const=(2,),
            id=f"nearest-{ctm}-{nm}",
        )
        for ctm in (
            "half_pixel",
            "asymmetric",
            "align_corners",
            "pytorch_half_pixel",
            "tf_half_pixel_for_nn",
        )
        for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
    ],
    *[
        Case(
            "Resize",
            [IMG, None, np.array([1, 1, 1.7, 0.6], F)],
            {"mode": "linear", "coordinate_transformation_mode": ctm},
            opset=13,
            const=(2,),
            id=f"linear-{ctm}",
            rtol=1e-5,
            atol=1e-6,
        )
        for ctm in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel")
    ],
    Case(
        "Resize",
        [IMG, None, None, _i64(2, 4, 20, 7)],
        {"mode": "linear"},
        opset=19,
        const=(3,),
        id="linear-sizes",
        rtol=1e-5,
        atol=1e-6,
    ),
    Case(
        "Resize",
        [IMG, None, np.array([1, 1, 2.0, 2.0], F)],
        {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"},
        opset=19,
        const=(2,),
        id="linear-hps",
        rtol=1e-5,
        atol=1e-6,
    ),
    Case(
        "Resize",
        [IMG, None, np.array([1, 1, 2.0, 2.0], F)],
        {"mode": "cubic"},
        opset=13,
        const=(2,),
        id="cubic",
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "Resize",
        [IMG, np.array([], F), np.array([1, 1, 2.0, 3.0], F)],
        {"mode": "nearest"},
        opset=11,
        const=(1, 2),
        id="v11",
    ),
    Case(
        "Resize",
        [IMG, np.array([1, 1, 2.0, 3.0], F)],
        {"mode": "nearest"},
        opset=10,
        const=(1,),
        id="v10",
    ),
    Case(
        "Upsample", [IMG, np.array([1, 1, 2.0, 2.0], F)], {"mode": "nearest"}, opset=9, const=(1,)
    ),
    # recurrent
    Case(
        "LSTM",
        [
            _img((5, 2, 6), 90),
            _img((1, 32, 6), 91) * F(0.3),
            _img((1, 32, 8), 92) * F(0.3),
            _img((1, 64), 93) * F(0.1),
        ],
        {"hidden_size": 8},
        outs=3,
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "GRU",
        [_img((5, 2, 6), 94), _img((2, 24, 6), 95) * F(0.3), _img((2, 24, 8), 96) * F(0.3)],
        {"hidden_size": 8, "direction": "bidirectional", "linear_before_reset": 1},
        outs=2,
        rtol=1e-4,
        atol=1e-5,
    ),
]


def _case_id(c: Case) -> str:
    return f"{c.op}-{c.id}" if c.id else c.op


@pytest.mark.parametrize("profile", ["ort-x86", "onnx-ref"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_against_onnxruntime(case: Case, profile: str) -> None:
    want, got, spec = _run_case(case, profile)
    if profile == "onnx-ref" and case.spec_differs:
        assert any(mismatches(w, g) for w, g in zip(want, got, strict=True))
        return
    for w, g in zip(want, got, strict=True):
        bad = mismatches(w, g) if np.asarray(w).dtype == np.asarray(g).dtype else -1
        if spec.exact:
            assert bad == 0, f"{bad} of {np.size(w)} elements differ ({spec.fn.__name__})"
        else:
            np.testing.assert_allclose(g, w, rtol=case.rtol, atol=case.atol)


# (op, "generic" | "ort") -> measured 0 mismatches against onnxruntime on the cases above
EXACT: dict[tuple[str, str], bool] = {}


def _words(s: str) -> list[str]:
    return s.split()


def _table() -> None:
    exact_ops = _words("""Add Sub Mul Div Max Min Sum Mean Equal Less LessOrEqual Greater
        GreaterOrEqual And Or Xor Not Where Mod Neg Abs Sign Sqrt Reciprocal Floor Ceil Round
        Relu LeakyRelu PRelu HardSigmoid HardSwish Softsign ThresholdedRelu Cast CastLike
        BatchNormalization MaxPool GlobalMaxPool ReduceMax ReduceMin ArgMax ArgMin
        CumSum Identity Dropout Shape Size Reshape Flatten Transpose Squeeze Unsqueeze Concat Split
        Slice Gather GatherElements GatherND Expand Tile ConstantOfShape Constant DepthToSpace
        SpaceToDepth TopK NonZero Pad""")
    inexact_ops = _words("""Pow Exp Log Erf Sigmoid Tanh Elu Selu Celu Softplus Mish Gelu Softmax
        LogSoftmax MatMul Gemm Einsum Conv ConvTranspose InstanceNormalization LayerNormalization
        AveragePool GlobalAveragePool LpNormalization ReduceSum ReduceMean ReduceProd ReduceL1
        ReduceL2 ReduceSumSquare ReduceLogSum ReduceLogSumExp Resize Upsample LSTM GRU Range""")
    for op in exact_ops:
        EXACT[(op, "generic")] = True
    for op in inexact_ops:
        EXACT[(op, "generic")] = False
    EXACT[("Clip", "generic")] = True  # Clip-6 and Clip-11 with both bounds; not +-inf alone
    for op in _words("Pow Exp Erf Sigmoid Tanh Gelu Softmax LogSoftmax Clip Range"):
        EXACT[(op, "ort")] = True


_table()


def test_exact_flags_match_measurements() -> None:
    """Every float kernel's ``exact`` flag is the measured one in :data:`EXACT`."""
    from qcc.interp.registry import _REGISTRY

    seen = set()
    for specs in _REGISTRY.values():
        for s in specs:
            if s.fn.__module__ != float_ops.__name__:
                continue
            key = (s.op, "ort" if s.profiles else "generic")
            seen.add(key)
            assert key in EXACT, f"{key} has no measured entry"
            assert s.exact == EXACT[key], (
                f"{key}: registered exact={s.exact}, measured {EXACT[key]}"
            )
    assert seen == set(EXACT)


# ----------------------------------------------------------------- MLAS algorithms at scale


@pytest.mark.parametrize(
    ("op", "fn"),
    [("Sigmoid", mlas.logistic), ("Tanh", mlas.tanh), ("Erf", mlas.erf), ("Exp", mlas.exp)],
)
def test_mlas_unary_bitexact_at_scale(op, fn) -> None:
    """~1M values including the clamp boundaries, subnormals, infinities and NaN."""
    r = _rng(100)
    x = np.concatenate(
        [
            r.standard_normal(1 << 19).astype(F) * F(6),
            r.uniform(-130, 100, 1 << 18).astype(F),
            _edge(),
        ]
    )
    model, feeds = _model(Case(op, [x]))
    (want,) = _ort(model, feeds)
    assert mismatches(fn(x), want) == 0


@pytest.mark.parametrize("d", [1, 15, 16, 17, 48, 49, 100, 1001])
def test_mlas_softmax_row_lengths(d) -> None:
    """The lane-accumulator sum order matters for every row length modulo 16 and 48."""
    x = (_rng(d).standard_normal((16, d)) * 5).astype(F)
    for op, fn in (("Softmax", mlas.softmax), ("LogSoftmax", mlas.log_softmax)):
        model, feeds = _model(Case(op, [x], {"axis": -1}, opset=13))
        (want,) = _ort(model, feeds)
        assert mismatches(fn(x), want) == 0


def test_fma_emulation_rounds_once() -> None:
    """The double-rounding corner: (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 is a float32 midpoint; a
    tiny addend decides the direction, which a float64 sum rounded to float32 would lose."""
    a = np.array([1 + 2**-12], F)
    tiny = np.array([2.0**-80], F)
    assert mlas.fma(a, a, tiny)[0] == F(1 + 2**-11 + 2**-23)
    assert mlas.fma(a, a, -tiny)[0] == F(1 + 2**-11)
    assert mlas.fma(a, a, np.zeros(1, F))[0] == F(1 + 2**-11)  # the tie itself: to even


# --------------------------------------------------------------------------- default-level fusions


def _two_node(nodes, inputs, inits=()) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[onnx.numpy_helper.from_array(a, n) for n, a in inits],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize(
    "name",
    ["conv-relu", "hardsigmoid-mul", "gelu-pattern", "bn-after-conv"],
)
def test_default_level_fusions(name) -> None:
    """What onnxruntime's default level (ORT_ENABLE_ALL) does to single float patterns.

    The interpreter executes the graph as written; these cases record how far the fused
    onnxruntime result is from the unfused one:

    - Conv -> Relu becomes FusedConv (Relu inside MLAS's conv), in NCHWc layout on AVX512: the
      conv itself is inexact either way;
    - HardSigmoid -> Mul(x) becomes HardSwish: identical results (same float ops);
    - x/sqrt(2) -> Erf -> +1 -> *x -> *0.5 becomes com.microsoft Gelu, which changes the
      rounding (a few ulps);
    - Conv -> BatchNormalization folds the BN into the conv weights: results move by ulps.
    """
    x = _img((1, 4, 8, 8), 120)
    if name == "conv-relu":
        m = _two_node(
            [
                helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                helper.make_node("Relu", ["c"], ["y"]),
            ],
            [("x", x)],
            [("w", _img((4, 4, 3, 3), 121))],
        )
        tol = 1e-5
    elif name == "hardsigmoid-mul":
        m = _two_node(
            [
                helper.make_node("HardSigmoid", ["x"], ["h"], alpha=1 / 6),
                helper.make_node("Mul", ["x", "h"], ["y"]),
            ],
            [("x", x * F(4))],
        )
        tol = 0.0
    elif name == "gelu-pattern":
        nodes = [
            helper.make_node("Div", ["x", "s2"], ["d"]),
            helper.make_node("Erf", ["d"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["a"]),
            helper.make_node("Mul", ["x", "a"], ["m"]),
            helper.make_node("Mul", ["m", "half"], ["y"]),
        ]
        inits = [
            ("s2", np.array(F(np.sqrt(2)))),
            ("one", np.array(F(1))),
            ("half", np.array(F(0.5))),
        ]
        m = _two_node(nodes, [("x", x * F(3))], inits)
        tol = 1e-6
    else:
        nodes = [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("BatchNormalization", ["c", "sc", "b", "mu", "var"], ["y"]),
        ]
        inits = [
            ("w", _img((4, 4, 1, 1), 122)),
            ("sc", _img((4,), 123)),
            ("b", _img((4,), 124)),
            ("mu", _img((4,), 125)),
            ("var", np.abs(_img((4,), 126)) + F(0.5)),
        ]
        m = _two_node(nodes, [("x", x)], inits)
        tol = 1e-5
    feeds = {
        "x": x * F(4) if name == "hardsigmoid-mul" else (x * F(3) if name == "gelu-pattern" else x)
    }
    (fused,) = _ort(m, feeds, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    got = Interpreter(lift_model(m), profile="ort-x86").run(feeds)["y"]
    if tol == 0.0:
        assert mismatches(got, fused) == 0
    else:
        np.testing.assert_allclose(got, fused, rtol=tol, atol=tol)
