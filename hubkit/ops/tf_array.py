"""TF-exact array ops: shape, axis and index arguments arrive as tensors (constant or computed at run time).

hubkit's own shape ops take these arguments as static attributes; a TF graph computes them (``tf.shape``,
``tf.stack`` of dims, ...), so these ops read them from their inputs. When an argument is a constant the
static shape is inferred; otherwise the unknown dimensions stay unknown until run time. Semantics follow
TensorFlow: ``Select`` (V1) picks whole rows with a vector condition, ``StridedSlice`` honours all five masks,
``GatherV2`` refuses out-of-range indices.
"""

from __future__ import annotations

import math

import numpy as np

from hubkit.errors import HubkitError
from hubkit.graph import Tensor, format_shape, int32
from hubkit.ops._helpers import MAX_OUTPUT_ELEMENTS, check_output_size, tiled_shape
from hubkit.ops._tf_common import const_value, known_size, static_list
from hubkit.ops.registry import apply, infer_error, register_op

__all__: list[str] = []


class TfRuntimeError(HubkitError):
    """A TF op met values it refuses at run time (TensorFlow raises InvalidArgumentError there)."""


def _unknown(rank: int | None):
    return None if rank is None else (None,) * rank


def _norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise infer_error(f"{what} {axis} is out of range for rank {rank}.")
    return axis % rank


def _vector_length(t: Tensor) -> int | None:
    if t.shape is None or len(t.shape) != 1:
        return None
    return t.shape[0]


