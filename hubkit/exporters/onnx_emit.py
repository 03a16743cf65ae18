"""How each hubkit op is written as ONNX nodes: ``EMITTERS[op](e, node, ins, outs)``.

``ins`` and ``outs`` are ONNX value names; ``e`` (an ``Emitter``) adds nodes and constants. Only ops with a
faithful ONNX form are here; anything else is refused by the exporter, never approximated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["EMITTERS"]

EMITTERS: dict[str, Callable[..., None]] = {}


def emits(*ops: str):
    def register(fn):
        for op in ops:
            EMITTERS[op] = fn
        return fn

    return register


def _same(onnx_op: str, **fixed: Any):
    def emit(e, node, ins, outs):
        e.node(onnx_op, ins, outs, **fixed)

    return emit


for _h, _o in {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div", "Pow": "Pow", "Maximum": "Max",
               "Minimum": "Min", "Neg": "Neg", "Abs": "Abs", "Sqrt": "Sqrt", "Exp": "Exp", "Log": "Log",
               "Tanh": "Tanh", "Sigmoid": "Sigmoid", "Erf": "Erf", "Relu": "Relu", "Identity": "Identity",
               "StopGradient": "Identity", "Floor": "Floor", "Sign": "Sign", "Softplus": "Softplus",
               "BiasAdd": "Add", "Select": "Where", "Equal": "Equal", "Less": "Less", "Greater": "Greater",
               "LessEqual": "LessOrEqual", "GreaterEqual": "GreaterOrEqual", "LogicalAnd": "And",
               "LogicalOr": "Or", "LogicalNot": "Not", "AddN": "Sum", "OnnxIntDiv": "Div",
               "OnnxGatherElements": "GatherElements", "OnnxExpand": "Expand"}.items():
    EMITTERS[_h] = _same(_o)


@emits("Rsqrt")
def rsqrt(e, node, ins, outs):
    e.node("Reciprocal", [e.node("Sqrt", ins)], outs)


@emits("Square")
def square(e, node, ins, outs):
    e.node("Mul", [ins[0], ins[0]], outs)


@emits("Log1p")
def log1p(e, node, ins, outs):
    e.node("Log", [e.node("Add", [ins[0], e.const(np.asarray(1, e.np_dtype(node.inputs[0])))])], outs)


@emits("NotEqual")
def not_equal(e, node, ins, outs):
    e.node("Not", [e.node("Equal", ins)], outs)


@emits("LeakyRelu")
def leaky_relu(e, node, ins, outs):
    e.node("LeakyRelu", ins, outs, alpha=float(node.attrs.get("alpha", 0.2)))


@emits("Elu")
def elu(e, node, ins, outs):
    e.node("Elu", ins, outs, alpha=1.0)


@emits("Relu6")
def relu6(e, node, ins, outs):
    dt = e.np_dtype(node.inputs[0])
    e.node("Clip", [ins[0], e.const(np.asarray(0, dt)), e.const(np.asarray(6, dt))], outs)


@emits("Softmax", "LogSoftmax")
def softmax(e, node, ins, outs):
    e.node(node.op, ins, outs, axis=int(node.attrs["axis"]))


@emits("Sum", "Mean", "Max", "Min", "Prod")
def reduce(e, node, ins, outs):
    op = {"Sum": "ReduceSum", "Mean": "ReduceMean", "Max": "ReduceMax", "Min": "ReduceMin", "Prod": "ReduceProd"}
    axis = node.attrs.get("axis")
    keep = int(bool(node.attrs.get("keepdims", False)))
    if axis is None:
        e.node(op[node.op], ins[:1], outs, keepdims=keep)
        return
    axes = [axis] if isinstance(axis, int) else list(axis)
    e.node(op[node.op], [ins[0], e.const(np.asarray(axes, np.int64))], outs, keepdims=keep)


@emits("MatMul")
def matmul(e, node, ins, outs):
    a, b = ins
    for flag, i in (("transpose_a", 0), ("transpose_b", 1)):
        if node.attrs.get(flag):
            rank = e.rank(node.inputs[i])
            perm = [*range(rank - 2), rank - 1, rank - 2]
            if i == 0:
                a = e.node("Transpose", [a], perm=perm)
            else:
                b = e.node("Transpose", [b], perm=perm)
    e.node("MatMul", [a, b], outs)


@emits("Reshape")
def reshape(e, node, ins, outs):
    if len(ins) == 1:
        target = [int(d) for d in node.attrs["shape"]]
        e.node("Reshape", [ins[0], e.const(np.asarray(target, np.int64))], outs, allowzero=int(0 in target))
    else:
        e.node("Reshape", [ins[0], e.int64(ins[1], node.inputs[1])], outs, allowzero=1)


@emits("OnnxReshape")
def onnx_reshape(e, node, ins, outs):
    e.node("Reshape", ins, outs, allowzero=int(bool(node.attrs.get("allowzero", False))))


@emits("OnnxFlatten")
def flatten(e, node, ins, outs):
    e.node("Flatten", ins, outs, axis=int(node.attrs.get("axis", 1)))


@emits("Transpose")
def transpose(e, node, ins, outs):
    perm = node.attrs.get("perm")
    e.node("Transpose", ins, outs, **({} if perm is None else {"perm": [int(p) for p in perm]}))


@emits("Concat")
def concat(e, node, ins, outs):
    e.node("Concat", ins, outs, axis=int(node.attrs["axis"]))


@emits("ExpandDims")
def expand_dims(e, node, ins, outs):
    e.node("Unsqueeze", [ins[0], e.const(np.asarray([int(node.attrs["axis"])], np.int64))], outs)


@emits("Squeeze")
def squeeze(e, node, ins, outs):
    axis = node.attrs.get("axis")
    if axis is None:
        e.node("Squeeze", ins, outs)
    else:
        axes = [axis] if isinstance(axis, int) else list(axis)
        e.node("Squeeze", [ins[0], e.const(np.asarray(axes, np.int64))], outs)


@emits("Cast")
def cast(e, node, ins, outs):
    e.node("Cast", ins, outs, to=e.onnx_type(node.attrs["dtype"]))


@emits("Gather")
def gather(e, node, ins, outs):
    e.node("Gather", ins, outs, axis=int(node.attrs.get("axis", 0)))


@emits("Shape", "Size")
def shape(e, node, ins, outs):
    out_type = node.attrs["out_type"]
    if out_type.name == "int64":
        e.node(node.op, ins, outs)
    else:
        e.node("Cast", [e.node(node.op, ins)], outs, to=e.onnx_type(out_type))


@emits("Tile")
def tile(e, node, ins, outs):
    e.node("Tile", [ins[0], e.const(np.asarray(node.attrs["multiples"], np.int64))], outs)


@emits("Pad")
def pad(e, node, ins, outs):
    pairs = node.attrs["paddings"]
    pads = [int(p[0]) for p in pairs] + [int(p[1]) for p in pairs]
    value = np.asarray(node.attrs.get("constant_values", 0), e.np_dtype(node.inputs[0]))
    e.node("Pad", [ins[0], e.const(np.asarray(pads, np.int64)), e.const(value)], outs)


@emits("StridedSlice")
def strided_slice(e, node, ins, outs):
    rank = e.rank(node.inputs[0])
    spec = [list(s) for s in node.attrs["spec"]]
    if any(s[0] == "ellipsis" for s in spec):
        i = next(i for i, s in enumerate(spec) if s[0] == "ellipsis")
        used = sum(s[0] in ("slice", "index") for s in spec)
        spec = spec[:i] + [["slice", None, None, None]] * (rank - used) + spec[i + 1 :]
    starts, ends, axes, steps, drop, new = [], [], [], [], [], []
    axis = 0
    out_axis = 0
    for s in spec:
        if s[0] == "newaxis":
            new.append(out_axis)
            out_axis += 1
            continue
        if s[0] == "index":
            i = int(s[1])
            starts.append(i), ends.append(i + 1 if i != -1 else 2**62), axes.append(axis), steps.append(1)
            drop.append(axis)
        else:
            start, stop, step = s[1], s[2], 1 if s[3] is None else int(s[3])
            starts.append(int(start) if start is not None else (0 if step > 0 else 2**62))
            ends.append(int(stop) if stop is not None else (2**62 if step > 0 else -(2**62)))
            axes.append(axis), steps.append(step)
            out_axis += 1
        axis += 1
    y = ins[0]
    if axes:
        y = e.node("Slice", [y, *(e.const(np.asarray(v, np.int64)) for v in (starts, ends, axes, steps))])
    if drop:
        y = e.node("Squeeze", [y, e.const(np.asarray(drop, np.int64))])
    if new:
        y = e.node("Unsqueeze", [y, e.const(np.asarray(new, np.int64))])
    e.node("Identity", [y], outs)


# -- convolutions and pools ----------------------------------------------------------------------------
def _tf_padding(padding: Any) -> dict[str, Any]:
    if padding == "SAME":
        return {"auto_pad": "SAME_UPPER"}  # TensorFlow's SAME puts the odd pixel at the end
    if padding == "VALID":
        return {"auto_pad": "VALID"}
    pairs = [list(p) for p in padding][1:3]  # explicit NHWC pairs: keep H and W
    return {"pads": [pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]]}


@emits("Conv2D")
def conv2d(e, node, ins, outs):
    x = e.node("Transpose", [ins[0]], perm=[0, 3, 1, 2])
    w = e.node("Transpose", [ins[1]], perm=[3, 2, 0, 1])  # HWIO -> OIHW
    y = e.node("Conv", [x, w], strides=list(node.attrs["strides"]), dilations=list(node.attrs["dilations"]),
               **_tf_padding(node.attrs["padding"]))
    e.node("Transpose", [y], outs, perm=[0, 2, 3, 1])


@emits("MaxPool", "AvgPool")
def pool(e, node, ins, outs):
    x = e.node("Transpose", [ins[0]], perm=[0, 3, 1, 2])
    op = "MaxPool" if node.op == "MaxPool" else "AveragePool"
    extra = {} if op == "MaxPool" else {"count_include_pad": 0}
    y = e.node(op, [x], kernel_shape=list(node.attrs["ksize"]), strides=list(node.attrs["strides"]),
               **_tf_padding(node.attrs["padding"]), **extra)
    e.node("Transpose", [y], outs, perm=[0, 2, 3, 1])


def _window(node) -> dict[str, Any]:
    a = node.attrs
    out = {"strides": list(a["strides"]), "pads": list(a["pads"])}
    if a.get("auto_pad", "NOTSET") != "NOTSET":
        out = {"strides": list(a["strides"]), "auto_pad": a["auto_pad"]}
    return out


@emits("OnnxConv")
def onnx_conv(e, node, ins, outs):
    e.node("Conv", ins, outs, dilations=list(node.attrs["dilations"]), group=int(node.attrs.get("group", 1)),
           **_window(node))


@emits("OnnxConvTranspose")
def onnx_conv_transpose(e, node, ins, outs):
    a = node.attrs
    extra = {k: list(a[k]) for k in ("output_padding", "output_shape") if a.get(k)}
    e.node("ConvTranspose", ins, outs, dilations=list(a["dilations"]), group=int(a.get("group", 1)), **_window(node),
           **extra)


@emits("OnnxMaxPool")
def onnx_max_pool(e, node, ins, outs):
    a = node.attrs
    extra = {"dilations": list(a["dilations"])} if a.get("dilations") else {}
    e.node("MaxPool", ins, outs, kernel_shape=list(a["kernel_shape"]), ceil_mode=int(bool(a.get("ceil_mode"))),
           **_window(node), **extra)


@emits("OnnxAveragePool")
def onnx_average_pool(e, node, ins, outs):
    a = node.attrs
    e.node("AveragePool", ins, outs, kernel_shape=list(a["kernel_shape"]), ceil_mode=int(bool(a.get("ceil_mode"))),
           count_include_pad=int(bool(a.get("count_include_pad"))), **_window(node))


@emits("OnnxLRN")
def onnx_lrn(e, node, ins, outs):
    a = node.attrs
    e.node("LRN", ins, outs, size=int(a["size"]), alpha=float(a["alpha"]), beta=float(a["beta"]), bias=float(a["bias"]))


@emits("OnnxCumSum")
def onnx_cumsum(e, node, ins, outs):
    a = node.attrs
    e.node("CumSum", [ins[0], e.const(np.asarray(int(a["axis"]), np.int64))], outs,
           exclusive=int(bool(a.get("exclusive"))), reverse=int(bool(a.get("reverse"))))


@emits("OnnxTopK")
def onnx_topk(e, node, ins, outs):
    a = node.attrs
    k = e.node("Reshape", [ins[1], e.const(np.asarray([1], np.int64))])
    e.node("TopK", [ins[0], k], outs, axis=int(a.get("axis", -1)), largest=int(bool(a.get("largest", True))))


@emits("OnnxEinsum")
def onnx_einsum(e, node, ins, outs):
    e.node("Einsum", ins, outs, equation=node.attrs["equation"])


@emits("OnnxTrilu")
def onnx_trilu(e, node, ins, outs):
    e.node("Trilu", ins, outs, upper=int(bool(node.attrs.get("upper", True))))


@emits("OnnxRange")
def onnx_range(e, node, ins, outs):
    e.node("Range", ins, outs)


@emits("OnnxPad")
def onnx_pad(e, node, ins, outs):
    e.node("Pad", [ins[0], e.const(np.asarray(node.attrs["pads"], np.int64))], outs, mode=node.attrs["mode"])


@emits("Fill")
def fill(e, node, ins, outs):
    value = e.known(node.inputs[1])
    if value is None:
        raise ValueError("Fill needs a constant fill value to be written as ConstantOfShape.")
    from onnx import numpy_helper

    e.node("ConstantOfShape", [e.int64(ins[0], node.inputs[0])], outs,
           value=numpy_helper.from_array(np.asarray(value).reshape(1)))


@emits("OnnxResize")
def onnx_resize(e, node, ins, outs):
    a = node.attrs
    scales = e.const(np.asarray(a["scales"], np.float32)) if not a["sizes"] else ""
    sizes = [e.const(np.asarray(a["sizes"], np.int64))] if a["sizes"] else []
    e.node("Resize", [ins[0], "", scales, *sizes], outs, mode=a["mode"], coordinate_transformation_mode=a["coord"],
           nearest_mode=a.get("nearest_mode", "round_prefer_floor"))


@emits("ArgMax", "ArgMin")
def arg(e, node, ins, outs):
    from onnx import TensorProto

    axis = node.attrs["axis"]
    axis = int(axis if isinstance(axis, int) else axis[0])
    if node.attrs["output_type"].name == "int64":
        e.node(node.op, ins, outs, axis=axis, keepdims=0)
    else:
        e.node("Cast", [e.node(node.op, ins, axis=axis, keepdims=0)], outs, to=TensorProto.INT32)
