"""TF-exact indexing ops: ``Slice``, ``StridedSlice`` (all five masks), ``GatherV2``/``ResourceGather``, ``Select``
(V1: a vector condition picks whole rows) and ``ArgMax``/``ArgMin``.

Index arguments arrive as tensors; constant ones give static shapes. Out-of-range indices fail as in TF
(``GatherV2`` on CPU refuses them). A gather along axis 0 has a sparse gradient (``IndexedSlices``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.graph import bool_, format_shape, int64
from hubkit.graph.shapes import broadcast_shapes
from hubkit.ops._helpers import unbroadcast
from hubkit.ops._tf_common import known_size, static_list
from hubkit.ops.registry import apply, infer_error, register_op
from hubkit.ops.tf_array import TfRuntimeError, _norm_axis, _unknown, _vector_length

__all__ = ["strided_index"]


# -- slicing and gathering -----------------------------------------------------------------------------
def _slice_index(begin: Any, size: Any) -> tuple:
    return tuple(slice(int(b), None if int(s) == -1 else int(b) + int(s)) for b, s in zip(begin, size))


@register_op
class TfSlice:
    """TF ``Slice``: ``begin`` and ``size`` vectors (size -1 takes the rest of the dimension)."""

    def infer(x, begin, size):
        b, s = static_list(begin), static_list(size)
        if x.shape is None:
            return x.dtype, _unknown(_vector_length(size))
        if s is None:
            return x.dtype, _unknown(len(x.shape))
        dims = []
        for i, n in enumerate(s):
            if n != -1:
                dims.append(n)
            elif b is not None and x.shape[i] is not None:
                dims.append(x.shape[i] - b[i])
            else:
                dims.append(None)
        return x.dtype, tuple(dims)

    def forward(x, begin, size):
        for d, b, s in zip(x.shape, begin, size):
            if b < 0 or b > d or (s != -1 and (s < 0 or b + s > d)):
                raise TfRuntimeError(f"Slice of {list(x.shape)} with begin {list(begin)} and size {list(size)} "
                                     "is out of bounds.")
        return x[_slice_index(begin, size)]

    def vjp(g, out, x, begin, size):
        return apply("TfSliceGrad", g, x, begin, size), None, None


@register_op
class TfSliceGrad:
    """Zeros shaped like ``x`` with ``g`` written at the slice (gradient of TfSlice)."""

    differentiable = False

    def infer(g, x, begin, size):
        return g.dtype, x.shape

    def forward(g, x, begin, size):
        out = np.zeros(x.shape, dtype=g.dtype)
        out[_slice_index(begin, size)] = g
        return out


def _bits(mask: int, i: int) -> bool:
    return bool((mask >> i) & 1)


def strided_index(begin: Any, end: Any, strides: Any, masks: dict[str, int]) -> tuple:
    """The NumPy index that TF ``StridedSlice`` with these arguments and masks selects."""
    index: list[Any] = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        b, e, s = int(b), int(e), int(s)
        if _bits(masks.get("ellipsis_mask", 0), i):
            index.append(Ellipsis)
        elif _bits(masks.get("new_axis_mask", 0), i):
            index.append(np.newaxis)
        elif _bits(masks.get("shrink_axis_mask", 0), i):
            index.append(b)
        else:
            if s == 0:
                raise TfRuntimeError("StridedSlice needs non-zero strides.")
            index.append(slice(None if _bits(masks.get("begin_mask", 0), i) else b,
                               None if _bits(masks.get("end_mask", 0), i) else e, s))
    return tuple(index)


def _strided_shape(shape: tuple, index: tuple):
    consumed = sum(1 for item in index if item is not None and item is not Ellipsis)
    expanded: list[Any] = []
    for item in index:
        if item is Ellipsis:
            expanded += [slice(None)] * (len(shape) - consumed)
        else:
            expanded.append(item)
    if Ellipsis not in index:
        expanded += [slice(None)] * (len(shape) - consumed)
    dims: list[int | None] = []
    at = 0
    for item in expanded:
        if item is None:
            dims.append(1)
            continue
        if at >= len(shape):
            raise infer_error(f"the slice has more entries than {format_shape(shape)} has dimensions.")
        d = shape[at]
        at += 1
        if isinstance(item, int):
            if d is not None and not -d <= item < d:
                raise infer_error(f"index {item} is out of bounds for a dimension of size {d}.")
            continue
        dims.append(None if d is None else len(range(*item.indices(d))))
    return tuple(dims)


_MASKS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")


@register_op
class TfStridedSlice:
    """TF ``StridedSlice`` with ``begin_mask``, ``end_mask``, ``ellipsis_mask``, ``new_axis_mask`` and
    ``shrink_axis_mask``."""

    def infer(x, begin, end, strides, **masks):
        b, e, s = static_list(begin), static_list(end), static_list(strides)
        if x.shape is None or b is None or e is None or s is None:
            return x.dtype, None
        try:
            return x.dtype, _strided_shape(x.shape, strided_index(b, e, s, masks))
        except TfRuntimeError as err:
            raise infer_error(str(err)) from None

    def forward(x, begin, end, strides, **masks):
        try:
            return x[strided_index(begin, end, strides, masks)]
        except IndexError as err:
            raise TfRuntimeError(f"StridedSlice of {list(x.shape)}: {err}.") from None

    def vjp(g, out, x, begin, end, strides, **masks):
        return apply("TfStridedSliceGrad", g, x, begin, end, strides, **masks), None, None, None


@register_op
class TfStridedSliceGrad:
    """Zeros shaped like ``x`` with ``g`` written where the strided slice read (gradient of TfStridedSlice)."""

    differentiable = False

    def infer(g, x, begin, end, strides, **masks):
        return g.dtype, x.shape

    def forward(g, x, begin, end, strides, **masks):
        out = np.zeros(x.shape, dtype=g.dtype)
        out[strided_index(begin, end, strides, masks)] = g
        return out


@register_op
class TfGather:
    """TF ``GatherV2`` (and ``ResourceGather``, ``Gather``): ``params, indices, axis``; indices out of range fail."""

    def infer(params, indices, axis):
        a = static_list(axis)
        if params.shape is None or indices.shape is None or a is None:
            return params.dtype, None
        at = _norm_axis(a[0], len(params.shape))
        return params.dtype, params.shape[:at] + indices.shape + params.shape[at + 1:]

    def forward(params, indices, axis):
        try:
            return np.take(np.asarray(params), indices, axis=int(axis))  # a memmap's subclass costs per call
        except IndexError:
            size = params.shape[int(axis)]
            bad = indices[(indices < 0) | (indices >= size)]
            raise TfRuntimeError(f"Gather index {int(bad.reshape(-1)[0])} is not in [0, {size}).") from None

    def vjp(g, out, params, indices, axis):
        if static_list(axis) == [0]:  # rows of a table: a sparse gradient (optimizers update only those rows)
            from hubkit.ops.indexed_slices import IndexedSlices

            flat = apply("TfReshape", indices, np.array([-1], np.int32))
            values = apply("TfRowsLike", g, params, indices)
            return IndexedSlices(values, apply("Cast", flat, dtype=int64), params), None, None
        return apply("TfGatherGrad", g, params, indices, axis), None, None


@register_op
class TfRowsLike:
    """``g`` of a gather along axis 0 reshaped to one row per index: ``[indices.size, *params.shape[1:]]``."""

    differentiable = False

    def infer(g, params, indices):
        rest = None if params.shape is None else params.shape[1:]
        n = known_size(indices.shape)
        return g.dtype, None if rest is None else (n,) + rest

    def forward(g, params, indices):
        return g.reshape((indices.size,) + params.shape[1:])


@register_op
class TfGatherGrad:
    """Scatter-adds a gather's gradient into zeros shaped like ``params`` (repeated indices add up)."""

    differentiable = False

    def infer(g, params, indices, axis):
        return g.dtype, params.shape

    def forward(g, params, indices, axis):
        a = int(axis) % params.ndim
        out = np.zeros(params.shape, dtype=g.dtype)
        moved = np.moveaxis(out, a, 0)
        gi = np.moveaxis(g.reshape(params.shape[:a] + (indices.size,) + params.shape[a + 1:]), a, 0)
        np.add.at(moved, indices.reshape(-1), gi)
        return out


