"""Translators of ONNX's shape and indexing ops (Reshape, Slice, Gather, Pad, Constant, ...)."""

from __future__ import annotations

import math

import numpy as np

from hubkit.errors import GraphError
from hubkit.importers.onnx.registry import translates
from hubkit.ops import api as K
from hubkit.ops.registry import apply
from hubkit.ops.shape import getitem

__all__: list[str] = []

_INT_MAX = 2**62


def _input(node, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


def _int_list(ctx, node, i: int, attrs, attr: str, what: str) -> list[int] | None:
    """An int list given as input ``i`` (newer opsets) or as the attribute ``attr`` (older ones)."""
    name = _input(node, i)
    if name:
        return [int(v) for v in ctx.value(name, what).reshape(-1)]
    if attr in attrs:
        return [int(v) for v in attrs[attr]]
    return None


@translates("Constant")
def constant(ctx, node, attrs):
    from onnx import numpy_helper

    if "value" in attrs:
        return [numpy_helper.to_array(attrs["value"])]
    for key, conv in (("value_float", np.float32), ("value_int", np.int64)):
        if key in attrs:
            return [np.asarray(attrs[key], dtype=conv)]
    for key, conv in (("value_floats", np.float32), ("value_ints", np.int64)):
        if key in attrs:
            return [np.asarray(list(attrs[key]), dtype=conv)]
    raise GraphError(f"Constant attributes {sorted(attrs)} are not supported (strings and sparse tensors are not).")


@translates("Reshape")
def reshape(ctx, node, attrs):
    return [apply("OnnxReshape", ctx.t(node.input[0]), ctx.t(node.input[1]),
                  allowzero=bool(attrs.get("allowzero", 0)))]


@translates("Flatten")
def flatten(ctx, node, attrs):
    return [apply("OnnxFlatten", ctx.t(node.input[0]), axis=int(attrs.get("axis", 1)))]


@translates("Transpose")
def transpose(ctx, node, attrs):
    perm = attrs.get("perm")
    return [K.transpose(ctx.t(node.input[0]), None if perm is None else [int(p) for p in perm])]


@translates("Squeeze")
def squeeze(ctx, node, attrs):
    x = ctx.t(node.input[0])
    axes = _int_list(ctx, node, 1, attrs, "axes", "the axes of Squeeze")
    if axes is None:
        if x.shape is None or None in x.shape:
            raise GraphError("Squeeze without axes needs an input of static shape.")
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    return [K.squeeze(x, axis=[a % x.ndim for a in axes]) if axes else K.identity(x)]


@translates("Unsqueeze")
def unsqueeze(ctx, node, attrs):
    x = ctx.t(node.input[0])
    axes = _int_list(ctx, node, 1, attrs, "axes", "the axes of Unsqueeze") or []
    rank = (x.ndim or 0) + len(axes)
    y = x
    for a in sorted(a % rank for a in axes):
        y = K.expand_dims(y, a)
    return [y]


@translates("Concat")
def concat(ctx, node, attrs):
    xs = [ctx.t(n) for n in node.input if n]
    return [K.concat(xs, axis=int(attrs["axis"]))]


def _slice_along(x, axis: int, start, stop, step=1):
    key = [slice(None)] * x.ndim
    key[axis] = slice(start, stop, step)
    return getitem(x, tuple(key))


@translates("Split")
def split(ctx, node, attrs):
    x = ctx.t(node.input[0])
    axis = int(attrs.get("axis", 0)) % x.ndim
    sizes = _int_list(ctx, node, 1, attrs, "split", "the split of Split")
    n_out = len(node.output)
    if sizes is None:
        dim = x.shape[axis]
        if dim is None:
            raise GraphError("Split into equal parts needs a static size along the axis.")
        parts = int(attrs.get("num_outputs", n_out))
        chunk = -(-dim // parts)
        sizes = [min(chunk, dim - i * chunk) for i in range(parts)]
    outs, begin = [], 0
    for s in sizes:
        outs.append(_slice_along(x, axis, begin, begin + s))
        begin += s
    return outs


@translates("Slice")
def slice_(ctx, node, attrs):
    x = ctx.t(node.input[0])
    starts = _int_list(ctx, node, 1, attrs, "starts", "the starts of Slice")
    ends = _int_list(ctx, node, 2, attrs, "ends", "the ends of Slice")
    axes = _int_list(ctx, node, 3, attrs, "axes", "the axes of Slice") or list(range(len(starts)))
    steps = _int_list(ctx, node, 4, attrs, "steps", "the steps of Slice") or [1] * len(starts)
    key = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise GraphError("Slice steps must not be 0.")
        # ONNX clamps like Python, with INT_MAX/INT_MIN meaning "to the end": Python's None does that.
        e_py = None if (st > 0 and e >= _INT_MAX) or (st < 0 and e <= -_INT_MAX) else e
        key[a % x.ndim] = slice(s, e_py, st)
    return [getitem(x, tuple(key))]


@translates("Gather")
def gather(ctx, node, attrs):
    x = ctx.t(node.input[0])
    axis = int(attrs.get("axis", 0)) % x.ndim
    idx = ctx.known(node.input[1])
    if idx is not None:
        dim = x.shape[axis]
        if (idx < 0).any():
            if dim is None:
                raise GraphError("negative Gather indices need a static size along the axis.")
            idx = np.where(idx < 0, idx + dim, idx)
        return [K.gather(x, idx, axis=axis)]
    return [K.gather(x, ctx.t(node.input[1]), axis=axis)]


@translates("GatherElements")
def gather_elements(ctx, node, attrs):
    x = ctx.t(node.input[0])
    return [apply("OnnxGatherElements", x, ctx.t(node.input[1]), axis=int(attrs.get("axis", 0)) % x.ndim)]


@translates("Shape")
def shape(ctx, node, attrs):
    x = ctx.t(node.input[0])
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    if x.shape is not None and None not in x.shape:
        return [np.asarray(x.shape, dtype=np.int64)[start:None if end is None else int(end)]]
    s = K.shape(x, out_type="int64")
    return [s if start == 0 and end is None else getitem(s, slice(start, None if end is None else int(end)))]


@translates("Size")
def size(ctx, node, attrs):
    x = ctx.t(node.input[0])
    if x.shape is not None and None not in x.shape:
        n = math.prod(x.shape)  # Python ints: np.prod wraps
        if n >= 2**63:
            raise GraphError(f"the input has the shape {list(x.shape)}, of more than 2**63 elements.")
        return [np.asarray(n, dtype=np.int64)]
    return [K.size(x, out_type="int64")]


@translates("Expand")
def expand(ctx, node, attrs):
    return [apply("OnnxExpand", ctx.t(node.input[0]), ctx.t(node.input[1]))]


@translates("Tile")
def tile(ctx, node, attrs):
    reps = [int(r) for r in ctx.value(node.input[1], "the repeats of Tile").reshape(-1)]
    return [K.tile(ctx.t(node.input[0]), reps)]


@translates("Pad")
def pad(ctx, node, attrs):
    x = ctx.t(node.input[0])
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = _int_list(ctx, node, 1, attrs, "pads", "the pads of Pad") or []
    axes = _int_list(ctx, node, 3, attrs, "axes", "the axes of Pad")
    n = x.ndim
    if axes is not None:
        full = [0] * (2 * n)
        for i, a in enumerate(axes):
            full[a % n], full[n + a % n] = pads[i], pads[len(axes) + i]
        pads = full
    if any(p < 0 for p in pads):
        raise GraphError("negative pads (cropping) are not supported.")
    if mode == "constant":
        value = 0
        if _input(node, 2):
            value = ctx.value(node.input[2], "the constant_value of Pad").reshape(-1)[0].item()
        return [K.pad(x, [[pads[i], pads[n + i]] for i in range(n)], constant_values=value)]
    if mode not in ("reflect", "edge", "wrap"):
        raise GraphError(f"Pad mode {mode!r} is not one of ['constant', 'edge', 'reflect', 'wrap'].")
    return [apply("OnnxPad", x, pads=pads, mode=mode)]


@translates("ConstantOfShape")
def constant_of_shape(ctx, node, attrs):
    from onnx import numpy_helper

    value = numpy_helper.to_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, np.float32)
    dims = ctx.known(node.input[0])
    if dims is not None:
        from hubkit.importers.onnx.translate import check_fold_size

        shape = [int(d) for d in dims.reshape(-1)]
        if any(d < 0 for d in shape):
            raise GraphError(f"ConstantOfShape has the negative shape {shape}.")
        check_fold_size(math.prod(shape), "ConstantOfShape")  # Python ints: no wrap, no rounding
        return [np.full(shape, value[0], dtype=value.dtype)]
    return [K.fill(ctx.t(node.input[0]), value[0])]


@translates("Range")
def range_(ctx, node, attrs):
    return [apply("OnnxRange", *[ctx.t(n) for n in node.input])]


@translates("Trilu")
def trilu(ctx, node, attrs):
    k = [ctx.t(node.input[1])] if _input(node, 1) else []
    return [apply("OnnxTrilu", ctx.t(node.input[0]), *k, upper=bool(attrs.get("upper", 1)))]


@translates("Resize")
def resize(ctx, node, attrs):
    def text(key: str, default: str) -> str:
        v = attrs.get(key, default)
        return v.decode() if isinstance(v, bytes) else v

    if int(attrs.get("antialias", 0)) or text("keep_aspect_ratio_policy", "stretch") != "stretch" or attrs.get("axes"):
        raise GraphError("Resize with antialias, axes or a keep_aspect_ratio_policy other than 'stretch' is not "
                         "supported.")
    x = ctx.t(node.input[0])
    scales = [float(s) for s in ctx.value(node.input[2], "the scales of Resize").reshape(-1)] if _input(node, 2) else []
    sizes = [int(s) for s in ctx.value(node.input[3], "the sizes of Resize").reshape(-1)] if _input(node, 3) else []
    if not scales and not sizes:
        raise GraphError("Resize needs scales or sizes.")
    return [apply("OnnxResize", x, scales=scales, sizes=sizes, mode=text("mode", "nearest"),
                  coord=text("coordinate_transformation_mode", "half_pixel"),
                  nearest_mode=text("nearest_mode", "round_prefer_floor"))]