# -- reshaping ---------------------------------------------------------------------------------------
def _reshape_shape(x: Tensor, dims: list[int]) -> tuple:
    size = known_size(x.shape)
    if dims.count(-1) == 1 and size is not None:
        rest = int(np.prod([int(d) for d in dims if d != -1], dtype=np.int64))
        if rest == 0 or size % rest:
            raise infer_error(f"cannot reshape {format_shape(x.shape)} into {dims}.")
        return tuple(size // rest if d == -1 else d for d in dims)
    out = tuple(None if d == -1 else d for d in dims)
    if size is not None and None not in out and int(np.prod([int(d or 0) for d in out], dtype=np.int64)) != size:
        raise infer_error(f"cannot reshape {format_shape(x.shape)} ({size} elements) into {dims}.")
    return out


@register_op
class TfReshape:
    """TF ``Reshape``: the target shape is a tensor (one -1 allowed)."""

    aliases_input = True

    def infer(x, shape):
        dims = static_list(shape)
        if dims is not None:
            return x.dtype, _reshape_shape(x, dims)
        return x.dtype, _unknown(_vector_length(shape))

    def forward(x, shape):
        try:
            return np.reshape(x, [int(d) for d in shape])
        except ValueError as e:
            raise TfRuntimeError(f"Reshape cannot reshape {list(x.shape)} into {list(shape)}: {e}.") from None

    def vjp(g, out, x, shape):
        return apply("TfReshape", g, apply("TfShape", x, out_type=int32)), None


@register_op
class TfShape:
    """TF ``Shape``: the runtime shape as a vector of ``out_type``."""

    differentiable = False

    def infer(x, *, out_type):
        return out_type, (None if x.shape is None else len(x.shape),)

    def forward(x, *, out_type):
        return np.array(x.shape, dtype=out_type.np_dtype)


@register_op
class TfSize:
    """TF ``Size``: the number of elements, a scalar of ``out_type``."""

    differentiable = False

    def infer(x, *, out_type):
        return out_type, ()

    def forward(x, *, out_type):
        return np.array(x.size, dtype=out_type.np_dtype)


@register_op
class TfRank:
    """TF ``Rank``: the number of dimensions, an int32 scalar."""

    differentiable = False

    def infer(x):
        return int32, ()

    def forward(x):
        return np.array(x.ndim, dtype=np.int32)


@register_op
class TfExpandDims:
    """TF ``ExpandDims``: inserts a dimension of size 1 at ``axis`` (a tensor; negative counts from the end)."""

    aliases_input = True

    def infer(x, axis):
        a = static_list(axis)
        if x.shape is None or a is None:
            return x.dtype, None if x.shape is None else _unknown(len(x.shape) + 1)
        at = _norm_axis(a[0], len(x.shape) + 1)
        return x.dtype, x.shape[:at] + (1,) + x.shape[at:]

    def forward(x, axis):
        return np.expand_dims(x, int(np.reshape(axis, -1)[0]))

    def vjp(g, out, x, axis):
        return apply("TfReshape", g, apply("TfShape", x, out_type=int32)), None


@register_op
class TfSqueeze:
    """TF ``Squeeze``: drops the size-1 dimensions listed in ``squeeze_dims`` (all size-1 ones when empty)."""

    aliases_input = True

    def infer(x, *, squeeze_dims=()):
        if x.shape is None:
            return x.dtype, None
        rank = len(x.shape)
        if squeeze_dims:
            axes = {_norm_axis(a, rank) for a in squeeze_dims}
            for a in axes:
                if x.shape[a] not in (None, 1):
                    raise infer_error(f"cannot squeeze dimension {a} of size {x.shape[a]}.")
            return x.dtype, tuple(d for i, d in enumerate(x.shape) if i not in axes)
        if None in x.shape:
            return x.dtype, None
        return x.dtype, tuple(d for d in x.shape if d != 1)

    def forward(x, *, squeeze_dims=()):
        axes = tuple(squeeze_dims) if squeeze_dims else None
        try:
            return np.squeeze(x, axis=axes)
        except ValueError as e:
            raise TfRuntimeError(f"Squeeze of {list(x.shape)}: {e}.") from None

    def vjp(g, out, x, *, squeeze_dims=()):
        return (apply("TfReshape", g, apply("TfShape", x, out_type=int32)),)


@register_op
class TfTranspose:
    """TF ``Transpose`` with the permutation as a tensor."""

    def infer(x, perm):
        p = static_list(perm)
        if p is None or x.shape is None:
            return x.dtype, None if x.shape is None else _unknown(len(x.shape))
        if sorted(p) != list(range(len(x.shape))):
            raise infer_error(f"{p} is not a permutation of the {len(x.shape)} dimensions of {format_shape(x.shape)}.")
        return x.dtype, tuple(x.shape[i] for i in p)

    def forward(x, perm):
        return np.transpose(x, [int(i) for i in perm])

    def vjp(g, out, x, perm):
        return apply("TfTranspose", g, apply("TfInvertPermutation", perm)), None


@register_op
class TfInvertPermutation:
    """TF ``InvertPermutation``."""

    differentiable = False

    def infer(p):
        return p.dtype, p.shape

    def forward(p):
        out = np.empty_like(p)
        out[p] = np.arange(len(p), dtype=p.dtype)
        return out


# -- joining and splitting ---------------------------------------------------------------------------
@register_op
class TfConcat:
    """TF ``ConcatV2``: ``values..., axis`` (the axis is the last input)."""

    def infer(*inputs):
        values, axis = inputs[:-1], inputs[-1]
        a = static_list(axis)
        shapes = [v.shape for v in values]
        if a is None or any(s is None for s in shapes):
            rank = next((len(s) for s in shapes if s is not None), None)
            return values[0].dtype, _unknown(rank)
        rank = len(shapes[0])
        at = _norm_axis(a[0], rank)
        dims = []
        for i in range(rank):
            column = [s[i] for s in shapes]
            if i == at:
                dims.append(None if None in column else sum(column))
            else:
                dims.append(next((d for d in column if d is not None), None))
        return values[0].dtype, tuple(dims)

    def forward(*inputs):
        return np.concatenate(inputs[:-1], axis=int(inputs[-1]))

    def vjp(g, out, *inputs):
        values, axis = inputs[:-1], inputs[-1]
        grads = [apply("TfConcatGrad", g, axis, *values, index=i) for i in range(len(values))]
        return (*grads, None)


@register_op
class TfConcatGrad:
    """The part of a concatenation's gradient that belongs to input ``index``."""

    differentiable = False

    def infer(g, axis, *values, index):
        return g.dtype, values[index].shape

    def forward(g, axis, *values, index):
        a = int(axis) % g.ndim
        start = sum(v.shape[a] for v in values[:index])
        sl = [slice(None)] * g.ndim
        sl[a] = slice(start, start + values[index].shape[a])
        return g[tuple(sl)]


@register_op
class TfPack:
    """TF ``Pack`` (``tf.stack``) along ``axis``."""

    def infer(*values, axis=0):
        shape = values[0].shape
        if shape is None:
            return values[0].dtype, None
        at = _norm_axis(axis, len(shape) + 1)
        return values[0].dtype, shape[:at] + (len(values),) + shape[at:]

    def forward(*values, axis=0):
        return np.stack(values, axis=axis)

    def vjp(g, out, *values, axis=0):
        return tuple(apply("TfTakeIndex", g, axis=axis, index=i) if v.dtype.is_floating else None
                     for i, v in enumerate(values))


@register_op
class TfTakeIndex:
    """``x`` indexed by the constant ``index`` along ``axis`` (one slice of a stacked tensor)."""

    def infer(x, *, axis, index):
        if x.shape is None:
            return x.dtype, None
        a = _norm_axis(axis, len(x.shape))
        return x.dtype, x.shape[:a] + x.shape[a + 1:]

    def forward(x, *, axis, index):
        return np.take(x, index, axis=axis)

    def vjp(g, out, x, *, axis, index):
        return (apply("TfPutIndex", g, x, axis=axis, index=index),)


@register_op
class TfPutIndex:
    """Zeros shaped like ``like`` with ``g`` placed at ``index`` along ``axis`` (gradient of TfTakeIndex)."""

    differentiable = False

    def infer(g, like, *, axis, index):
        return g.dtype, like.shape

    def forward(g, like, *, axis, index):
        out = np.zeros(like.shape, dtype=g.dtype)
        sl = [slice(None)] * like.ndim
        sl[axis % like.ndim] = index
        out[tuple(sl)] = g
        return out


@register_op
class TfUnpack:
    """TF ``Unpack`` (``tf.unstack``): ``num`` outputs along ``axis``."""

    def infer(x, *, num, axis=0):
        if x.shape is None:
            return [(x.dtype, None)] * num
        a = _norm_axis(axis, len(x.shape))
        return [(x.dtype, x.shape[:a] + x.shape[a + 1:])] * num

    def forward(x, *, num, axis=0):
        if x.shape[axis] != num:
            raise TfRuntimeError(f"Unpack expected {num} slices along axis {axis} of {list(x.shape)}.")
        return tuple(np.take(x, i, axis=axis) for i in range(num))

    def vjp(gs, outs, x, *, num, axis=0):
        parts = [g if g is not None else apply("ZerosLike", o) for g, o in zip(gs, outs)]
        return (apply("TfPack", *parts, axis=axis),)


# -- generators ----------------------------------------------------------------------------------------
@register_op
class TfFill:
    """TF ``Fill``: a tensor of shape ``dims`` holding ``value``."""

    def infer(dims, value):
        d = static_list(dims)
        return value.dtype, tuple(d) if d is not None else _unknown(_vector_length(dims))

    def forward(dims, value):
        check_output_size(dims.reshape(-1).tolist(), "Fill")
        return np.full([int(d) for d in dims], value, dtype=value.dtype)

    def vjp(g, out, dims, value):
        return None, apply("TfReduce", g, apply("TfRangeLike", g), reduction="sum", keep_dims=False)


@register_op
class TfRangeLike:
    """All axes of ``x``: ``[0, 1, ..., rank - 1]`` as int32 (reduce over everything)."""

    differentiable = False

    def infer(x):
        return int32, (None if x.shape is None else len(x.shape),)

    def forward(x):
        return np.arange(x.ndim, dtype=np.int32)


@register_op
class TfRange:
    """TF ``Range``: ``start, limit, delta`` scalars."""

    differentiable = False

    def infer(start, limit, delta):
        s, lim, d = (const_value(t) for t in (start, limit, delta))
        if s is None or lim is None or d is None:
            return start.dtype, (None,)
        # counted, not built: np.arange of a constant limit of 3e8 took 2.4 GB to load, 1e10 a bare MemoryError
        n = _range_length(s, lim, d, infer_error)
        if n > MAX_OUTPUT_ELEMENTS:
            raise infer_error(f"Range({s}, {lim}, {d}) would hold {n} elements; the limit is {MAX_OUTPUT_ELEMENTS}.")
        return start.dtype, (n,)

    def forward(start, limit, delta):
        check_output_size([_range_length(start, limit, delta, TfRuntimeError)], "Range")
        return np.arange(start, limit, delta, dtype=start.dtype)


def _range_length(start, limit, delta, error) -> int:
    """How many values ``np.arange(start, limit, delta)`` holds, without building it (``error``: what to raise)."""
    s, lim, d = (np.asarray(v).reshape(-1)[0].item() if np.size(v) == 1 else v for v in (start, limit, delta))
    if not all(isinstance(v, (int, float)) for v in (s, lim, d)):
        raise error(f"Range needs scalar start, limit and delta, got {start!r}, {limit!r}, {delta!r}.")
    if d == 0:
        raise error("Range needs a non-zero delta.")
    n = (lim - s) / d  # true division, then ceil: how np.arange counts, integers too (the forward runs it)
    if not math.isfinite(n):
        raise error(f"Range({s}, {lim}, {d}) does not give a finite number of elements.")
    return max(0, math.ceil(n))


@register_op
class TfOneHot:
    """TF ``OneHot``: ``indices, depth, on_value, off_value`` with the new axis at ``axis``."""

    differentiable = False

    def infer(indices, depth, on_value, off_value, *, axis=-1):
        d = static_list(depth)
        if indices.shape is None:
            return on_value.dtype, None
        rank = len(indices.shape) + 1
        at = axis % rank
        dim = d[0] if d is not None else None
        return on_value.dtype, indices.shape[:at] + (dim,) + indices.shape[at:]

    def forward(indices, depth, on_value, off_value, *, axis=-1):
        depth = int(depth)
        check_output_size([*np.shape(indices), max(depth, 0)], "OneHot")
        hot = np.expand_dims(indices, -1) == np.arange(depth)
        out = np.where(hot, on_value, off_value).astype(on_value.dtype)
        return np.moveaxis(out, -1, axis) if axis != -1 else out


@register_op
class TfTile:
    """TF ``Tile`` with the multiples as a tensor."""

    def infer(x, multiples):
        m = static_list(multiples)
        if x.shape is None or m is None:
            return x.dtype, None if x.shape is None else _unknown(len(x.shape))
        return x.dtype, tuple(None if d is None else d * k for d, k in zip(x.shape, m))

    def forward(x, multiples):
        check_output_size(tiled_shape(x.shape, multiples.tolist()), "Tile")
        return np.tile(x, [int(k) for k in multiples])

    def vjp(g, out, x, multiples):
        return apply("TfTileGrad", g, x, multiples), None


@register_op
class TfTileGrad:
    """Sums a tiled gradient back onto the tile."""

    differentiable = False

    def infer(g, x, multiples):
        return g.dtype, x.shape

    def forward(g, x, multiples):
        split = []
        for d, k in zip(x.shape, multiples):
            split += [int(k), d]
        return g.reshape(split).sum(axis=tuple(range(0, 2 * x.ndim, 2)))


# -- padding and splitting ------------------------------------------------------------------------
def _pairs(paddings) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in np.reshape(paddings, (-1, 2))]


