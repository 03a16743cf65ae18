"""Op family: 2-D convolution and pooling over NHWC images, with TensorFlow's padding rules.

Geometry follows TensorFlow: ``SAME`` gives ``ceil(in / stride)`` outputs and puts the odd pixel of
padding after (bottom/right), ``VALID`` uses no padding, and an explicit ``[[top, bottom], [left,
right]]`` list pads exactly that. Filters are ``[height, width, in_channels, out_channels]`` (HWIO).

This file holds the ops: shape rules, argument checks, padding geometry and gradients. The heavy
work is in the NumPy kernels of :mod:`hubkit.ops._conv_numpy`, reached through its ``kernels`` table,
the one dispatch point a faster implementation (e.g. Numba) replaces entries of; every kernel
receives concrete paddings ``((top, bottom), (left, right))`` so it needs no knowledge of padding modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import Tensor
from hubkit.ops._conv_numpy import Pads, kernels
from hubkit.ops._helpers import as_tensor, check_dtype, check_output_size
from hubkit.ops.registry import apply, describe, infer_error, register_op
from hubkit.ops.shape import shape as shape_of

__all__ = ["avg_pool", "avg_pool2d", "conv2d", "conv2d_transpose", "max_pool", "max_pool2d"]

# -- geometry ---------------------------------------------------------------------------------------
def _pair(value: Any, what: str, fn: str) -> tuple[int, int]:
    """``2`` -> (2, 2); ``[2, 3]`` -> (2, 3); TF's NHWC form ``[1, 2, 3, 1]`` -> (2, 3)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        items = [int(value)] * 2
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        items = list(value)
    elif isinstance(value, (list, tuple)) and len(value) == 4 and value[0] == 1 and value[3] == 1:
        items = [value[1], value[2]]
    else:
        raise GraphError(
            f"{fn}: {what} must be an int, a pair [height, width] or NHWC [1, height, width, 1]; got {value!r}."
        )
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in items):
        raise GraphError(f"{fn}: {what} must be positive integers; got {value!r}.")
    return int(items[0]), int(items[1])


def _padding(value: Any, fn: str, explicit: bool = True) -> str | list[list[int]]:
    """``"SAME"``/``"VALID"`` (any case), or explicit ``[[top, bottom], [left, right]]`` (or NHWC 4x2)."""
    if isinstance(value, str):
        mode = value.upper()
        if mode in ("SAME", "VALID"):
            return mode
    elif explicit and isinstance(value, (list, tuple)) and len(value) in (2, 4):
        rows = [list(r) for r in value] if all(isinstance(r, (list, tuple)) for r in value) else []
        if len(rows) == 4 and rows[0] == [0, 0] and rows[3] == [0, 0]:
            rows = rows[1:3]
        ok = len(rows) == 2 and all(
            len(r) == 2 and all(isinstance(p, (int, np.integer)) and p >= 0 for p in r) for r in rows
        )
        if ok:
            return [[int(p) for p in r] for r in rows]
    choices = "'SAME', 'VALID' or [[top, bottom], [left, right]]" if explicit else "'SAME' or 'VALID'"
    raise GraphError(f"{fn}: padding must be {choices}; got {value!r}.")