# -- selection -----------------------------------------------------------------------------------------
@register_op
class TfSelect:
    """TF ``Select`` (V1): same shapes, or a vector condition that picks whole rows of ``x`` / ``y``."""

    def infer(condition, x, y):
        if condition.dtype is not bool_:
            raise infer_error(f"the condition must be bool, got {condition.dtype.name}.")
        shape = broadcast_shapes(x.shape, y.shape)
        if shape is False:
            raise infer_error(f"x {format_shape(x.shape)} and y {format_shape(y.shape)} differ in shape.")
        return x.dtype, shape

    def forward(condition, x, y):
        if condition.ndim == 1 and x.ndim > 1:
            if condition.shape[0] != x.shape[0]:
                raise TfRuntimeError(f"Select with a vector condition of {condition.shape[0]} rows and x of "
                                     f"shape {list(x.shape)}.")
            condition = condition.reshape((-1,) + (1,) * (x.ndim - 1))
        elif condition.shape != x.shape and condition.ndim:
            raise TfRuntimeError(f"Select condition {list(condition.shape)} does not match x {list(x.shape)}.")
        return np.where(condition, x, y)

    def vjp(g, out, condition, x, y):
        zeros = apply("ZerosLike", g)
        return (None, unbroadcast(apply("TfSelect", condition, g, zeros), x),
                unbroadcast(apply("TfSelect", condition, zeros, g), y))


@register_op
class TfArgMax:
    """TF ``ArgMax``/``ArgMin`` (``kind``) over the axis given as a tensor; ties take the first index."""

    differentiable = False

    def infer(x, axis, *, kind="max", output_type):
        a = static_list(axis)
        if x.shape is None or a is None:
            return output_type, None if x.shape is None else _unknown(len(x.shape) - 1)
        at = _norm_axis(a[0], len(x.shape))
        return output_type, x.shape[:at] + x.shape[at + 1:]

    def forward(x, axis, *, kind="max", output_type):
        fn = np.argmax if kind == "max" else np.argmin
        return fn(x, axis=int(axis)).astype(output_type.np_dtype)