@register_op
class TfPad:
    """TF ``Pad``/``PadV2`` (``constant``) and ``MirrorPad`` (``mode`` REFLECT or SYMMETRIC): ``paddings [rank, 2]``."""

    def infer(x, paddings, *constant, mode="CONSTANT"):
        if mode not in ("CONSTANT", "REFLECT", "SYMMETRIC"):
            raise infer_error(f"unknown mode {mode!r}; expected one of ['CONSTANT', 'REFLECT', 'SYMMETRIC'].")
        p = const_value(paddings)
        if x.shape is None:
            return x.dtype, None
        if p is None:
            return x.dtype, _unknown(len(x.shape))
        pairs = _pairs(p)
        if len(pairs) != len(x.shape):
            raise infer_error(f"paddings {pairs} do not match the rank of {format_shape(x.shape)}.")
        return x.dtype, tuple(None if d is None else d + a + b for d, (a, b) in zip(x.shape, pairs))

    def forward(x, paddings, *constant, mode="CONSTANT"):
        pairs = _pairs(paddings)
        if any(a < 0 or b < 0 for a, b in pairs):
            raise TfRuntimeError(f"paddings must be non-negative, got {pairs}.")
        check_output_size([d + a + b for d, (a, b) in zip(x.shape, pairs)], "Pad")
        if mode == "CONSTANT":
            value = constant[0] if constant else np.zeros((), dtype=x.dtype)
            return np.pad(x, pairs, constant_values=value)
        return np.pad(x, pairs, mode=mode.lower())

    def vjp(g, out, x, paddings, *constant, mode="CONSTANT"):
        grad = apply("TfPadGrad", g, x, paddings, mode=mode)
        return (grad, None, *(None for _ in constant))


