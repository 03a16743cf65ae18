"""TF-exact convolution, pooling and batch normalisation (NHWC).

``Conv2D`` and ``DepthwiseConv2dNative`` take 4-vector ``strides`` and ``dilations`` and ``SAME``,
``VALID`` or ``EXPLICIT`` padding (``SAME`` puts the odd padding pixel after, as TF does); pools count
only real pixels in ``SAME`` averages; ``FusedBatchNorm{,V2,V3}`` in training mode normalises with the
batch's biased variance and outputs the unbiased one (what the moving average takes). Each forward
kernel loops over the filter taps and does one matrix product per tap, so its gradient kernels are
the same loops run backwards.
"""

from __future__ import annotations

import numpy as np

from hubkit.graph import format_shape
from hubkit.ops._helpers import check_output_size
from hubkit.ops.registry import apply, infer_error, register_op
from hubkit.ops.tf_array import TfRuntimeError

__all__ = ["conv_output_size"]


def _pair(values, what: str) -> tuple[int, int]:
    v = [int(x) for x in values]
    if len(v) != 4 or v[0] != 1 or v[3] != 1:
        raise infer_error(f"{what} must be [1, h, w, 1] (NHWC), got {v}.")
    if v[1] < 1 or v[2] < 1:  # ksize, strides and dilations; a window of 0 or less grows its output
        raise infer_error(f"{what} must be >= 1, got {v}.")
    return v[1], v[2]


