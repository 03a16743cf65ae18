"""Translators of ONNX's elementwise, comparison, variadic and reduction ops."""

from __future__ import annotations

from functools import reduce as _fold
from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.importers.onnx.registry import translates
from hubkit.ops import api as K
from hubkit.ops.registry import apply

__all__: list[str] = []


def _binary(fn):
    return lambda ctx, node, attrs: [fn(ctx.t(node.input[0]), ctx.t(node.input[1]))]


for _op, _fn in {
    "Add": K.add, "Sub": K.subtract, "Mul": K.multiply, "Equal": K.equal, "Less": K.less, "Greater": K.greater,
    "LessOrEqual": K.less_equal, "GreaterOrEqual": K.greater_equal, "And": K.logical_and, "Or": K.logical_or,
}.items():
    translates(_op)(_binary(_fn))

_UNARY: dict[str, Any] = {
    "Sqrt": K.sqrt, "Exp": K.exp, "Log": K.log, "Neg": K.negative, "Abs": K.abs, "Not": K.logical_not,
    "Identity": K.identity, "Floor": K.floor, "Sign": K.sign, "Softplus": K.softplus,
}
for _op, _ufn in _UNARY.items():
    translates(_op)(lambda ctx, node, attrs, _ufn=_ufn: [_ufn(ctx.t(node.input[0]))])


@translates("Div")
def div(ctx, node, attrs):
    x, y = ctx.t(node.input[0]), ctx.t(node.input[1])
    if x.dtype.np_dtype.kind in "iu":
        return [apply("OnnxIntDiv", x, y)]
    return [K.divide(x, y)]


@translates("Pow")
def pow_(ctx, node, attrs):
    x, y = ctx.t(node.input[0]), ctx.t(node.input[1])
    if y.dtype is not x.dtype:  # ONNX lets the exponent have another type; hubkit computes in x's
        y = K.cast(y, x.dtype)
    return [K.pow(x, y)]


@translates("Reciprocal")
def reciprocal(ctx, node, attrs):
    x = ctx.t(node.input[0])
    return [K.divide(np.asarray(1.0, dtype=x.dtype.np_dtype), x)]


@translates("Sum", "Max", "Min", "Mean")
def variadic(ctx, node, attrs):
    xs = [ctx.t(n) for n in node.input]
    fn = {"Sum": K.add, "Mean": K.add, "Max": K.maximum, "Min": K.minimum}[node.op_type]
    y = _fold(fn, xs) if len(xs) > 1 else K.identity(xs[0])
    if node.op_type == "Mean":
        y = K.divide(y, np.asarray(len(xs), dtype=xs[0].dtype.np_dtype))
    return [y]


@translates("Where")
def where(ctx, node, attrs):
    return [K.where(ctx.t(node.input[0]), ctx.t(node.input[1]), ctx.t(node.input[2]))]


@translates("Cast")
def cast(ctx, node, attrs):
    from hubkit.importers.onnx.translate import onnx_dtype

    return [K.cast(ctx.t(node.input[0]), onnx_dtype(int(attrs["to"]), "Cast's target"))]


def _axes(ctx, node, attrs, x):
    """Reduction axes from the ``axes`` input (opset 18) or attribute; None means all."""
    if len(node.input) > 1 and node.input[1]:
        axes = ctx.value(node.input[1], "the axes of " + node.op_type).reshape(-1).tolist()
    else:
        axes = attrs.get("axes")
    if not axes:
        return None
    return [int(a) % x.ndim if x.ndim is not None else int(a) for a in axes]


@translates("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceProd", "ReduceSumSquare")
def reduce(ctx, node, attrs):
    x = ctx.t(node.input[0])
    axes = _axes(ctx, node, attrs, x)
    keepdims = bool(attrs.get("keepdims", 1))
    if axes is None and int(attrs.get("noop_with_empty_axes", 0)):
        return [K.identity(x)]
    op = node.op_type
    if op in ("ReduceL2", "ReduceSumSquare"):
        y = K.reduce_sum(K.multiply(x, x), axis=axes, keepdims=keepdims)
        return [K.sqrt(y) if op == "ReduceL2" else y]
    fn = {"ReduceMean": K.reduce_mean, "ReduceSum": K.reduce_sum, "ReduceMax": K.reduce_max,
          "ReduceMin": K.reduce_min, "ReduceProd": K.reduce_prod}[op]
    return [fn(x, axis=axes, keepdims=keepdims)]


@translates("ArgMax", "ArgMin")
def arg(ctx, node, attrs):
    x = ctx.t(node.input[0])
    if int(attrs.get("select_last_index", 0)):
        raise GraphError("select_last_index=1 is not supported.")
    axis = int(attrs.get("axis", 0))
    fn = K.argmax if node.op_type == "ArgMax" else K.argmin
    y = fn(x, axis=axis, output_type="int64")
    return [K.expand_dims(y, axis % x.ndim) if int(attrs.get("keepdims", 1)) else y]


@translates("CumSum")
def cumsum(ctx, node, attrs):
    axis = int(ctx.value(node.input[1], "the axis of CumSum").reshape(-1)[0])
    return [apply("OnnxCumSum", ctx.t(node.input[0]), axis=axis, exclusive=bool(attrs.get("exclusive", 0)),
                  reverse=bool(attrs.get("reverse", 0)))]


@translates("TopK")
def topk(ctx, node, attrs):
    # sorted=0 allows any order: the sorted one is a valid answer.
    x, k = ctx.t(node.input[0]), ctx.t(node.input[1])
    if k.dtype.name != "int64":
        k = K.cast(k, "int64")
    return list(apply("OnnxTopK", x, k, axis=int(attrs.get("axis", -1)) % x.ndim, largest=bool(attrs.get("largest", 1))))