@register_op
class TfPadGrad:
    """Gradient of TfPad: the interior of ``g`` (plus, for mirror modes, the reflected borders folded back)."""

    differentiable = False

    def infer(g, x, paddings, *, mode="CONSTANT"):
        return g.dtype, x.shape

    def forward(g, x, paddings, *, mode="CONSTANT"):
        pairs = _pairs(paddings)
        if mode == "CONSTANT":
            return g[tuple(slice(a, a + d) for (a, _), d in zip(pairs, x.shape))].copy()
        out = g
        for axis, ((before, after), d) in enumerate(zip(pairs, x.shape)):
            shift = 1 if mode == "REFLECT" else 0
            core = np.take(out, range(before, before + d), axis=axis).copy()
            moved = np.moveaxis(core, axis, 0)
            for i in range(before):  # padded position i mirrors source index before - i - 1 + shift
                src = before - i - 1 + shift
                moved[src] += np.take(out, i, axis=axis)
            for i in range(after):
                src = d - 1 - i - shift
                moved[src] += np.take(out, before + d + i, axis=axis)
            out = core
        return out


@register_op
class TfSplit:
    """TF ``Split`` (``axis, value``) and ``SplitV`` (``value, size_splits, axis``, ``v2=True``)."""

    def infer(*inputs, num_split, v2=False):
        value = inputs[0] if v2 else inputs[1]
        axis = inputs[2] if v2 else inputs[0]
        a = static_list(axis)
        if value.shape is None or a is None:
            return [(value.dtype, None if value.shape is None else _unknown(len(value.shape)))] * num_split
        at = _norm_axis(a[0], len(value.shape))
        sizes = static_list(inputs[1]) if v2 else None
        dims = []
        for i in range(num_split):
            if v2:
                size = sizes[i] if sizes is not None and sizes[i] != -1 else None
                if sizes is not None and sizes[i] == -1 and value.shape[at] is not None:
                    size = value.shape[at] - sum(s for s in sizes if s != -1)
            else:
                size = None if value.shape[at] is None else value.shape[at] // num_split
            dims.append((value.dtype, value.shape[:at] + (size,) + value.shape[at + 1:]))
        return dims

    def forward(*inputs, num_split, v2=False):
        value = inputs[0] if v2 else inputs[1]
        axis = int(inputs[2] if v2 else inputs[0]) % value.ndim
        if v2:
            sizes = [int(s) for s in inputs[1]]
            if -1 in sizes:
                sizes[sizes.index(-1)] = value.shape[axis] - sum(s for s in sizes if s != -1)
            if sum(sizes) != value.shape[axis] or min(sizes, default=0) < 0:
                raise TfRuntimeError(f"SplitV sizes {sizes} do not add up to {value.shape[axis]}.")
            return tuple(np.split(value, np.cumsum(sizes)[:-1], axis=axis))
        if value.shape[axis] % num_split:
            raise TfRuntimeError(f"Split cannot divide {value.shape[axis]} into {num_split} equal parts.")
        return tuple(np.split(value, num_split, axis=axis))

    def vjp(gs, outs, *inputs, num_split, v2=False):
        axis = inputs[2] if v2 else inputs[0]
        parts = [g if g is not None else apply("ZerosLike", o) for g, o in zip(gs, outs)]
        joined = apply("TfConcat", *parts, axis)
        return (joined, None, None) if v2 else (None, joined)