def _dim_geometry(size: int | None, k: int, s: int, d: int, pad: Any) -> tuple[int | None, tuple[int, int]]:
    """(output size, (pad before, pad after)) along one spatial dimension, as TensorFlow computes it."""
    eff = (k - 1) * d + 1
    if size is None:
        return None, (0, 0)
    if pad == "SAME":
        out = -(-size // s)
        total = max((out - 1) * s + eff - size, 0)
        return out, (total // 2, total - total // 2)
    before, after = (0, 0) if pad == "VALID" else (int(pad[0]), int(pad[1]))
    padded = size + before + after
    return (padded - eff) // s + 1 if padded >= eff else 0, (before, after)


def _geometry(hw: Sequence[int | None], khw: Sequence[int], strides, dilations, padding):
    """Output (height, width) and concrete paddings of a window op."""
    if min(*khw, *strides, *dilations) < 1:  # from a module file: the builders check this, graph.pb may not
        raise infer_error(f"window {list(khw)}, strides {list(strides)} and dilations {list(dilations)} must be >= 1.")
    if not _plain_padding(padding):  # likewise: a negative pad misplaced the input in the fused kernels' padded copy
        raise infer_error(f"padding must be 'SAME', 'VALID' or [[top, bottom], [left, right]] of integers >= 0; "
                          f"got {padding!r}.")
    pads = [padding, padding] if isinstance(padding, str) else padding
    (oh, ph), (ow, pw) = (
        _dim_geometry(hw[i], khw[i], strides[i], dilations[i], pads[i]) for i in range(2)
    )
    return (oh, ow), (ph, pw)


def _plain_padding(padding: Any) -> bool:
    """Whether ``padding`` is what :func:`_padding` returns: ``"SAME"``, ``"VALID"`` or two pairs of ints >= 0."""
    if isinstance(padding, str):
        return padding in ("SAME", "VALID")
    return (
        isinstance(padding, (list, tuple)) and len(padding) == 2
        and all(isinstance(r, (list, tuple)) and len(r) == 2 for r in padding)
        and all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0 for r in padding for p in r)
    )


def _does_not_fit(hw: Sequence, khw: Sequence, dilations: Sequence, padding: Any) -> str:
    return (
        f"a {khw[0]}x{khw[1]} window with dilations {list(dilations)} does not fit in an input of "
        f"height {hw[0]} and width {hw[1]} with padding {padding!r}."
    )


def _runtime_geometry(hw, khw, strides, dilations, padding, planes: int = 1) -> tuple[tuple[int, int], Pads]:
    """Output size and pads of a window op on ``hw``; ``planes``: images times the larger channel count.

    The padded input and the output (``planes`` of each) are bounded by ``MAX_OUTPUT_ELEMENTS``: explicit pads from
    a module file multiply sizes as a ``Pad`` does.
    """
    out, pads = _geometry(hw, khw, strides, dilations, padding)
    if out[0] <= 0 or out[1] <= 0:
        raise ValueError(_does_not_fit(hw, khw, dilations, padding))
    check_output_size([planes, hw[0] + sum(pads[0]), hw[1] + sum(pads[1])], "the padded input of a window op")
    check_output_size([planes, *out], "a window op")
    return out, pads


def _check_fits(out: tuple, hw: Sequence, khw: Sequence, dilations: Sequence, padding: Any) -> None:
    if (out[0] is not None and out[0] <= 0) or (out[1] is not None and out[1] <= 0):
        raise infer_error(_does_not_fit(hw, khw, dilations, padding))


def _check_image(t: Tensor, what: str) -> tuple:
    if t.shape is not None and len(t.shape) != 4:
        raise infer_error(f"{what} {describe(t)} must have rank 4 [batch, height, width, channels].")
    check_dtype(t, "f", what)
    return t.shape if t.shape is not None else (None,) * 4


def _same(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


# -- ops ---------------------------------------------------------------------------------------------
def _sizes_hw(sizes: np.ndarray | None, input_hw) -> tuple[int, int]:
    if sizes is not None:
        return int(sizes[1]), int(sizes[2])
    return input_hw[0], input_hw[1]


def _size_of(like: Tensor) -> tuple[list, list[Tensor]]:
    """The ``input_hw`` attr of a gradient op shaped like ``like``, and its run-time size input when needed."""
    hw = list(like.shape[1:3]) if like.shape is not None else [None, None]
    return hw, ([shape_of(like)] if None in hw else [])


def _check_filters(w: Tensor, x: Tensor) -> tuple:
    """``(height, width, in_channels, out_channels)`` of HWIO filters ``w`` applied to images like ``x``."""
    if w.shape is not None and len(w.shape) != 4:
        raise infer_error(f"filters {describe(w)} must have rank 4 [height, width, in_channels, out_channels].")
    kh, kw, c, o = w.shape if w.shape is not None else (None,) * 4
    if w.dtype is not x.dtype:
        raise infer_error(f"filters {describe(w)} must have the dtype of the input {describe(x)}.")
    if kh is None or kw is None:
        raise infer_error(f"filters {describe(w)} must have a known height and width.")
    return kh, kw, c, o


def _input_grad(g: Tensor, w: Tensor, like: Tensor, attrs: dict) -> Tensor:
    """The gradient with respect to a conv input shaped like ``like`` (its size read at run time if needed)."""
    hw, extra = _size_of(like)
    return apply("Conv2DBackpropInput", g, w, *extra, input_hw=hw, **attrs)


def _filter_grad(x: Tensor, g: Tensor, w_shape, attrs: dict) -> Tensor:
    return apply("Conv2DBackpropFilter", x, g, filter_hw=list(w_shape[:2]), **attrs)


@register_op
class Conv2D:
    """NHWC convolution with HWIO filters."""

    def infer(x, w, *, strides, dilations, padding):
        n, h, wd, c = _check_image(x, "input")
        kh, kw, wc, o = _check_filters(w, x)
        if not _same(c, wc):
            raise infer_error(
                f"input {describe(x)} has {c} channels but filters {describe(w)} expect {wc} "
                "(filters are [height, width, in_channels, out_channels])."
            )
        out, _ = _geometry((h, wd), (kh, kw), strides, dilations, padding)
        _check_fits(out, (h, wd), (kh, kw), dilations, padding)
        return x.dtype, (n, out[0], out[1], o)

    def forward(x, w, *, strides, dilations, padding):
        if x.shape[3] != w.shape[2]:
            raise ValueError(f"input has {x.shape[3]} channels but the filters expect {w.shape[2]}.")
        _, pads = _runtime_geometry(x.shape[1:3], w.shape[:2], strides, dilations, padding,
                                    x.shape[0] * max(x.shape[3], w.shape[3]))
        return kernels["conv2d"](x, w, strides, dilations, pads)

    def vjp(g, out, x, w, **attrs):
        return _input_grad(g, w, x, attrs), _filter_grad(x, g, w.shape, attrs)


@register_op
class Conv2DBackpropInput:
    """Gradient of Conv2D with respect to its input; also the transposed convolution.

    Inputs: the output gradient, the filters, and optionally the input's size as a [4] int tensor
    (when the static ``input_hw`` attr has unknown entries).
    """

    def infer(g, w, sizes=None, *, input_hw, strides, dilations, padding):
        n, oh, ow, o = _check_image(g, "input")
        kh, kw, c, wo = _check_filters(w, g)
        if not _same(o, wo):
            raise infer_error(
                f"input {describe(g)} has {o} channels but filters {describe(w)} take {wo} "
                "(their last dimension)."
            )
        if None in input_hw and sizes is None:
            raise infer_error("the input size is not known statically; pass it as a tensor.")
        out, _ = _geometry(input_hw, (kh, kw), strides, dilations, padding)
        if not (_same(out[0], oh) and _same(out[1], ow)):
            raise infer_error(
                f"an input of height {input_hw[0]} and width {input_hw[1]} gives outputs of "
                f"{out[0]}x{out[1]}, not {oh}x{ow} as {describe(g)} has (strides {list(strides)}, "
                f"padding {padding!r})."
            )
        return g.dtype, (n, input_hw[0], input_hw[1], c)

    def forward(g, w, sizes=None, *, input_hw, strides, dilations, padding):
        hw = _sizes_hw(sizes, input_hw)
        out, pads = _runtime_geometry(hw, w.shape[:2], strides, dilations, padding, g.shape[0] * max(w.shape[2:]))
        if tuple(g.shape[1:3]) != out or g.shape[3] != w.shape[3]:
            raise ValueError(
                f"an input of size {hw[0]}x{hw[1]} gives outputs of {out[0]}x{out[1]}x{w.shape[3]} with these "
                f"filters, strides and padding, but the gradient has shape {list(g.shape)}."
            )
        return kernels["conv2d_backprop_input"](g, w, hw, strides, dilations, pads)

    def vjp(gg, out, g, w, sizes=None, *, input_hw, **attrs):
        grads = (apply("Conv2D", gg, w, **attrs), _filter_grad(gg, g, w.shape, attrs))
        return grads if sizes is None else (*grads, None)


@register_op
class Conv2DBackpropFilter:
    """Gradient of Conv2D with respect to its filters, from the input and the output gradient."""

    def infer(x, g, *, filter_hw, strides, dilations, padding):
        _, h, wd, c = _check_image(x, "input")
        _, oh, ow, o = _check_image(g, "gradient")
        if g.dtype is not x.dtype:
            raise infer_error(f"gradient {describe(g)} must have the dtype of the input {describe(x)}.")
        out, _ = _geometry((h, wd), filter_hw, strides, dilations, padding)
        if not (_same(out[0], oh) and _same(out[1], ow)):
            raise infer_error(f"input {describe(x)} gives outputs of {out[0]}x{out[1]}, not {describe(g)}.")
        return x.dtype, (filter_hw[0], filter_hw[1], c, o)

    def forward(x, g, *, filter_hw, strides, dilations, padding):
        out, pads = _runtime_geometry(x.shape[1:3], filter_hw, strides, dilations, padding,
                                      x.shape[0] * max(x.shape[3], g.shape[3]))
        if tuple(g.shape[1:3]) != out:
            raise ValueError(f"input of shape {list(x.shape)} gives outputs of {out}, not {list(g.shape)}.")
        return kernels["conv2d_backprop_filter"](x, g, tuple(filter_hw), strides, dilations, pads)

    def vjp(gw, out, x, g, *, filter_hw, **attrs):
        return _input_grad(g, gw, x, attrs), apply("Conv2D", x, gw, **attrs)


def _pool_infer(x: Tensor, ksize, strides, padding):
    n, h, w, c = _check_image(x, "input")
    out, _ = _geometry((h, w), ksize, strides, (1, 1), padding)
    _check_fits(out, (h, w), ksize, (1, 1), padding)
    return x.dtype, (n, out[0], out[1], c)


@register_op
class MaxPool:
    """Maximum over each window; padding never wins."""

    def infer(x, *, ksize, strides, padding):
        return _pool_infer(x, ksize, strides, padding)

    def forward(x, *, ksize, strides, padding):
        _, pads = _runtime_geometry(x.shape[1:3], ksize, strides, (1, 1), padding, x.shape[0] * x.shape[3])
        return kernels["max_pool"](x, ksize, strides, pads)

    def vjp(g, out, x, **attrs):
        return (apply("MaxPoolGrad", x, out, g, **attrs),)


@register_op
class MaxPoolGrad:
    """Gradient of MaxPool: each output's gradient goes to its window's (first) maximum."""

    differentiable = False

    def infer(x, out, g, *, ksize, strides, padding):
        return x.dtype, x.shape

    def forward(x, out, g, *, ksize, strides, padding):
        _, pads = _runtime_geometry(x.shape[1:3], ksize, strides, (1, 1), padding, x.shape[0] * x.shape[3])
        return kernels["max_pool_grad"](x, out, g, ksize, strides, pads)


@register_op
class AvgPool:
    """Mean over each window's real pixels."""

    def infer(x, *, ksize, strides, padding):
        return _pool_infer(x, ksize, strides, padding)

    def forward(x, *, ksize, strides, padding):
        _, pads = _runtime_geometry(x.shape[1:3], ksize, strides, (1, 1), padding, x.shape[0] * x.shape[3])
        return kernels["avg_pool"](x, ksize, strides, pads)

    def vjp(g, out, x, **attrs):
        hw, extra = _size_of(x)
        return (apply("AvgPoolGrad", g, *extra, input_hw=hw, **attrs),)


@register_op
class AvgPoolGrad:
    """Gradient of AvgPool (linear in the gradient, so its own gradient is AvgPool)."""

    def infer(g, sizes=None, *, input_hw, ksize, strides, padding):
        n, _, _, c = _check_image(g, "gradient")
        return g.dtype, (n, input_hw[0], input_hw[1], c)

    def forward(g, sizes=None, *, input_hw, ksize, strides, padding):
        hw = _sizes_hw(sizes, input_hw)
        out, pads = _runtime_geometry(hw, ksize, strides, (1, 1), padding, g.shape[0] * g.shape[3])
        if tuple(g.shape[1:3]) != out:
            raise ValueError(f"an input of size {hw[0]}x{hw[1]} pools to {out}, not {list(g.shape)}.")
        return kernels["avg_pool_grad"](g, hw, ksize, strides, pads)

    def vjp(gg, out, g, sizes=None, *, input_hw, **attrs):
        grad = apply("AvgPool", gg, **attrs)
        return (grad,) if sizes is None else (grad, None)


# -- public functions --------------------------------------------------------------------------------
def _nhwc(data_format: str, fn: str) -> None:
    if data_format != "NHWC":
        raise GraphError(f"{fn}: data_format {data_format!r} is not supported; expected one of ['NHWC'].")


def conv2d(
    x: Any,
    filters: Any,
    strides: Any = 1,
    padding: Any = "SAME",
    dilations: Any = 1,
    data_format: str = "NHWC",
    name: str | None = None,
) -> Tensor:
    """2-D convolution of NHWC images, as ``tf.nn.conv2d``.

    Args:
        x: ``[batch, height, width, in_channels]`` float tensor.
        filters: ``[height, width, in_channels, out_channels]`` tensor or Variable, same dtype.
        strides: an int, ``[sh, sw]`` or ``[1, sh, sw, 1]``.
        padding: ``"SAME"``, ``"VALID"`` or ``[[top, bottom], [left, right]]``.
        dilations: an int, ``[dh, dw]`` or ``[1, dh, dw, 1]``.
        data_format: only ``"NHWC"``.
        name: node name.

    Returns:
        ``[batch, out_height, out_width, out_channels]``.

    Raises:
        GraphError: ranks, dtypes or channel counts do not fit (the message names both shapes).

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     x = hk.placeholder(hk.float32, [None, 28, 28, 3])
    ...     y = hk.nn.conv2d(x, hk.constant(np.ones((3, 3, 3, 8), np.float32)), strides=2)
    >>> y.shape
    (None, 14, 14, 8)
    """
    _nhwc(data_format, "conv2d")
    attrs = {
        "strides": _pair(strides, "strides", "conv2d"),
        "dilations": _pair(dilations, "dilations", "conv2d"),
        "padding": _padding(padding, "conv2d"),
    }
    return apply("Conv2D", x, filters, name=name or "Conv2D", **attrs)


def conv2d_transpose(
    x: Any,
    filters: Any,
    output_shape: Any = None,
    strides: Any = 1,
    padding: Any = "SAME",
    dilations: Any = 1,
    data_format: str = "NHWC",
    name: str | None = None,
) -> Tensor:
    """The transposed convolution (gradient of :func:`conv2d` with respect to its input), as in TF.

    Args:
        x: ``[batch, height, width, in_channels]`` float tensor.
        filters: ``[height, width, out_channels, in_channels]`` (note the order, as in TF).
        output_shape: ``[batch, out_height, out_width, out_channels]`` as a list (entries may be None
            for the batch) or a [4] int tensor; by default ``height * stride`` for ``SAME`` and
            ``(height - 1) * stride + dilated kernel height`` for ``VALID``, as Keras computes it.
        strides, padding, dilations, data_format, name: as in :func:`conv2d`.

    Returns:
        A tensor of ``output_shape``.

    Raises:
        GraphError: the output shape does not convolve back to the shape of ``x``.
    """
    _nhwc(data_format, "conv2d_transpose")
    s = _pair(strides, "strides", "conv2d_transpose")
    d = _pair(dilations, "dilations", "conv2d_transpose")
    pad = _padding(padding, "conv2d_transpose")
    xt = as_tensor(x)
    wt = as_tensor(filters, graph=xt.graph)
    extra: list[Tensor] = []
    hw: list[int | None]
    if isinstance(output_shape, Tensor):
        hw = [None, None]
        extra = [output_shape]
    elif output_shape is not None:
        if not isinstance(output_shape, (list, tuple)) or len(output_shape) != 4:
            raise GraphError(f"conv2d_transpose: output_shape must have 4 entries (NHWC); got {output_shape!r}.")
        hw = [None if v is None else int(v) for v in output_shape[1:3]]
        c = output_shape[3]
        wc = wt.shape[2] if wt.shape is not None else None
        if c is not None and not _same(int(c), wc):
            raise GraphError(
                f"conv2d_transpose: output_shape {list(output_shape)} has {c} channels but filters "
                f"{describe(wt)} produce {wc} (filters are [height, width, out_channels, in_channels])."
            )
        if None in hw:
            raise GraphError(f"conv2d_transpose: output_shape {list(output_shape)} needs a known height and width.")
    else:
        hw = []
        for a in range(2):
            size = xt.shape[1 + a] if xt.shape is not None else None
            k = wt.shape[a] if wt.shape is not None else None
            if size is None or k is None or isinstance(pad, list):
                raise GraphError(
                    f"conv2d_transpose: pass output_shape; it cannot be derived from input {describe(xt)}, "
                    f"filters {describe(wt)} and padding {pad!r}."
                )
            hw.append(size * s[a] if pad == "SAME" else (size - 1) * s[a] + (k - 1) * d[a] + 1)
    return apply(
        "Conv2DBackpropInput", xt, wt, *extra, name=name or "conv2d_transpose",
        input_hw=hw, strides=s, dilations=d, padding=pad,
    )


def _pool(op: str, fn: str, x, ksize, strides, padding, data_format, name) -> Tensor:
    _nhwc(data_format, fn)
    k = _pair(ksize, "ksize", fn)
    s = k if strides is None else _pair(strides, "strides", fn)
    return apply(op, x, name=name or op, ksize=k, strides=s, padding=_padding(padding, fn, explicit=False))


def max_pool2d(
    x: Any, ksize: Any, strides: Any = None, padding: str = "VALID", data_format: str = "NHWC", name: str | None = None
) -> Tensor:
    """Max pooling of NHWC images, as ``tf.nn.max_pool2d`` (``strides`` default to ``ksize``).

    Args:
        x: ``[batch, height, width, channels]`` float tensor.
        ksize: window size: an int, ``[kh, kw]`` or ``[1, kh, kw, 1]``.
        strides: like ``ksize``; None means ``ksize`` (non-overlapping windows).
        padding: ``"SAME"`` or ``"VALID"``; padded pixels never win.
        data_format: only ``"NHWC"``.
        name: node name.

    Returns:
        The pooled tensor; its gradient flows to the maximum of each window.
    """
    return _pool("MaxPool", "max_pool2d", x, ksize, strides, padding, data_format, name)


def avg_pool2d(
    x: Any, ksize: Any, strides: Any = None, padding: str = "VALID", data_format: str = "NHWC", name: str | None = None
) -> Tensor:
    """Average pooling of NHWC images, as ``tf.nn.avg_pool2d``; ``SAME`` padding is not counted.

    Args:
        x, ksize, strides, padding, data_format, name: as in :func:`max_pool2d`.

    Returns:
        The pooled tensor.
    """
    return _pool("AvgPool", "avg_pool2d", x, ksize, strides, padding, data_format, name)


max_pool = max_pool2d
avg_pool = avg_pool2d
