"""Every translated ONNX op, with its attribute combinations, in a one-node model run by hubkit and onnxruntime.

Tolerance: relative error <= 1e-5 (one op in float32: only summation order differs).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hubkit as hk
from tests.importers.onnx.onnx_helpers import rel_err, run_ort

rng = np.random.default_rng(0)
_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
          np.dtype(np.bool_): TensorProto.BOOL, np.dtype(np.int32): TensorProto.INT32}


def f(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def run_case(tmp_path, op, inputs, attrs=None, n_out=1, opset=21, init=(), export=False):
    """Builds ``op`` over ``inputs`` (name -> array; names in ``init`` become initializers), compares outputs."""
    names = list(inputs)
    graph_inputs = [helper.make_tensor_value_info(n, _TYPES[inputs[n].dtype], list(inputs[n].shape))
                    for n in names if n not in init and inputs[n] is not None]
    inits = [numpy_helper.from_array(inputs[n], n) for n in init]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, [n if inputs[n] is not None else "" for n in names], outs, name="the_node",
                            **(attrs or {}))
    graph = helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name=o) for o in outs],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model = onnx.shape_inference.infer_shapes(model)  # fills in the outputs' types
    path = str(tmp_path / f"{op}.onnx")
    onnx.save(model, path)
    feeds = {n: inputs[n] for n in names if n not in init and inputs[n] is not None}
    want = run_ort(path, feeds)
    module = hk.Module(path)
    if export:  # and back: the imported module written as ONNX again gives onnxruntime the same outputs
        exported = hk.export_onnx(module, str(tmp_path / f"{op}_exported.onnx"))
        want = run_ort(exported, feeds)
        outs = [o.name for o in onnx.load(exported).graph.output]
    got = module(feeds, as_dict=True) if feeds else module(as_dict=True)
    for o, w in zip(outs, want):
        g = np.asarray(got[o])
        assert g.dtype == w.dtype, (op, g.dtype, w.dtype)
        if w.dtype.kind == "f":
            assert rel_err(g, w) <= 1e-5, (op, attrs)
        else:
            np.testing.assert_array_equal(g, w)


X4 = f(2, 4, 7, 6)
CASES = [
    ("Conv", {"x": X4, "w": f(6, 4, 3, 3), "b": f(6)}, {"pads": [1, 1, 1, 1]}, ("w", "b")),
    ("Conv", {"x": X4, "w": f(6, 2, 3, 2)}, {"group": 2, "strides": [2, 1], "dilations": [2, 1]}, ("w",)),
    ("Conv", {"x": X4, "w": f(4, 1, 3, 3)}, {"group": 4, "auto_pad": "SAME_UPPER", "strides": [2, 2]}, ("w",)),
    ("Conv", {"x": X4, "w": f(4, 1, 2, 2)}, {"group": 4, "auto_pad": "SAME_LOWER"}, ("w",)),
    ("Conv", {"x": X4, "w": f(3, 4, 3, 3)}, {"auto_pad": "VALID", "strides": [2, 2]}, ("w",)),
    ("Conv", {"x": f(2, 3, 9), "w": f(5, 3, 3)}, {"pads": [2, 1], "dilations": [2]}, ("w",)),
    ("Conv", {"x": X4, "w": f(5, 4, 1, 1)}, {}, ("w",)),
    ("ConvTranspose", {"x": X4, "w": f(4, 3, 3, 3), "b": f(3)}, {"strides": [2, 2], "pads": [1, 0, 0, 1]}, ("w", "b")),
    ("ConvTranspose", {"x": X4, "w": f(4, 2, 2, 3)}, {"group": 2, "strides": [2, 1], "output_padding": [1, 0]}, ("w",)),
    ("ConvTranspose", {"x": X4, "w": f(4, 3, 3, 3)}, {"strides": [2, 2], "dilations": [2, 1]}, ("w",)),
    ("ConvTranspose", {"x": X4, "w": f(4, 3, 3, 3)}, {"strides": [2, 2], "output_shape": [14, 12]}, ("w",)),
    ("ConvTranspose", {"x": X4, "w": f(4, 3, 3, 3)}, {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, ("w",)),
    ("MaxPool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, ()),
    ("MaxPool", {"x": X4}, {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}, ()),
    ("MaxPool", {"x": X4}, {"kernel_shape": [2, 2], "dilations": [2, 2]}, ()),
    ("MaxPool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, ()),
    ("AveragePool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, ()),
    ("AveragePool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                "count_include_pad": 1}, ()),
    ("AveragePool", {"x": X4}, {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}, ()),
    ("AveragePool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1,
                                "count_include_pad": 1}, ()),
    ("AveragePool", {"x": X4}, {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER"}, ()),
    ("GlobalAveragePool", {"x": X4}, {}, ()),
    ("GlobalMaxPool", {"x": X4}, {}, ()),
    ("LRN", {"x": X4}, {"size": 3, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}, ()),
    ("LRN", {"x": X4}, {"size": 5}, ()),
    ("BatchNormalization", {"x": X4, "s": f(4), "b": f(4), "m": f(4), "v": np.abs(f(4)) + 0.5},
     {"epsilon": 1e-3}, ("s", "b", "m", "v")),
    ("InstanceNormalization", {"x": X4, "s": f(4), "b": f(4)}, {"epsilon": 1e-4}, ("s", "b")),
    ("LayerNormalization", {"x": f(2, 5, 8), "s": f(8), "b": f(8)}, {}, ("s", "b")),
    ("LayerNormalization", {"x": f(2, 5, 8), "s": f(5, 8)}, {"axis": 1, "epsilon": 1e-3}, ("s",)),
    ("Gemm", {"a": f(3, 5), "b": f(5, 4), "c": f(4)}, {}, ("b", "c")),
    ("Gemm", {"a": f(5, 3), "b": f(4, 5), "c": f(3, 4)}, {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}, ()),
    ("MatMul", {"a": f(2, 3, 5), "b": f(5, 4)}, {}, ("b",)),
    ("MatMul", {"a": f(5), "b": f(2, 5, 4)}, {}, ()),
    ("MatMul", {"a": f(2, 3, 5), "b": f(5)}, {}, ()),
    ("Einsum", {"a": f(2, 3, 4), "b": f(2, 4, 5)}, {"equation": "bij,bjk->bik"}, ()),
    ("Einsum", {"a": f(3, 4)}, {"equation": "ij->ji"}, ()),
    ("Einsum", {"a": f(3, 4), "b": f(4)}, {"equation": "ij,j"}, ()),
    ("Relu", {"x": X4}, {}, ()),
    ("LeakyRelu", {"x": X4}, {"alpha": 0.3}, ()),
    ("Sigmoid", {"x": X4}, {}, ()),
    ("Tanh", {"x": X4}, {}, ()),
    ("HardSigmoid", {"x": X4}, {"alpha": 0.3, "beta": 0.4}, ()),
    ("HardSwish", {"x": X4 * 4}, {}, ()),
    ("Gelu", {"x": X4}, {}, ()),
    ("Gelu", {"x": X4}, {"approximate": "tanh"}, ()),
    ("Erf", {"x": X4}, {}, ()),
    ("Clip", {"x": X4, "lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, {}, ("lo", "hi")),
    ("Clip", {"x": X4, "lo": None, "hi": np.array(0.7, np.float32)}, {}, ("hi",)),
    ("Softmax", {"x": X4}, {"axis": 1}, ()),
    ("LogSoftmax", {"x": X4}, {}, ()),
    ("Dropout", {"x": X4}, {}, ()),
    ("Add", {"a": X4, "b": f(7, 1)}, {}, ()),
    ("Sub", {"a": X4, "b": f(6)}, {}, ()),
    ("Mul", {"a": X4, "b": f(4, 1, 1)}, {}, ("b",)),
    ("Div", {"a": X4, "b": np.abs(f(6)) + 1}, {}, ()),
    ("Div", {"a": i64(7, -7, 9, -9), "b": i64(2, 2, -4, -4)}, {}, ()),
    ("Pow", {"a": np.abs(X4), "b": np.array(1.5, np.float32)}, {}, ()),
    ("Sqrt", {"x": np.abs(X4)}, {}, ()),
    ("Exp", {"x": X4}, {}, ()),
    ("Log", {"x": np.abs(X4) + 0.1}, {}, ()),
    ("Neg", {"x": X4}, {}, ()),
    ("Abs", {"x": X4}, {}, ()),
    ("Reciprocal", {"x": np.abs(X4) + 0.5}, {}, ()),
    ("Sum", {"a": X4, "b": f(6), "c": f(7, 6)}, {}, ()),
    ("Max", {"a": X4, "b": f(6)}, {}, ()),
    ("Min", {"a": X4, "b": f(6), "c": f(1)}, {}, ()),
    ("Mean", {"a": X4, "b": f(6)}, {}, ()),
    ("Reshape", {"x": X4, "s": i64(0, -1, 3)}, {}, ("s",)),
    ("Reshape", {"x": X4, "s": i64(4, 0, 21)}, {}, ("s",)),
    ("Flatten", {"x": X4}, {}, ()),
    ("Flatten", {"x": X4}, {"axis": 3}, ()),
    ("Flatten", {"x": X4}, {"axis": 0}, ()),
    ("Transpose", {"x": X4}, {"perm": [0, 2, 3, 1]}, ()),
    ("Transpose", {"x": X4}, {}, ()),
    ("Squeeze", {"x": f(2, 1, 3, 1), "a": i64(1, -1)}, {}, ("a",)),
    ("Unsqueeze", {"x": f(2, 3), "a": i64(0, -1, 2)}, {}, ("a",)),
    ("Concat", {"a": X4, "b": f(2, 2, 7, 6)}, {"axis": 1}, ()),
    ("Concat", {"a": X4, "b": f(2, 4, 7, 1)}, {"axis": -1}, ()),
    ("Split", {"x": X4, "s": i64(1, 3)}, {"axis": 1}, ("s",)),
    ("Slice", {"x": X4, "s": i64(1, -5), "e": i64(2**63 - 1, -1), "a": i64(1, 2), "st": i64(1, 2)}, {},
     ("s", "e", "a", "st")),
    ("Slice", {"x": X4, "s": i64(-1), "e": i64(-(2**63)), "a": i64(3), "st": i64(-2)}, {}, ("s", "e", "a", "st")),
    ("Gather", {"x": f(5, 3), "i": i64(0, 4, -1, 2)}, {}, ("i",)),
    ("Gather", {"x": f(2, 5, 3), "i": i64(1, 0)}, {"axis": 1}, ()),
    ("GatherElements", {"x": f(3, 4), "i": i64(0, 2, -1, 1, 1, 0, 2, 2).reshape(2, 4)}, {"axis": 0}, ()),
    ("Shape", {"x": X4}, {}, ()),
    ("Shape", {"x": X4}, {"start": 1, "end": -1}, ()),
    ("Size", {"x": X4}, {}, ()),
    ("Expand", {"x": f(3, 1), "s": i64(2, 1, 4)}, {}, ("s",)),
    ("Tile", {"x": f(2, 3), "r": i64(2, 3)}, {}, ("r",)),
    ("Pad", {"x": X4, "p": i64(0, 1, 2, 0, 0, 0, 1, 3), "v": np.array(1.5, np.float32)}, {}, ("p", "v")),
    ("Pad", {"x": X4, "p": i64(0, 0, 2, 1, 0, 0, 1, 3)}, {"mode": "reflect"}, ("p",)),
    ("Pad", {"x": X4, "p": i64(0, 0, 2, 1, 0, 0, 1, 3)}, {"mode": "edge"}, ("p",)),
    ("Pad", {"x": X4, "p": i64(1, 2, 3, 4), "v": None, "a": i64(2, -1)}, {}, ("p", "a")),
    ("Where", {"c": X4 > 0, "a": X4, "b": f(6)}, {}, ()),
    ("Equal", {"a": i64(1, 2, 3), "b": i64(1, 0, 3)}, {}, ()),
    ("Less", {"a": X4, "b": f(6)}, {}, ()),
    ("Greater", {"a": X4, "b": f(6)}, {}, ()),
    ("Not", {"a": X4 > 0}, {}, ()),
    ("And", {"a": X4 > 0, "b": X4 < 0.5}, {}, ()),
    ("Cast", {"x": X4 * 10}, {"to": TensorProto.INT64}, ()),
    ("Cast", {"x": i64(1, 0, 3)}, {"to": TensorProto.FLOAT}, ()),
    ("ConstantOfShape", {"s": i64(2, 3)}, {"value": numpy_helper.from_array(np.array([2.5], np.float32))}, ("s",)),
    ("ConstantOfShape", {"s": i64(2, 3)}, {}, ()),
    ("Range", {"a": np.array(1.0, np.float32), "b": np.array(7.5, np.float32), "c": np.array(1.5, np.float32)}, {},
     ()),
    ("Range", {"a": np.array(10, np.int64), "b": np.array(1, np.int64), "c": np.array(-3, np.int64)}, {}, ("a", "b", "c")),
    ("Identity", {"x": X4}, {}, ()),
    ("ReduceMean", {"x": X4, "a": i64(1, -1)}, {}, ("a",)),
    ("ReduceSum", {"x": X4, "a": i64(2)}, {"keepdims": 0}, ("a",)),
    ("ReduceSum", {"x": X4}, {}, ()),
    ("ReduceSum", {"x": X4}, {"noop_with_empty_axes": 1}, ()),
    ("ReduceMax", {"x": X4, "a": i64(0, 3)}, {"keepdims": 0}, ("a",)),
    ("ReduceMin", {"x": X4}, {"keepdims": 0}, ()),
    ("ReduceL2", {"x": X4, "a": i64(1)}, {}, ("a",)),
    ("ArgMax", {"x": X4}, {"axis": 1}, ()),
    ("ArgMax", {"x": X4}, {"axis": -1, "keepdims": 0}, ()),
    ("CumSum", {"x": X4, "a": np.array(2, np.int64)}, {}, ("a",)),
    ("CumSum", {"x": X4, "a": np.array(-1, np.int64)}, {"exclusive": 1, "reverse": 1}, ("a",)),
    ("Trilu", {"x": f(2, 4, 5)}, {}, ()),
    *[("Resize", {"x": X4, "roi": None, "s": np.array([1, 1, 2, 1.5], np.float32)},
       {"mode": mode, "coordinate_transformation_mode": coord}, ("s",))
      for mode in ("nearest", "linear")
      for coord in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel")],
    *[("Resize", {"x": X4, "roi": None, "s": None, "z": i64(2, 4, 3, 13)},
       {"mode": "nearest", "nearest_mode": nm, "coordinate_transformation_mode": "tf_half_pixel_for_nn"}, ("z",))
      for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")],
    ("Resize", {"x": X4, "roi": None, "s": None, "z": i64(2, 4, 5, 9)}, {"mode": "linear"}, ("z",)),
    ("Trilu", {"x": f(2, 4, 5), "k": np.array(-1, np.int64)}, {"upper": 0}, ("k",)),
]


@pytest.mark.parametrize("op,inputs,attrs,init", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_op_matches_onnxruntime(tmp_path, op, inputs, attrs, init):
    n_out = 1
    if op == "Split":
        n_out = 2
    run_case(tmp_path, op, inputs, attrs, n_out=n_out, init=init)


@pytest.mark.parametrize("op,inputs,attrs,init", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_imported_op_exports_back_to_onnx(tmp_path, op, inputs, attrs, init):
    run_case(tmp_path, op, inputs, attrs, n_out=2 if op == "Split" else 1, init=init, export=True)


def test_topk_matches_onnxruntime(tmp_path):
    x = np.round(f(3, 6) * 2) / 2  # ties: the lower index comes first
    run_case(tmp_path, "TopK", {"x": x, "k": i64(3)}, {"axis": 1}, n_out=2, init=("k",))
    run_case(tmp_path, "TopK", {"x": x, "k": i64(2)}, {"axis": 0, "largest": 0}, n_out=2, init=("k",))
    run_case(tmp_path, "TopK", {"x": x, "k": i64(3)}, {"axis": 1}, n_out=2, init=("k",), export=True)


@pytest.mark.parametrize("opset", [9, 11, 13])
def test_old_opsets_are_converted_with_their_semantics(tmp_path, opset):
    # Softmax before opset 13 flattens to 2-D around the axis: the converter must keep that meaning.
    x = f(2, 3, 4)
    run_case(tmp_path, "Softmax", {"x": x}, {"axis": 1}, opset=opset)
    run_case(tmp_path, "ReduceMean", {"x": x}, {"axes": [1], "keepdims": 0}, opset=opset)
    if opset < 13:
        run_case(tmp_path, "Unsqueeze", {"x": x}, {"axes": [0, 3]}, opset=opset)
        run_case(tmp_path, "Clip", {"x": x}, {"min": -0.2, "max": 0.3} if opset < 11 else {}, opset=opset)
