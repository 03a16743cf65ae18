"""Op family: shapes, layout, indexing, gathers and scatters.

Each op is declared once with its shape rule, its NumPy kernel and its gradient side by side.
The gradient of ``gather`` along axis 0 is an :class:`hubkit.runtime.IndexedSlices` (only the rows
that were read), which the gradient machinery densifies with ``scatter_to_dense`` when needed.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.errors import GraphError, OpError
from hubkit.graph import DType, Tensor, as_dtype, float32, format_shape, int32, int64
from hubkit.graph.shapes import Shape as StaticShape
from hubkit.graph.shapes import merge_shapes
from hubkit.ops._helpers import (
    as_tensor,
    check_dtype,
    check_output_size,
    describe,
    normalize_axes,
    operands,
    reshape_like,
    tiled_shape,
)
from hubkit.ops.elementwise import cast, zeros_like
from hubkit.ops.indexed_slices import IndexedSlices
from hubkit.ops.reduce import reduce_sum
from hubkit.ops.registry import apply, infer_error, register_op

__all__ = [
    "concat",
    "expand_dims",
    "fill",
    "gather",
    "one_hot",
    "ones",
    "pad",
    "rank",
    "reshape",
    "scatter_to_dense",
    "segment_sum",
    "shape",
    "size",
    "slice",
    "squeeze",
    "stack",
    "tile",
    "transpose",
    "unsorted_segment_sum",
    "unstack",
    "zeros",
]

_slice = builtins.slice  # this module defines hubkit.slice


def _const_value(t: Tensor) -> np.ndarray | None:
    """The value of ``t`` when a Const node produces it (lets shape rules see static sizes)."""
    return t.node.attrs["value"] if t.node.op == "Const" else None


def _axis(axis: int, rank: int | None, what: str = "axis") -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise infer_error(f"{what} must be an int, got {axis!r}.")
    if rank is None:
        return int(axis)
    if not -rank <= axis < rank:
        raise infer_error(f"{what} {axis} is out of range for rank {rank}.")
    return int(axis) % rank


# -- reshape, transpose, squeeze, expand_dims ----------------------------------------------------------
def _reshaped(x_shape: StaticShape, target: Sequence[int | None]) -> tuple:
    target = [None if d is None else int(d) for d in target]
    if sum(d == -1 for d in target) > 1:
        raise infer_error(f"shape {target} has more than one -1.")
    for d in target:
        if d is not None and d < -1:
            raise infer_error(f"shape {target} has a negative dimension other than -1.")
    n_in = int(np.prod(x_shape, dtype=np.int64)) if x_shape is not None and None not in x_shape else None
    rest = [d for d in target if d not in (-1, None)]
    n_rest = int(np.prod(rest, dtype=np.int64))
    if -1 in target:
        fill = None
        if n_in is not None and None not in target:
            if n_rest == 0 or n_in % n_rest:
                raise infer_error(f"cannot reshape {format_shape(x_shape)} ({n_in} elements) to {target}.")
            fill = n_in // n_rest
        return tuple(fill if d == -1 else d for d in target)
    if n_in is not None and None not in target and n_in != n_rest:
        raise infer_error(f"cannot reshape {format_shape(x_shape)} ({n_in} elements) to {target}.")
    if x_shape is not None and n_in is None and None not in target:
        # Some input dims are unknown: the element count is a multiple of the known ones' product.
        known = int(np.prod([d for d in x_shape if d is not None], dtype=np.int64))
        if known and n_rest % known:
            raise infer_error(
                f"cannot reshape {format_shape(x_shape)} to {target}: {n_rest} elements is never a multiple of {known}."
            )
    return tuple(target)


@register_op
class Reshape:
    """``x`` with a new shape: the ``shape`` attr (one -1 allowed), or a 1-D int tensor input."""

    aliases_input = True  # a view when the layout allows

    def infer(x, new_shape=None, *, shape=None):
        if new_shape is None:
            return x.dtype, _reshaped(x.shape, shape)
        check_dtype(new_shape, "i", "the shape")
        value = _const_value(new_shape)
        if value is not None:
            return x.dtype, _reshaped(x.shape, value.reshape(-1).tolist())
        if new_shape.shape is None or new_shape.shape[0] is None:
            return x.dtype, None
        return x.dtype, (None,) * new_shape.shape[0]

    def forward(x, new_shape=None, *, shape=None):
        return np.reshape(x, shape if new_shape is None else new_shape)

    def vjp(g, out, x, new_shape=None, *, shape=None):
        return (reshape_like(g, x),) if new_shape is None else (reshape_like(g, x), None)


@register_op
class Transpose:
    """Permutes the axes (reverses them when ``perm`` is None)."""

    aliases_input = True

    def infer(x, *, perm=None):
        if perm is None:
            return x.dtype, None if x.shape is None else tuple(reversed(x.shape))
        if sorted(perm) != list(range(len(perm))) or (x.ndim is not None and len(perm) != x.ndim):
            raise infer_error(f"perm {list(perm)} is not a permutation of the axes of {describe(x)}.")
        return x.dtype, None if x.shape is None else tuple(x.shape[p] for p in perm)

    def forward(x, *, perm=None):
        return np.transpose(x, perm)

    def vjp(g, out, x, *, perm=None):
        return (transpose(g, None if perm is None else np.argsort(perm).tolist()),)


@register_op
class Squeeze:
    """Removes size-1 axes (the listed ones, or every one)."""

    aliases_input = True

    def infer(x, *, axis=None):
        if x.shape is None:
            return x.dtype, None
        if axis is None:
            if None in x.shape:
                return x.dtype, None  # an unknown dimension may or may not be 1
            return x.dtype, tuple(d for d in x.shape if d != 1)
        axes = normalize_axes(axis, x.ndim)
        for a in axes:
            if x.shape[a] not in (1, None):
                raise infer_error(f"cannot squeeze axis {a} of size {x.shape[a]} in {describe(x)}.")
        return x.dtype, tuple(d for i, d in enumerate(x.shape) if i not in axes)

    def prepare(node):
        axis = node.attrs.get("axis")
        return {"axis": None if axis is None else tuple(axis)}

    def forward(x, *, axis=None):
        return np.squeeze(x, axis)

    def vjp(g, out, x, *, axis=None):
        return (reshape_like(g, x),)


@register_op
class ExpandDims:
    """Inserts a size-1 axis at ``axis`` (counted in the output's axes)."""

    aliases_input = True

    def infer(x, *, axis):
        if x.shape is None:
            return x.dtype, None
        a = _axis(axis, x.ndim + 1)
        return x.dtype, (*x.shape[:a], 1, *x.shape[a:])

    def forward(x, *, axis):
        return np.expand_dims(x, axis)

    def vjp(g, out, x, *, axis):
        return (reshape_like(g, x),)


# -- concat / split, stack / unstack -------------------------------------------------------------------
def _same_dtype(values: Sequence[Tensor]) -> DType:
    for t in values:
        if t.dtype is not values[0].dtype:
            raise infer_error(f"inputs have different dtypes: {describe(values[0])} and {describe(t)}.")
    return values[0].dtype


@register_op
class Concat:
    """Joins tensors along an existing axis."""

    def infer(*values, axis):
        if not values:
            raise infer_error("needs at least one input.")
        dtype = _same_dtype(values)
        ranks = {t.ndim for t in values if t.ndim is not None}
        if len(ranks) > 1:
            raise infer_error(f"inputs have different ranks: {', '.join(describe(t) for t in values)}.")
        if not ranks:
            return dtype, None
        rank = ranks.pop()
        a = _axis(axis, rank)
        out: list[int | None] = [None] * rank
        total: int | None = 0
        for t in values:
            if t.shape is None:
                total = None
                continue
            for i, d in enumerate(t.shape):
                if i == a:
                    total = None if total is None or d is None else total + d
                elif d is not None:
                    if out[i] is not None and out[i] != d:
                        raise infer_error(
                            f"dimension {i} differs between inputs: {', '.join(describe(v) for v in values)}."
                        )
                    out[i] = d
        out[a] = total
        return dtype, tuple(out)

    def forward(*values, axis):
        return np.concatenate(values, axis=axis)

    def vjp(g, out, *values, axis):
        parts = apply("SplitLike", g, *values, axis=axis)
        return (parts,) if len(values) == 1 else tuple(parts)


@register_op
class SplitLike:
    """Splits ``g`` along ``axis`` into pieces as long as each of ``likes`` (the gradient of concat)."""

    aliases_input = True  # views of g

    def infer(g, *likes, axis):
        specs = []
        for t in likes:
            if g.shape is None or t.shape is None:
                specs.append((g.dtype, t.shape))
            else:
                a = _axis(axis, len(g.shape))
                specs.append((g.dtype, tuple(t.shape[a] if i == a else d for i, d in enumerate(g.shape))))
        return specs

    def forward(g, *likes, axis):
        bounds = np.cumsum([t.shape[axis] for t in likes[:-1]])
        return tuple(np.split(g, bounds, axis=axis))

    def vjp(grads, outs, g, *likes, axis):
        parts = [zeros_like(o) if d is None else d for d, o in zip(grads, outs)]
        return (concat(parts, axis), *([None] * len(likes)))


@register_op
class Pack:
    """Stacks tensors of one shape along a new axis."""

    def infer(*values, axis=0):
        if not values:
            raise infer_error("needs at least one input.")
        dtype = _same_dtype(values)
        shape = values[0].shape
        for t in values:
            merged = merge_shapes(shape, t.shape)
            if merged is False:
                raise infer_error(f"inputs have different shapes: {describe(values[0])} and {describe(t)}.")
            shape = merged
        if shape is None:
            return dtype, None
        a = _axis(axis, len(shape) + 1)
        return dtype, (*shape[:a], len(values), *shape[a:])

    def forward(*values, axis=0):
        return np.stack(values, axis=axis)

    def vjp(g, out, *values, axis=0):
        parts = apply("Unpack", g, axis=axis, num=len(values))
        return (parts,) if len(values) == 1 else tuple(parts)


@register_op
class Unpack:
    """Splits a tensor along ``axis`` into ``num`` tensors with that axis removed."""

    aliases_input = True

    def infer(x, *, axis=0, num):
        if x.shape is None:
            return [(x.dtype, None)] * num
        a = _axis(axis, x.ndim)
        if x.shape[a] is not None and x.shape[a] != num:
            raise infer_error(f"cannot unstack {describe(x)} into {num} tensors along axis {axis}.")
        return [(x.dtype, x.shape[:a] + x.shape[a + 1 :])] * num

    def forward(x, *, axis=0, num):
        return tuple(np.moveaxis(x, axis, 0))

    def vjp(grads, outs, x, *, axis=0, num):
        if not isinstance(grads, tuple):
            grads, outs = (grads,), (outs,)
        parts = [zeros_like(o) if d is None else d for d, o in zip(grads, outs)]
        return (stack(parts, axis),)


# -- indexing ------------------------------------------------------------------------------------------
def _index_spec(key: Any) -> list[list[Any]]:
    """A ``x[key]`` index as plain data: ``["index", i]``, ``["slice", start, stop, step]``,
    ``["newaxis"]`` or ``["ellipsis"]`` per item."""
    items = key if isinstance(key, tuple) else (key,)
    spec: list[list[Any]] = []
    for k in items:
        if k is None:
            spec.append(["newaxis"])
        elif k is Ellipsis:
            spec.append(["ellipsis"])
        elif isinstance(k, _slice):
            parts = []
            for p in (k.start, k.stop, k.step):
                if p is not None and (isinstance(p, bool) or not isinstance(p, (int, np.integer))):
                    raise GraphError(f"Slice bounds must be ints or None, got {k!r}; use hubkit.gather for tensors.")
                parts.append(None if p is None else int(p))
            if parts[2] == 0:
                raise GraphError(f"Slice step cannot be zero in {k!r}.")
            spec.append(["slice", *parts])
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            spec.append(["index", int(k)])
        else:
            raise GraphError(
                f"Unsupported index {k!r}: use ints, slices, None, Ellipsis, or hubkit.gather for tensors."
            )
    if sum(s[0] == "ellipsis" for s in spec) > 1:
        raise GraphError("An index can only have a single ellipsis ('...').")
    return spec


def _key(spec: Sequence[Sequence[Any]]) -> tuple:
    out: list[Any] = []
    for item in spec:
        kind = item[0]
        if kind == "index":
            out.append(int(item[1]))
        elif kind == "slice":
            out.append(_slice(item[1], item[2], item[3]))
        else:
            out.append(None if kind == "newaxis" else Ellipsis)
    return tuple(out)


def _sliced_shape(shape: StaticShape, spec: Sequence[Sequence[Any]]) -> StaticShape:
    consumed = sum(s[0] in ("index", "slice") for s in spec)
    if shape is None:
        return None
    if consumed > len(shape):
        raise infer_error(f"too many indices ({consumed}) for a tensor of rank {len(shape)}.")
    items = list(spec)
    fill = [["slice", None, None, None]] * (len(shape) - consumed)
    if any(s[0] == "ellipsis" for s in items):
        i = next(i for i, s in enumerate(items) if s[0] == "ellipsis")
        items[i : i + 1] = fill
    else:
        items += fill
    out: list[int | None] = []
    axis = 0
    for s in items:
        if s[0] == "newaxis":
            out.append(1)
            continue
        d = shape[axis]
        if s[0] == "index":
            if d is not None and not -d <= s[1] < d:
                raise infer_error(f"index {s[1]} is out of bounds for axis {axis} with size {d}.")
        else:
            out.append(None if d is None else len(range(*_slice(s[1], s[2], s[3]).indices(d))))
        axis += 1
    return tuple(out)


@register_op
class StridedSlice:
    """``x[key]`` for basic NumPy indexing: ints, slices with steps, None and Ellipsis."""

    aliases_input = True  # a view

    def infer(x, *, spec):
        return x.dtype, _sliced_shape(x.shape, spec)

    def prepare(node):
        return {"key": _key(node.attrs["spec"])}

    def forward(x, *, spec, key):
        return x[key]

    def vjp(g, out, x, *, spec):
        return (apply("StridedSliceGrad", g, x, spec=spec),)


@register_op
class StridedSliceGrad:
    """Zeros shaped like ``like`` with ``g`` written at ``like[key]`` (the gradient of a slice)."""

    def infer(g, like, *, spec):
        return g.dtype, like.shape

    def prepare(node):
        return {"key": _key(node.attrs["spec"])}

    def forward(g, like, *, spec, key):
        out = np.zeros(like.shape, g.dtype)
        out[key] = g
        return out

    def vjp(grad, out, g, like, *, spec):
        return apply("StridedSlice", grad, spec=spec), None


@register_op
class Gather:
    """Rows (or slices along ``axis``) of ``params`` picked by integer ``indices``."""

    def infer(params, indices, *, axis=0):
        check_dtype(indices, "i", "indices")
        if params.shape is None or indices.shape is None:
            return params.dtype, None
        a = _axis(axis, params.ndim)
        return params.dtype, (*params.shape[:a], *indices.shape, *params.shape[a + 1 :])

    def forward(params, indices, *, axis=0):
        if indices.size and indices.min() < 0:  # np.take would wrap around; TF refuses them too
            bad = int(indices.min())
            raise OpError(f"Gather index {bad} is negative; indices must be in [0, {params.shape[axis]}).")
        return np.take(params, indices, axis=axis)

    def vjp(g, out, params, indices, *, axis=0):
        if axis != 0:
            return apply("GatherGrad", g, indices, params, axis=axis), None
        if indices.ndim == 1:
            values, flat = g, indices
        else:
            flat = reshape(indices, [-1])
            row = params.shape[1:] if params.shape is not None else None
            if row is not None and None not in row:
                values = reshape(g, [-1, *row])
            else:
                dims = apply("StridedSlice", shape(params), spec=[["slice", 1, None, None]])
                values = reshape(g, concat([[-1], dims], 0))
        return IndexedSlices(values, cast(flat, int64), params), None


@register_op
class GatherGrad:
    """Zeros shaped like ``like`` with ``g`` added at ``indices`` along ``axis`` (a dense gather gradient)."""

    def infer(g, indices, like, *, axis):
        return g.dtype, like.shape

    def forward(g, indices, like, *, axis):
        out = np.zeros(like.shape, g.dtype)
        np.add.at(out, (_slice(None),) * (axis % like.ndim) + (indices,), g)
        return out

    def vjp(grad, out, g, indices, like, *, axis):
        return gather(grad, indices, axis=axis), None, None


@register_op
class ScatterToDense:
    """Zeros shaped like ``like`` with row ``values[i]`` added at row ``indices[i]`` (repeats add up)."""

    def infer(values, indices, like):
        check_dtype(indices, "i", "indices")
        if values.dtype is not like.dtype:
            raise infer_error(f"values {describe(values)} and {describe(like)} have different dtypes.")
        return like.dtype, like.shape

    def forward(values, indices, like):
        out = np.zeros(like.shape, values.dtype)
        np.add.at(out, indices, values)
        return out

    def vjp(g, out, values, indices, like):
        return gather(g, indices), None, None


@register_op
class UnsortedSegmentSum:
    """``out[segment_ids[i]] += data[i]`` over ``num_segments`` rows (max id + 1 when not given)."""

    def infer(data, segment_ids, num_segments=None):
        check_dtype(segment_ids, "i", "segment_ids")
        check_dtype(data, "fi", "data")
        n = None
        if num_segments is not None:
            check_dtype(num_segments, "i", "num_segments")
            value = _const_value(num_segments)
            n = None if value is None else int(value)
        elif _const_value(segment_ids) is not None:
            ids = _const_value(segment_ids)
            n = int(ids.max()) + 1 if ids.size else 0
        if data.shape is None or segment_ids.shape is None:
            return data.dtype, None
        k = len(segment_ids.shape)
        if merge_shapes(data.shape[:k], segment_ids.shape) is False:
            raise infer_error(f"segment_ids {describe(segment_ids)} do not match the leading axes of {describe(data)}.")
        return data.dtype, (n, *data.shape[k:])

    def forward(data, segment_ids, num_segments=None):
        if num_segments is None:
            n = int(segment_ids.max()) + 1 if segment_ids.size else 0
        else:
            n = int(num_segments)
        check_output_size([n, *data.shape[segment_ids.ndim :]], "UnsortedSegmentSum")  # rows from a tensor's value
        out = np.zeros((n, *data.shape[segment_ids.ndim :]), data.dtype)
        np.add.at(out, segment_ids, data)
        return out

    def vjp(g, out, data, segment_ids, num_segments=None):
        grads = (gather(g, segment_ids), None)
        return grads if num_segments is None else (*grads, None)


@register_op
class OneHot:
    """One-hot encoding of integer ``indices`` (out-of-range indices give all ``off_value``)."""

    differentiable = False

    def infer(indices, *, depth, on_value, off_value, dtype, axis):
        check_dtype(indices, "i", "indices")
        if depth < 0:
            raise infer_error(f"depth must be non-negative, got {depth}.")
        if indices.shape is None:
            return dtype, None
        a = _axis(axis, indices.ndim + 1)
        return dtype, (*indices.shape[:a], depth, *indices.shape[a:])

    def forward(indices, *, depth, on_value, off_value, dtype, axis):
        hot = np.expand_dims(indices, -1) == np.arange(depth)
        out = np.where(hot, np.asarray(on_value, dtype.np_dtype), np.asarray(off_value, dtype.np_dtype))
        return out if axis in (-1, out.ndim - 1) else np.moveaxis(out, -1, axis)


# -- shapes as tensors, filled tensors, tile and pad ------------------------------------------------
class _ShapeOf:
    differentiable = False

    def prepare(node):
        return {"np_dtype": node.attrs["out_type"].np_dtype}


@register_op
class Shape(_ShapeOf):
    """The runtime shape of ``x`` as a 1-D integer tensor."""

    def infer(x, *, out_type):
        return out_type, (x.ndim,)

    def forward(x, *, out_type, np_dtype):
        return np.array(x.shape, dtype=np_dtype)


@register_op
class Size(_ShapeOf):
    """The number of elements of ``x`` as an integer scalar."""

    def infer(x, *, out_type):
        return out_type, ()

    def forward(x, *, out_type, np_dtype):
        return np.array(x.size, dtype=np_dtype)


@register_op
class Rank:
    """The number of axes of ``x`` as an int32 scalar."""

    differentiable = False

    def infer(x):
        return int32, ()

    def forward(x):
        return np.array(x.ndim, dtype=np.int32)


@register_op
class Fill:
    """A tensor of shape ``dims`` (a 1-D int tensor) filled with the scalar ``value``."""

    def infer(dims, value):
        check_dtype(dims, "i", "dims")
        if dims.ndim not in (1, None):
            raise infer_error(f"dims must be 1-D, got {describe(dims)}.")
        if value.ndim not in (0, None):
            raise infer_error(f"value must be a scalar, got {describe(value)}.")
        known = _const_value(dims)
        if known is not None:
            return value.dtype, tuple(int(d) for d in known)
        return value.dtype, None if dims.shape is None or dims.shape[0] is None else (None,) * dims.shape[0]

    def forward(dims, value):
        check_output_size(dims.reshape(-1).tolist(), "Fill")
        return np.full(tuple(dims.tolist()), value, dtype=value.dtype)

    def vjp(g, out, dims, value):
        return None, reduce_sum(g)


@register_op
class Tile:
    """Repeats ``x`` ``multiples[i]`` times along each axis ``i``."""

    def infer(x, *, multiples):
        if x.shape is None:
            return x.dtype, None
        if len(multiples) != len(x.shape):
            raise infer_error(f"multiples {list(multiples)} need one entry per axis of {describe(x)}.")
        return x.dtype, tuple(None if d is None else d * m for d, m in zip(x.shape, multiples))

    def forward(x, *, multiples):
        check_output_size(tiled_shape(x.shape, multiples), "Tile")
        return np.tile(x, multiples)

    def vjp(g, out, x, *, multiples):
        return (apply("TileGrad", g, x, multiples=multiples),)


@register_op
class TileGrad:
    """Sums the tiles of ``g`` back to the shape of ``like`` (the gradient of tile)."""

    def infer(g, like, *, multiples):
        return g.dtype, like.shape

    def forward(g, like, *, multiples):
        split = [n for pair in zip(multiples, like.shape) for n in pair]
        return np.add.reduce(g.reshape(split), axis=tuple(range(0, len(split), 2)), dtype=g.dtype)

    def vjp(grad, out, g, like, *, multiples):
        return apply("Tile", grad, multiples=multiples), None


@register_op
class Pad:
    """Pads each axis with ``paddings[i] = [before, after]`` entries of ``constant_values``."""

    def infer(x, *, paddings, constant_values=0):
        if x.shape is None:
            return x.dtype, None
        if len(paddings) != len(x.shape) or any(len(p) != 2 or min(p) < 0 for p in paddings):
            raise infer_error(f"paddings {paddings!r} need one [before, after] pair of ints >= 0 per axis of {describe(x)}.")
        return x.dtype, tuple(None if d is None else d + b + a for d, (b, a) in zip(x.shape, paddings))

    def prepare(node):
        key = tuple(_slice(b, -a if a else None) for b, a in node.attrs["paddings"])
        return {"key": key}

    def forward(x, *, paddings, key, constant_values=0):
        shape = tuple(d + b + a for d, (b, a) in zip(x.shape, paddings))
        check_output_size(shape, "Pad")
        out = np.full(shape, constant_values, dtype=x.dtype) if constant_values else np.zeros(shape, x.dtype)
        out[key] = x
        return out

    def vjp(g, out, x, *, paddings, constant_values=0):
        spec = [["slice", b, -a if a else None, None] for b, a in paddings]
        return (apply("StridedSlice", g, spec=spec),)


# -- public functions ---------------------------------------------------------------------------------
def _int_list(value: Any, what: str) -> list[int]:
    try:
        items = [value] if isinstance(value, (int, np.integer)) else list(value)
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
            raise TypeError
    except TypeError:
        raise GraphError(f"{what} must be a list of ints, got {value!r}.") from None
    return [int(v) for v in items]


def _shape_tensor(dims: Any, what: str = "shape") -> list[int] | Tensor:
    """A shape argument (named ``what`` in errors) as a static list of ints, or as a 1-D int tensor."""
    if isinstance(dims, Tensor) or hasattr(dims, "_as_graph_tensor"):
        return as_tensor(dims)
    items = list(dims) if isinstance(dims, (list, tuple)) else [dims]
    if any(isinstance(d, Tensor) for d in items):
        parts = [cast(d, int32) if isinstance(d, Tensor) else d for d in items]
        return stack([as_tensor(p, dtype=int32) for p in parts])
    return _int_list([-1 if d is None else d for d in items], what)


def reshape(x: Any, shape: Any, name: str | None = None) -> Tensor:
    """``x`` with a new shape: a list of ints (one may be -1), or a 1-D int tensor.

    >>> import hubkit as hk
    >>> with hk.Graph().as_default():
    ...     hk.reshape(hk.placeholder(hk.float32, [None, 2, 3]), [-1, 6]).shape
    (None, 6)
    """
    target = _shape_tensor(shape)
    if isinstance(target, Tensor):
        return apply("Reshape", x, target, shape=None, name=name)
    return apply("Reshape", x, shape=target, name=name)


def transpose(x: Any, perm: Sequence[int] | None = None, name: str | None = None) -> Tensor:
    """Permutes the axes of ``x`` (reverses them when ``perm`` is None)."""
    return apply("Transpose", x, perm=None if perm is None else _int_list(perm, "perm"), name=name)


def squeeze(x: Any, axis: Any = None, name: str | None = None) -> Tensor:
    """Removes size-1 axes: those in ``axis`` (an int or a list), or every one when None."""
    axes = None if axis is None else _int_list(axis, "axis")
    return apply("Squeeze", x, axis=axes, name=name)


def expand_dims(x: Any, axis: int, name: str | None = None) -> Tensor:
    """Inserts a size-1 axis at position ``axis``."""
    return apply("ExpandDims", x, axis=axis, name=name)


def concat(values: Sequence[Any], axis: int, name: str | None = None) -> Tensor:
    """Joins tensors along an existing axis (one tensor is returned as is)."""
    tensors = operands(*values)
    if len(tensors) == 1:
        return tensors[0]
    return apply("Concat", *tensors, axis=axis, name=name)


def stack(values: Sequence[Any], axis: int = 0, name: str | None = None) -> Tensor:
    """Stacks tensors of one shape along a new axis."""
    return apply("Pack", *operands(*values), axis=axis, name=name)


def unstack(value: Any, num: int | None = None, axis: int = 0, name: str | None = None) -> list[Tensor]:
    """Splits ``value`` along ``axis`` into a list of tensors (``num`` needed when that size is unknown)."""
    t = as_tensor(value)
    if num is None:
        if t.shape is None or t.shape[axis] is None:
            raise GraphError(f"unstack of {describe(t)} along axis {axis} needs num: that dimension is unknown.")
        num = t.shape[axis]
    out = apply("Unpack", t, axis=axis, num=int(num), name=name)
    return [out] if isinstance(out, Tensor) else list(out)


def getitem(x: Any, key: Any, name: str | None = None) -> Tensor:
    """``x[key]`` with ints, slices (with steps), None/newaxis and Ellipsis; ``Tensor[...]`` calls this.

    An integer tensor key gathers rows (``hubkit.gather(x, key)``).
    """
    if isinstance(key, Tensor):
        return gather(x, key, name=name)
    return apply("StridedSlice", x, spec=_index_spec(key), name=name or "strided_slice")


def slice(x: Any, begin: Sequence[int], size: Sequence[int], name: str | None = None) -> Tensor:
    """``size[i]`` elements of each axis ``i`` from ``begin[i]`` (a size of -1 takes the rest)."""
    b, s = _int_list(begin, "begin"), _int_list(size, "size")
    if len(b) != len(s) or any(v < 0 for v in b) or any(v < -1 for v in s):
        raise GraphError(f"slice needs begin {b} (ints >= 0) and size {s} (ints >= -1) of one length.")
    spec = [["slice", bi, None if si == -1 else bi + si, None] for bi, si in zip(b, s)]
    return apply("StridedSlice", x, spec=spec, name=name or "Slice")


def gather(params: Any, indices: Any, axis: int = 0, name: str | None = None) -> Tensor:
    """Slices of ``params`` along ``axis`` picked by integer ``indices``.

    The gradient with respect to ``params`` along axis 0 is sparse (an IndexedSlices).
    """
    p = as_tensor(params)
    return apply("Gather", p, as_tensor(indices, graph=p.graph), axis=int(axis), name=name)


def scatter_to_dense(values: Any, indices: Any, like: Any, name: str | None = None) -> Tensor:
    """A tensor shaped like ``like``: zeros, with ``values[i]`` added at row ``indices[i]``."""
    return apply("ScatterToDense", values, indices, like, name=name)


def unsorted_segment_sum(data: Any, segment_ids: Any, num_segments: Any, name: str | None = None) -> Tensor:
    """Sums the rows of ``data`` that share a segment id: ``out[ids[i]] += data[i]``."""
    d = as_tensor(data)
    n = as_tensor(num_segments, graph=d.graph)
    return apply("UnsortedSegmentSum", d, as_tensor(segment_ids, graph=d.graph), n, name=name)


def segment_sum(data: Any, segment_ids: Any, num_segments: Any = None, name: str | None = None) -> Tensor:
    """Like :func:`unsorted_segment_sum`; ``num_segments`` defaults to the largest id + 1."""
    if num_segments is not None:
        return unsorted_segment_sum(data, segment_ids, num_segments, name=name or "SegmentSum")
    d = as_tensor(data)
    return apply("UnsortedSegmentSum", d, as_tensor(segment_ids, graph=d.graph), name=name or "SegmentSum")


def one_hot(
    indices: Any,
    depth: int,
    on_value: float = 1.0,
    off_value: float = 0.0,
    dtype: Any = float32,
    axis: int = -1,
    name: str | None = None,
) -> Tensor:
    """One-hot vectors of length ``depth`` for integer ``indices``, on a new axis ``axis``."""
    return apply(
        "OneHot", indices, depth=int(depth), on_value=on_value, off_value=off_value,
        dtype=as_dtype(dtype), axis=int(axis), name=name,
    )


def shape(x: Any, out_type: Any = int32, name: str | None = None) -> Tensor:
    """The runtime shape of ``x`` as a 1-D integer tensor."""
    return apply("Shape", x, out_type=as_dtype(out_type), name=name)


def size(x: Any, out_type: Any = int32, name: str | None = None) -> Tensor:
    """The number of elements of ``x`` as an integer scalar tensor."""
    return apply("Size", x, out_type=as_dtype(out_type), name=name)


def rank(x: Any, name: str | None = None) -> Tensor:
    """The number of axes of ``x`` as an int32 scalar tensor."""
    return apply("Rank", x, name=name)


def fill(dims: Any, value: Any, name: str | None = None) -> Tensor:
    """A tensor of shape ``dims`` (ints, or a 1-D int tensor) filled with the scalar ``value``."""
    shape = _shape_tensor(dims, "fill: dims")
    if not isinstance(shape, Tensor):
        if any(d < 0 for d in shape):
            raise GraphError(f"fill needs known, non-negative dims, got {dims!r}.")
        shape = as_tensor(shape, dtype=int32)
    v = as_tensor(value, graph=shape.graph)
    return apply("Fill", shape, v, name=name)


def zeros(shape: Any, dtype: Any = float32, name: str | None = None) -> Tensor:
    """A tensor of zeros."""
    return fill(shape, as_tensor(0, dtype=as_dtype(dtype)), name=name or "zeros")


def ones(shape: Any, dtype: Any = float32, name: str | None = None) -> Tensor:
    """A tensor of ones."""
    return fill(shape, as_tensor(1, dtype=as_dtype(dtype)), name=name or "ones")


def tile(x: Any, multiples: Sequence[int], name: str | None = None) -> Tensor:
    """Repeats ``x`` ``multiples[i]`` times along each axis ``i``."""
    return apply("Tile", x, multiples=_int_list(multiples, "multiples"), name=name)


def pad(x: Any, paddings: Sequence[Sequence[int]], constant_values: Any = 0, name: str | None = None) -> Tensor:
    """Pads each axis ``i`` with ``paddings[i] = [before, after]`` entries of ``constant_values``."""
    pairs = [_int_list(p, "paddings") for p in paddings]
    return apply("Pad", x, paddings=pairs, constant_values=constant_values, name=name)
