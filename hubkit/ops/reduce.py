"""Op family: reductions (sum, mean, max, min, prod, argmax, argmin) and the broadcast pair.

``SumToShape`` and ``BroadcastLike`` are each other's gradient: the first sums a broadcast gradient
back to an operand's runtime shape (see :func:`hubkit.ops._helpers.unbroadcast`), the second
spreads a reduced gradient over the reduced axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import DType, Tensor, as_dtype, int64
from hubkit.graph.shapes import Shape
from hubkit.ops._helpers import as_tensor, check_dtype, normalize_axes, plain_axis, unbroadcast
from hubkit.ops.elementwise import cast, divide, equal, multiply
from hubkit.ops.registry import apply, infer_error, register_op

__all__ = ["argmax", "argmin", "reduce_max", "reduce_mean", "reduce_min", "reduce_prod", "reduce_sum"]


def _reduced_shape(shape: Shape, axes: tuple[int, ...] | None, keepdims: bool) -> Shape:
    if shape is None:
        return () if axes is None and not keepdims else None
    if axes is None:
        return (1,) * len(shape) if keepdims else ()
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _prepare_axis(node) -> dict[str, Any]:
    # Attrs may come back from a file as lists; NumPy wants a tuple.
    axis = node.attrs.get("axis")
    return {"axis": axis if axis is None or isinstance(axis, int) else tuple(axis)}


class _Reduce:
    def infer(x, *, axis=None, keepdims=False):
        check_dtype(x, "fi", "the input")
        return x.dtype, _reduced_shape(x.shape, normalize_axes(axis, x.ndim), keepdims)

    prepare = _prepare_axis


def _spread(g: Tensor, x: Tensor, axis: Any, keepdims: bool) -> Tensor:
    """The gradient ``g`` of a reduction, broadcast back over ``x``'s reduced axes."""
    return broadcast_like(g, x, None if keepdims or axis is None else axis)


@register_op
class Sum(_Reduce):
    """Sum over ``axis`` (every axis when None)."""

    def forward(x, *, axis=None, keepdims=False):
        # dtype= keeps small ints from being accumulated (and returned) as int64.
        return np.add.reduce(x, axis=axis, dtype=x.dtype, keepdims=keepdims)

    def vjp(g, out, x, *, axis=None, keepdims=False):
        return (_spread(g, x, axis, keepdims),)


@register_op
class Mean(_Reduce):
    """Mean over ``axis`` (every axis when None); integer means truncate, as in TensorFlow."""

    def forward(x, *, axis=None, keepdims=False):
        return np.mean(x, axis=axis, keepdims=keepdims).astype(x.dtype, copy=False)

    def vjp(g, out, x, *, axis=None, keepdims=False):
        spread = _spread(g, x, axis, keepdims)
        if x.shape is not None and None not in x.shape and out.shape is not None and None not in out.shape:
            n_in = int(np.prod(x.shape, dtype=np.int64))
            n_out = int(np.prod(out.shape, dtype=np.int64))
            return (multiply(spread, n_out / max(n_in, 1)),)
        ratio = divide(
            cast(apply("Size", out, out_type=int64), x.dtype), cast(apply("Size", x, out_type=int64), x.dtype)
        )
        return (multiply(spread, ratio),)


def _extremum_vjp(g: Tensor, out: Tensor, x: Tensor, axis: Any, keepdims: bool) -> tuple[Tensor]:
    # Ties share the gradient equally, as in TensorFlow.
    mask = cast(equal(x, _spread(out, x, axis, keepdims)), g.dtype)
    count = _spread(reduce_sum(mask, axis, keepdims), x, axis, keepdims)
    return (multiply(_spread(g, x, axis, keepdims), divide(mask, count)),)


@register_op
class Max(_Reduce):
    """Maximum over ``axis``; the gradient is shared equally by tied maxima."""

    def forward(x, *, axis=None, keepdims=False):
        return np.maximum.reduce(x, axis=axis, keepdims=keepdims)

    def vjp(g, out, x, *, axis=None, keepdims=False):
        return _extremum_vjp(g, out, x, axis, keepdims)


@register_op
class Min(_Reduce):
    """Minimum over ``axis``; the gradient is shared equally by tied minima."""

    def forward(x, *, axis=None, keepdims=False):
        return np.minimum.reduce(x, axis=axis, keepdims=keepdims)

    def vjp(g, out, x, *, axis=None, keepdims=False):
        return _extremum_vjp(g, out, x, axis, keepdims)


@register_op
class Prod(_Reduce):
    """Product over ``axis``; the gradient ``prod / x`` assumes no element is zero."""

    def forward(x, *, axis=None, keepdims=False):
        return np.multiply.reduce(x, axis=axis, dtype=x.dtype, keepdims=keepdims)

    def vjp(g, out, x, *, axis=None, keepdims=False):
        return (divide(_spread(multiply(g, out), x, axis, keepdims), x),)