def _pads_1d(padding: str, size: int, k: int, s: int, d: int, explicit: tuple[int, int]) -> tuple[int, int]:
    ek = (k - 1) * d + 1
    if padding == "VALID":
        return 0, 0
    if padding == "SAME":
        out = -(-size // s)
        total = max((out - 1) * s + ek - size, 0)
        return total // 2, total - total // 2
    return explicit


def conv_output_size(padding: str, size: int | None, k: int | None, s: int, d: int,
                     explicit: tuple[int, int] = (0, 0)) -> int | None:
    """Output length of one spatial dimension (None when unknown)."""
    if size is None or k is None:
        return None
    if padding == "SAME":
        return -(-size // s)
    before, after = _pads_1d(padding, size, k, s, d, explicit)
    return max((size + before + after - (k - 1) * d - 1) // s + 1, 0)


def _explicit(attrs) -> tuple[tuple[int, int], tuple[int, int]]:
    p = [int(x) for x in attrs.get("explicit_paddings") or ()]
    if attrs.get("padding") == "EXPLICIT":
        if len(p) != 8:
            raise infer_error(f"EXPLICIT padding needs 8 explicit_paddings, got {p}.")
        if min(p) < 0 or any(p[i] for i in (0, 1, 6, 7)):  # as TF: a negative pad misplaced the input in fused kernels
            raise infer_error(f"explicit_paddings must be >= 0 and 0 for the batch and channels, got {p}.")
        return (p[2], p[3]), (p[4], p[5])
    return (0, 0), (0, 0)


def _check_padding(padding: str) -> None:
    if padding not in ("SAME", "VALID", "EXPLICIT"):
        raise infer_error(f"unknown padding {padding!r}; expected one of ['EXPLICIT', 'SAME', 'VALID'].")


class _Geometry:
    """Padding and output size of a windowed op on a concrete input."""

    def __init__(self, x_shape, kh, kw, attrs, ksize_from_strides=False, channels_out=1):
        self.sh, self.sw = _pair(attrs["strides"], "strides")
        self.dh, self.dw = _pair(attrs.get("dilations") or [1, 1, 1, 1], "dilations")
        eh, ew = _explicit(attrs)
        padding = attrs["padding"]
        if kh < 1 or kw < 1:
            raise infer_error(f"the window {kh}x{kw} must be at least 1x1.")
        self.kh, self.kw = kh, kw
        self.ph = _pads_1d(padding, x_shape[1], kh, self.sh, self.dh, eh)
        self.pw = _pads_1d(padding, x_shape[2], kw, self.sw, self.dw, ew)
        self.oh = conv_output_size(padding, x_shape[1], kh, self.sh, self.dh, eh)
        self.ow = conv_output_size(padding, x_shape[2], kw, self.sw, self.dw, ew)
        # explicit pads from a module file multiply sizes as a Pad does: the padded input and the output are bounded
        planes = x_shape[0] * max(x_shape[3], channels_out)
        check_output_size([planes, x_shape[1] + sum(self.ph), x_shape[2] + sum(self.pw)], "the padded input of a window op")
        check_output_size([planes, max(self.oh, 0), max(self.ow, 0)], "a window op")

    def pad(self, x, value=0.0):
        return np.pad(x, ((0, 0), self.ph, self.pw, (0, 0)), constant_values=value)

    def taps(self):
        for i in range(self.kh):
            for j in range(self.kw):
                hs = slice(i * self.dh, i * self.dh + self.sh * (self.oh - 1) + 1, self.sh)
                ws = slice(j * self.dw, j * self.dw + self.sw * (self.ow - 1) + 1, self.sw)
                yield i, j, (slice(None), hs, ws, slice(None))

    def crop(self, xp, shape):
        return xp[:, self.ph[0]:self.ph[0] + shape[1], self.pw[0]:self.pw[0] + shape[2], :]


def _conv_infer(x, w, depthwise, attrs):
    _check_padding(attrs["padding"])
    if attrs.get("data_format", "NHWC") != "NHWC":
        raise infer_error(f"only NHWC is supported, got {attrs.get('data_format')!r}.")
    sh, sw = _pair(attrs["strides"], "strides")
    dh, dw = _pair(attrs.get("dilations") or [1, 1, 1, 1], "dilations")
    eh, ew = _explicit(attrs)
    if (x.shape is not None and len(x.shape) != 4) or (w.shape is not None and len(w.shape) != 4):
        raise infer_error(f"needs a 4-D input and filter, got {format_shape(x.shape)} and {format_shape(w.shape)}.")
    if x.dtype is not w.dtype:
        raise infer_error(f"input and filter differ in dtype: {x.dtype.name} and {w.dtype.name}.")
    xs = x.shape or (None,) * 4
    ws = w.shape or (None,) * 4
    if any(k is not None and k < 1 for k in ws[:2]):
        raise infer_error(f"the filter {format_shape(ws)} must be at least 1x1.")
    if xs[3] is not None and ws[2] is not None and xs[3] != ws[2]:
        raise infer_error(f"input {format_shape(xs)} has {xs[3]} channels; the filter {format_shape(ws)} wants {ws[2]}.")
    if depthwise:
        cout = None if ws[2] is None or ws[3] is None else ws[2] * ws[3]
    else:
        cout = ws[3]
    return x.dtype, (xs[0], conv_output_size(attrs["padding"], xs[1], ws[0], sh, dh, eh),
                     conv_output_size(attrs["padding"], xs[2], ws[1], sw, dw, ew), cout)


def _conv(x, w, depthwise, attrs):
    cout = x.shape[3] * w.shape[3] if depthwise else w.shape[3]
    geo = _Geometry(x.shape, w.shape[0], w.shape[1], attrs, channels_out=cout)
    n = x.shape[0]
    if geo.oh <= 0 or geo.ow <= 0:
        return np.zeros((n, max(geo.oh, 0), max(geo.ow, 0), cout), dtype=np.result_type(x, w))
    xp = geo.pad(x)
    ekh, ekw = (geo.kh - 1) * geo.dh + 1, (geo.kw - 1) * geo.dw + 1
    # every window at once: [n, oh, ow, c, kh, kw], one matrix product (im2col without a Python loop over taps)
    windows = np.lib.stride_tricks.sliding_window_view(xp, (ekh, ekw), axis=(1, 2))
    windows = windows[:, : geo.sh * (geo.oh - 1) + 1 : geo.sh, : geo.sw * (geo.ow - 1) + 1 : geo.sw, :, :: geo.dh,
                      :: geo.dw]
    if depthwise:
        out = np.einsum("nhwckl,klcm->nhwcm", windows, w, optimize=True)
        return out.reshape(n, geo.oh, geo.ow, cout)
    return np.tensordot(windows, w, axes=([3, 4, 5], [2, 0, 1]))


def _conv_backprop_input(g, x, w, depthwise, attrs):
    geo = _Geometry(x.shape, w.shape[0], w.shape[1], attrs)
    dxp = np.zeros(geo.pad(x).shape, dtype=g.dtype)
    if depthwise:
        g = g.reshape(g.shape[:3] + w.shape[2:])
    for i, j, sl in geo.taps():
        dxp[sl] += (g * w[i, j]).sum(-1) if depthwise else g @ w[i, j].T
    return geo.crop(dxp, x.shape)


def _conv_backprop_filter(g, x, w, depthwise, attrs):
    geo = _Geometry(x.shape, w.shape[0], w.shape[1], attrs)
    xp = geo.pad(x)
    dw = np.zeros(w.shape, dtype=g.dtype)
    if depthwise:
        g = g.reshape(g.shape[:3] + w.shape[2:])
    for i, j, sl in geo.taps():
        patch = xp[sl]
        if depthwise:
            dw[i, j] = np.einsum("nhwc,nhwcm->cm", patch, g)
        else:
            dw[i, j] = np.tensordot(patch, g, axes=([0, 1, 2], [0, 1, 2]))
    return dw


@register_op
class TfConv2D:
    """TF ``Conv2D`` (``depthwise=False``) and ``DepthwiseConv2dNative`` (``depthwise=True``), NHWC."""

    def infer(x, w, *, depthwise=False, **attrs):
        return _conv_infer(x, w, depthwise, attrs)

    def forward(x, w, *, depthwise=False, **attrs):
        return _conv(x, w, depthwise, attrs)

    def vjp(g, out, x, w, *, depthwise=False, **attrs):
        return (apply("TfConv2DBackprop", g, x, w, wrt="input", depthwise=depthwise, **attrs),
                apply("TfConv2DBackprop", g, x, w, wrt="filter", depthwise=depthwise, **attrs))


@register_op
class TfConv2DBackprop:
    """Gradient of TfConv2D with respect to its input (``wrt="input"``) or its filter (``wrt="filter"``)."""

    differentiable = False

    def infer(g, x, w, *, wrt, depthwise=False, **attrs):
        return g.dtype, x.shape if wrt == "input" else w.shape

    def forward(g, x, w, *, wrt, depthwise=False, **attrs):
        if wrt == "input":
            return _conv_backprop_input(g, x, w, depthwise, attrs)
        return _conv_backprop_filter(g, x, w, depthwise, attrs)


# -- pooling ---------------------------------------------------------------------------------------------
def _pool_infer(x, attrs):
    _check_padding(attrs["padding"])
    if attrs.get("data_format", "NHWC") != "NHWC":
        raise infer_error(f"only NHWC is supported, got {attrs.get('data_format')!r}.")
    kh, kw = _pair(attrs["ksize"], "ksize")
    sh, sw = _pair(attrs["strides"], "strides")
    eh, ew = _explicit(attrs)
    xs = x.shape or (None,) * 4
    if len(xs) != 4:
        raise infer_error(f"needs a 4-D input, got {format_shape(x.shape)}.")
    return x.dtype, (xs[0], conv_output_size(attrs["padding"], xs[1], kh, sh, 1, eh),
                     conv_output_size(attrs["padding"], xs[2], kw, sw, 1, ew), xs[3])


def _pool_geometry(x_shape, attrs) -> _Geometry:
    kh, kw = _pair(attrs["ksize"], "ksize")
    return _Geometry(x_shape, kh, kw, {**attrs, "dilations": [1, 1, 1, 1]})


def _pool(x, kind, attrs):
    geo = _pool_geometry(x.shape, attrs)
    if kind == "max":
        xp = geo.pad(x, -np.inf)
        out = np.full((x.shape[0], geo.oh, geo.ow, x.shape[3]), -np.inf, dtype=x.dtype)
        for _, _, sl in geo.taps():
            np.maximum(out, xp[sl], out=out)
        return out
    xp = geo.pad(x)
    ones = geo.pad(np.ones((1, x.shape[1], x.shape[2], 1), dtype=x.dtype))
    total = np.zeros((x.shape[0], geo.oh, geo.ow, x.shape[3]), dtype=x.dtype)
    count = np.zeros((1, geo.oh, geo.ow, 1), dtype=x.dtype)
    for _, _, sl in geo.taps():
        total += xp[sl]
        count += ones[sl]
    return total / count


def _pool_grad(g, x, kind, attrs):
    geo = _pool_geometry(x.shape, attrs)
    if kind == "max":
        xp = geo.pad(x, -np.inf)
        best = np.full(g.shape, -np.inf, dtype=x.dtype)
        arg = np.full(g.shape, -1)
        for t, (_, _, sl) in enumerate(geo.taps()):
            better = xp[sl] > best  # strict: the first maximum of a window takes the gradient, as in TF
            best = np.where(better, xp[sl], best)
            arg = np.where(better, t, arg)
        dxp = np.zeros(xp.shape, dtype=g.dtype)
        for t, (_, _, sl) in enumerate(geo.taps()):
            dxp[sl] += np.where(arg == t, g, 0)
        return geo.crop(dxp, x.shape)
    ones = geo.pad(np.ones((1, x.shape[1], x.shape[2], 1), dtype=g.dtype))
    count = np.zeros((1, geo.oh, geo.ow, 1), dtype=g.dtype)
    for _, _, sl in geo.taps():
        count += ones[sl]
    dxp = np.zeros(geo.pad(x).shape, dtype=g.dtype)
    for _, _, sl in geo.taps():
        dxp[sl] += g / count
    return geo.crop(dxp, x.shape)


@register_op
class TfPool:
    """TF ``MaxPool`` and ``AvgPool`` (``kind``), NHWC, 4-vector ``ksize``/``strides``."""

    def infer(x, *, kind, **attrs):
        if kind not in ("avg", "max"):
            raise infer_error(f"unknown pooling {kind!r}; expected one of ['avg', 'max'].")
        return _pool_infer(x, attrs)

    def forward(x, *, kind, **attrs):
        return _pool(x, kind, attrs)

    def vjp(g, out, x, *, kind, **attrs):
        return (apply("TfPoolGrad", g, x, kind=kind, **attrs),)


@register_op
class TfPoolGrad:
    """Gradient of TfPool: max routes each window's gradient to its first maximum, avg spreads it."""

    differentiable = False

    def infer(g, x, *, kind, **attrs):
        return g.dtype, x.shape

    def forward(g, x, *, kind, **attrs):
        return _pool_grad(g, x, kind, attrs)


# -- batch normalisation ---------------------------------------------------------------------------------
_AXES = (0, 1, 2)


@register_op
class TfFusedBatchNorm:
    """TF ``FusedBatchNorm``/``V2``/``V3`` (NHWC): ``y, batch_mean, batch_variance, reserve...``.

    Training mode normalises with the batch mean and biased variance and outputs the unbiased variance
    (blended with the input ones when ``exponential_avg_factor`` < 1); inference mode uses the inputs.
    """

    def infer(x, scale, offset, mean, variance, *, epsilon=1e-4, is_training=True, exponential_avg_factor=1.0,
              data_format="NHWC", num_outputs=5):
        if data_format not in ("NHWC", "NDHWC"):
            raise infer_error(f"only NHWC is supported, got {data_format!r}.")
        c = None if x.shape is None else x.shape[-1]
        vec = (scale.dtype, (c,))
        out = [(x.dtype, x.shape), vec, vec, vec, vec]
        if num_outputs == 6:
            out.append((scale.dtype, (None,)))
        return out

    def forward(x, scale, offset, mean, variance, *, epsilon=1e-4, is_training=True, exponential_avg_factor=1.0,
                data_format="NHWC", num_outputs=5):
        axes = tuple(range(x.ndim - 1))
        if is_training:
            n = x.size // x.shape[-1]
            if n == 0:
                raise TfRuntimeError("FusedBatchNorm in training mode needs a non-empty batch.")
            batch_mean = x.mean(axis=axes, dtype=np.float64)
            batch_var = x.var(axis=axes, dtype=np.float64)
            inv = 1.0 / np.sqrt(batch_var + epsilon)
            y = ((x - batch_mean) * (inv * scale) + offset).astype(x.dtype)
            unbiased = batch_var * n / max(n - 1, 1)
            f = exponential_avg_factor
            if f != 1.0:
                mean_out = (1 - f) * mean + f * batch_mean
                var_out = (1 - f) * variance + f * unbiased
            else:
                mean_out, var_out = batch_mean, unbiased
            outs = [y, mean_out.astype(scale.dtype), var_out.astype(scale.dtype), batch_mean.astype(scale.dtype),
                    batch_var.astype(scale.dtype)]
        else:
            inv = 1.0 / np.sqrt(variance.astype(np.float64) + epsilon)
            mul = (inv * scale).astype(x.dtype)  # per channel, so the big tensor sees one multiply and one add
            add = (offset - mean * inv * scale).astype(x.dtype)
            y = x * mul + add
            outs = [y, mean, variance, mean, variance]
        if num_outputs == 6:
            outs.append(np.zeros(0, dtype=scale.dtype))
        return tuple(outs)

    def vjp(gs, outs, x, scale, offset, mean, variance, *, epsilon=1e-4, is_training=True,
            exponential_avg_factor=1.0, data_format="NHWC", num_outputs=5):
        g = gs[0]
        if g is None:
            return None, None, None, None, None
        dx, dscale, doffset = (apply("TfFusedBatchNormGrad", g, x, scale, mean, variance, wrt=w, epsilon=epsilon,
                                     is_training=is_training) for w in ("x", "scale", "offset"))
        return dx, dscale, doffset, None, None


@register_op
class TfFusedBatchNormGrad:
    """One gradient (``wrt`` in x/scale/offset) of TfFusedBatchNorm's ``y``."""

    differentiable = False

    def infer(g, x, scale, mean, variance, *, wrt, epsilon, is_training):
        return g.dtype, x.shape if wrt == "x" else scale.shape

    def forward(g, x, scale, mean, variance, *, wrt, epsilon, is_training):
        axes = tuple(range(x.ndim - 1))
        if wrt == "offset":
            return g.sum(axis=axes).astype(g.dtype)
        if is_training:
            mu = x.mean(axis=axes, dtype=np.float64)
            var = x.var(axis=axes, dtype=np.float64)
        else:
            mu, var = mean.astype(np.float64), variance.astype(np.float64)
        inv = 1.0 / np.sqrt(var + epsilon)
        xhat = (x - mu) * inv
        if wrt == "scale":
            return (g * xhat).sum(axis=axes).astype(g.dtype)
        if not is_training:
            return (g * (scale * inv)).astype(g.dtype)
        n = x.size // x.shape[-1]
        dxhat = g * scale
        dx = inv / n * (n * dxhat - dxhat.sum(axis=axes) - xhat * (dxhat * xhat).sum(axis=axes))
        return dx.astype(g.dtype)
