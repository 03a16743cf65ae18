"""TF-exact math ops: reductions over tensor axes, batched matrix products, floor division and modulo.

Reductions take their axes as a tensor (TF's ``reduction_indices`` input) and keep or drop them per
``keep_dims``; ``BatchMatMulV2`` broadcasts batch dimensions, ``BatchMatMul`` (V1) requires them equal;
``FloorDiv``/``FloorMod`` round toward negative infinity like Python (not like C).
"""

from __future__ import annotations

import numpy as np

from hubkit.graph import format_shape
from hubkit.graph.shapes import broadcast_shapes
from hubkit.ops._tf_common import static_list
from hubkit.ops.registry import apply, infer_error, register_op
from hubkit.ops.tf_array import TfRuntimeError

__all__: list[str] = []

_REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod,
               "all": np.all, "any": np.any}


def _axes(axis, rank: int) -> tuple[int, ...]:
    return tuple(sorted({int(a) % rank for a in np.reshape(axis, -1)})) if rank else ()


@register_op
class TfReduce:
    """TF ``Sum``/``Mean``/``Max``/``Min``/``Prod``/``All``/``Any`` over the axes given as a tensor."""

    def infer(x, axis, *, reduction, keep_dims=False):
        if reduction not in _REDUCTIONS:
            raise infer_error(f"unknown reduction {reduction!r}; expected one of {sorted(_REDUCTIONS)}.")
        a = static_list(axis)
        if x.shape is None:
            return x.dtype, None
        rank = len(x.shape)
        if a is None:
            return x.dtype, (None,) * rank if keep_dims else None
        for v in a:
            if not -rank <= v < max(rank, 1):
                raise infer_error(f"axis {v} is out of range for {format_shape(x.shape)}.")
        axes = _axes(a, rank)
        if keep_dims:
            return x.dtype, tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        return x.dtype, tuple(d for i, d in enumerate(x.shape) if i not in axes)

    def forward(x, axis, *, reduction, keep_dims=False):
        axes = _axes(axis, x.ndim)
        if reduction in ("max", "min") and x.size == 0:
            raise TfRuntimeError(f"{reduction} over an empty tensor of shape {list(x.shape)}.")
        out = _REDUCTIONS[reduction](x, axis=axes, keepdims=keep_dims)
        return np.asarray(out, dtype=x.dtype)

    def vjp(g, out, x, axis, *, reduction, keep_dims=False):
        if reduction not in ("sum", "mean", "max", "min"):
            return None, None
        return apply("TfReduceGrad", g, out, x, axis, reduction=reduction, keep_dims=keep_dims), None


@register_op
class TfReduceGrad:
    """Spreads a reduction's gradient back over the reduced axes (max/min: split evenly among ties, as TF)."""

    differentiable = False

    def infer(g, out, x, axis, *, reduction, keep_dims=False):
        return g.dtype, x.shape

    def forward(g, out, x, axis, *, reduction, keep_dims=False):
        axes = _axes(axis, x.ndim)
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        g = g.reshape(shape)
        if reduction == "sum":
            return np.broadcast_to(g, x.shape).copy()
        if reduction == "mean":
            count = int(np.prod([x.shape[i] for i in axes], dtype=np.int64)) or 1
            return np.broadcast_to(g / count, x.shape).astype(g.dtype)
        hit = (x == out.reshape(shape)).astype(g.dtype)
        return (hit * g / hit.sum(axis=axes, keepdims=True)).astype(g.dtype)


def _batch_shape(x, y, adj_x, adj_y, broadcast: bool):
    if x.shape is None or y.shape is None:
        return None
    if len(x.shape) < 2 or len(y.shape) < 2:
        raise infer_error(f"needs matrices, got {format_shape(x.shape)} and {format_shape(y.shape)}.")
    m, k = (x.shape[-1], x.shape[-2]) if adj_x else (x.shape[-2], x.shape[-1])
    k2, n = (y.shape[-1], y.shape[-2]) if adj_y else (y.shape[-2], y.shape[-1])
    if k is not None and k2 is not None and k != k2:
        raise infer_error(f"inner dimensions differ: {format_shape(x.shape)} and {format_shape(y.shape)}.")
    if broadcast:
        batch = broadcast_shapes(x.shape[:-2], y.shape[:-2])
        if batch is False:
            raise infer_error(f"batch dimensions of {format_shape(x.shape)} and {format_shape(y.shape)} differ.")
    else:
        if len(x.shape) != len(y.shape):
            raise infer_error(f"BatchMatMul needs equal ranks, got {format_shape(x.shape)} and {format_shape(y.shape)}.")
        batch = tuple(a if a is not None else b for a, b in zip(x.shape[:-2], y.shape[:-2]))
    return (*batch, m, n) if batch is not None else None