class _Arg:
    differentiable = False

    def infer(x, *, axis, output_type):
        check_dtype(x, "fi", "the input")
        if not output_type.is_integer:
            raise infer_error(f"output_type must be int32 or int64, got {output_type.name}.")
        axes = normalize_axes(axis, x.ndim)
        return output_type, _reduced_shape(x.shape, axes, False)

    def prepare(node):
        return {"np_dtype": node.attrs["output_type"].np_dtype}


@register_op
class ArgMax(_Arg):
    """Index of the largest element along ``axis`` (the first one on ties)."""

    def forward(x, *, axis, output_type, np_dtype):
        return np.argmax(x, axis=axis).astype(np_dtype, copy=False)


@register_op
class ArgMin(_Arg):
    """Index of the smallest element along ``axis`` (the first one on ties)."""

    def forward(x, *, axis, output_type, np_dtype):
        return np.argmin(x, axis=axis).astype(np_dtype, copy=False)


# -- the broadcast pair used by gradients ---------------------------------------------------------------
@register_op
class SumToShape:
    """Sums ``g`` down to the runtime shape of ``like`` (undoes NumPy broadcasting)."""

    aliases_input = True  # returns g itself when nothing was broadcast

    def infer(g, like):
        return g.dtype, like.shape

    def forward(g, like):
        shape = like.shape
        if g.shape == shape:
            return g
        lead = g.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1
        )
        return np.add.reduce(g, axis=axes, dtype=g.dtype, keepdims=True).reshape(shape)

    def vjp(grad, out, g, like):
        return broadcast_like(grad, g), None


@register_op
class BroadcastLike:
    """Broadcasts ``x`` (after inserting size-1 axes at ``axis``) to the runtime shape of ``like``."""

    aliases_input = True  # a read-only broadcast view
    prepare = _prepare_axis

    def infer(x, like, *, axis=None):
        return x.dtype, like.shape

    def forward(x, like, *, axis=None):
        if axis is not None:
            x = np.expand_dims(x, axis)
        return np.broadcast_to(x, like.shape)

    def vjp(g, out, x, like, *, axis=None):
        if axis is not None:
            g = reduce_sum(g, axis=list(axis))
        return unbroadcast(g, x), None


def broadcast_like(x: Tensor, like: Tensor, axis: Any = None) -> Tensor:
    """``x`` broadcast to ``like``'s runtime shape, after inserting size-1 axes at ``axis``."""
    axes = None if axis is None else list(normalize_axes(axis, like.ndim) or ())
    if axes is None and x.shape is not None and x.shape == like.shape and None not in x.shape:
        return x
    return apply("BroadcastLike", x, like, axis=axes)


# -- public functions ---------------------------------------------------------------------------------
def _reduce(op: str, x: Any, axis: Any, keepdims: bool, name: str | None) -> Tensor:
    # Axes are checked (with the node named in the message) by the op's infer.
    return apply(op, as_tensor(x), axis=plain_axis(axis), keepdims=bool(keepdims), name=name)


def reduce_sum(x: Any, axis: Any = None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Sum of elements over ``axis`` (an int, a list of ints, or None for every axis).

    >>> import hubkit as hk
    >>> with hk.Graph().as_default():
    ...     hk.reduce_sum(hk.placeholder(hk.float32, [None, 3, 4]), axis=[0, -1]).shape
    (3,)
    """
    return _reduce("Sum", x, axis, keepdims, name)


def reduce_mean(x: Any, axis: Any = None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Mean of elements over ``axis`` (an int, a list of ints, or None for every axis)."""
    return _reduce("Mean", x, axis, keepdims, name)


def reduce_max(x: Any, axis: Any = None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Maximum of elements over ``axis``."""
    return _reduce("Max", x, axis, keepdims, name)


def reduce_min(x: Any, axis: Any = None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Minimum of elements over ``axis``."""
    return _reduce("Min", x, axis, keepdims, name)


def reduce_prod(x: Any, axis: Any = None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Product of elements over ``axis``."""
    return _reduce("Prod", x, axis, keepdims, name)


def _arg(op: str, x: Any, axis: int, output_type: Any, name: str | None) -> Tensor:
    dt: DType = as_dtype(output_type)
    axis = plain_axis(axis)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise GraphError(f"{op} axis must be a single int, got {axis!r}.")
    return apply(op, as_tensor(x), axis=axis, output_type=dt, name=name)


def argmax(x: Any, axis: int = -1, output_type: Any = int64, name: str | None = None) -> Tensor:
    """Index of the largest element along ``axis``."""
    return _arg("ArgMax", x, axis, output_type, name)


def argmin(x: Any, axis: int = -1, output_type: Any = int64, name: str | None = None) -> Tensor:
    """Index of the smallest element along ``axis``."""
    return _arg("ArgMin", x, axis, output_type, name)