def _adj(a, flag):
    return np.swapaxes(a, -1, -2) if flag else a


@register_op
class TfBatchMatMul:
    """TF ``BatchMatMul`` (``broadcast=False``) and ``BatchMatMulV2`` (batch dimensions broadcast)."""

    def infer(x, y, *, adj_x=False, adj_y=False, broadcast=True):
        return x.dtype, _batch_shape(x, y, adj_x, adj_y, broadcast)

    def forward(x, y, *, adj_x=False, adj_y=False, broadcast=True):
        if not broadcast and x.shape[:-2] != y.shape[:-2]:
            raise TfRuntimeError(f"BatchMatMul batch dimensions differ: {list(x.shape)} and {list(y.shape)}.")
        return np.matmul(_adj(x, adj_x), _adj(y, adj_y))

    def vjp(g, out, x, y, *, adj_x=False, adj_y=False, broadcast=True):
        def mm(a, b, ta, tb):
            return apply("TfBatchMatMul", a, b, adj_x=ta, adj_y=tb, broadcast=True)

        if not adj_x:
            gx = mm(g, y, False, not adj_y)
        else:
            gx = mm(y, g, adj_y, True)
        if not adj_y:
            gy = mm(x, g, not adj_x, False)
        else:
            gy = mm(g, x, True, adj_x)
        return apply("TfSumTo", gx, x), apply("TfSumTo", gy, y)


@register_op
class TfSumTo:
    """``g`` summed over broadcast dimensions down to ``like``'s runtime shape."""

    differentiable = False

    def infer(g, like):
        return g.dtype, like.shape

    def forward(g, like):
        extra = g.ndim - like.ndim
        g = g.sum(axis=tuple(range(extra))) if extra > 0 else g
        axes = tuple(i for i, d in enumerate(like.shape) if d == 1 and g.shape[i] != 1)
        return g.sum(axis=axes, keepdims=True).reshape(like.shape) if axes else g.reshape(like.shape)


def _floor_div(x, y):
    if x.dtype.kind in "iu":
        if np.any(y == 0):
            raise TfRuntimeError("Integer division by zero.")
        return np.floor_divide(x, y)
    return np.floor(x / y).astype(x.dtype)


def _floor_mod(x, y):
    if x.dtype.kind in "iu" and np.any(y == 0):
        raise TfRuntimeError("Integer division by zero.")
    return np.mod(x, y).astype(x.dtype)


def _truncate_div(x, y):
    if x.dtype.kind in "iu":
        if np.any(y == 0):
            raise TfRuntimeError("Integer division by zero.")
        return np.sign(x) * np.sign(y) * (np.abs(x) // np.abs(y))
    return np.trunc(x / y).astype(x.dtype)


_BINARY = {"floor_div": _floor_div, "floor_mod": _floor_mod, "truncate_div": _truncate_div}


@register_op
class TfIntegerBinary:
    """TF ``FloorDiv``, ``FloorMod`` and ``TruncateDiv`` (``fn`` names which); no gradient, as in TF."""

    differentiable = False

    def infer(x, y, *, fn):
        if fn not in _BINARY:
            raise infer_error(f"unknown function {fn!r}; expected one of {sorted(_BINARY)}.")
        if x.dtype is not y.dtype:
            raise infer_error(f"operands differ in dtype: {x.dtype.name} and {y.dtype.name}.")
        shape = broadcast_shapes(x.shape, y.shape)
        if shape is False:
            raise infer_error(f"shapes {format_shape(x.shape)} and {format_shape(y.shape)} do not broadcast.")
        return x.dtype, shape

    def forward(x, y, *, fn):
        return np.asarray(_BINARY[fn](x, y), dtype=x.dtype)
