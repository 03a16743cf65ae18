"""Translators of ONNX's neural-network ops: convolutions, pools, normalisations, activations, Gemm, MatMul."""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import constant
from hubkit.importers.onnx.registry import translates
from hubkit.ops import api as K
from hubkit.ops.registry import apply

__all__: list[str] = []


def _window_attrs(ctx, node, attrs: dict[str, Any], kernel: list[int]) -> dict[str, Any]:
    n = len(kernel)
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    return {
        "strides": [int(s) for s in attrs.get("strides", [1] * n)],
        "pads": [int(p) for p in attrs.get("pads", [0] * (2 * n))],
        "auto_pad": auto_pad,
    }


@translates("Conv")
def conv(ctx, node, attrs):
    x, w = ctx.t(node.input[0]), ctx.t(node.input[1])
    if w.shape is None or None in w.shape:
        raise GraphError(f"the filter {node.input[1]!r} must have a static shape.")
    kernel = list(w.shape[2:])
    if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != kernel:
        raise GraphError(f"kernel_shape {list(attrs['kernel_shape'])} differs from the filter's {kernel}.")
    wa = _window_attrs(ctx, node, attrs, kernel)
    b = [ctx.t(node.input[2])] if len(node.input) > 2 and node.input[2] else []
    return [apply("OnnxConv", x, w, *b, dilations=[int(d) for d in attrs.get("dilations", [1] * len(kernel))],
                  group=int(attrs.get("group", 1)), **wa)]


@translates("ConvTranspose")
def conv_transpose(ctx, node, attrs):
    x, w = ctx.t(node.input[0]), ctx.t(node.input[1])
    kernel = list(w.shape[2:])
    wa = _window_attrs(ctx, node, attrs, kernel)
    b = [ctx.t(node.input[2])] if len(node.input) > 2 and node.input[2] else []
    return [apply("OnnxConvTranspose", x, w, *b, dilations=[int(d) for d in attrs.get("dilations", [1] * len(kernel))],
                  group=int(attrs.get("group", 1)), output_padding=[int(p) for p in attrs.get("output_padding", [])],
                  output_shape=[int(p) for p in attrs.get("output_shape", [])], **wa)]


@translates("MaxPool")
def max_pool(ctx, node, attrs):
    if len(node.output) > 1 and node.output[1]:
        raise GraphError("the Indices output of MaxPool is not supported.")
    if int(attrs.get("storage_order", 0)):
        raise GraphError("storage_order=1 is not supported.")
    kernel = [int(k) for k in attrs["kernel_shape"]]
    wa = _window_attrs(ctx, node, attrs, kernel)
    return [apply("OnnxMaxPool", ctx.t(node.input[0]), kernel_shape=kernel, ceil_mode=bool(attrs.get("ceil_mode", 0)),
                  dilations=[int(d) for d in attrs.get("dilations", [1] * len(kernel))], **wa)]


@translates("AveragePool")
def average_pool(ctx, node, attrs):
    kernel = [int(k) for k in attrs["kernel_shape"]]
    if any(int(d) != 1 for d in attrs.get("dilations", [])):
        raise GraphError("AveragePool with dilations is not supported.")
    wa = _window_attrs(ctx, node, attrs, kernel)
    return [apply("OnnxAveragePool", ctx.t(node.input[0]), kernel_shape=kernel,
                  ceil_mode=bool(attrs.get("ceil_mode", 0)),
                  count_include_pad=bool(attrs.get("count_include_pad", 0)), **wa)]


def _spatial_axes(x) -> list[int]:
    if x.ndim is None:
        raise GraphError(f"the input {x.name!r} needs a known rank.")
    return list(range(2, x.ndim))


@translates("GlobalAveragePool")
def global_average_pool(ctx, node, attrs):
    x = ctx.t(node.input[0])
    return [K.reduce_mean(x, axis=_spatial_axes(x), keepdims=True)]


@translates("GlobalMaxPool")
def global_max_pool(ctx, node, attrs):
    x = ctx.t(node.input[0])
    return [K.reduce_max(x, axis=_spatial_axes(x), keepdims=True)]


@translates("LRN")
def lrn(ctx, node, attrs):
    return [apply("OnnxLRN", ctx.t(node.input[0]), size=int(attrs["size"]), alpha=float(attrs.get("alpha", 1e-4)),
                  beta=float(attrs.get("beta", 0.75)), bias=float(attrs.get("bias", 1.0)))]


def _per_channel(t, rank: int):
    """A ``(C,)`` parameter shaped ``(C, 1, ..., 1)`` to broadcast over ``(N, C, *spatial)``."""
    return K.reshape(t, [-1] + [1] * (rank - 2))


@translates("BatchNormalization")
def batch_norm(ctx, node, attrs):
    if int(attrs.get("training_mode", 0)) or any(o for o in node.output[1:]):
        raise GraphError("only inference-mode BatchNormalization (one output) is supported.")
    x = ctx.t(node.input[0])
    if x.ndim is None:
        raise GraphError(f"the input {x.name!r} needs a known rank.")
    scale, bias, mean, var = (_per_channel(ctx.t(n), x.ndim) for n in node.input[1:5])
    eps = float(attrs.get("epsilon", 1e-5))
    inv = K.multiply(scale, K.rsqrt(K.add(var, np.asarray(eps, dtype=x.dtype.np_dtype))))
    return [K.add(K.multiply(K.subtract(x, mean), inv), bias)]


@translates("InstanceNormalization")
def instance_norm(ctx, node, attrs):
    x = ctx.t(node.input[0])
    axes = _spatial_axes(x)
    eps = float(attrs.get("epsilon", 1e-5))
    mean, var = K.moments(x, axes, keepdims=True)
    y = K.multiply(K.subtract(x, mean), K.rsqrt(K.add(var, np.asarray(eps, dtype=x.dtype.np_dtype))))
    return [K.add(K.multiply(y, _per_channel(ctx.t(node.input[1]), x.ndim)), _per_channel(ctx.t(node.input[2]), x.ndim))]


@translates("LayerNormalization")
def layer_norm(ctx, node, attrs):
    if any(o for o in node.output[1:]):
        raise GraphError("the Mean and InvStdDev outputs of LayerNormalization are not supported.")
    x = ctx.t(node.input[0])
    if x.ndim is None:
        raise GraphError(f"the input {x.name!r} needs a known rank.")
    axis = int(attrs.get("axis", -1)) % x.ndim
    eps = float(attrs.get("epsilon", 1e-5))
    mean, var = K.moments(x, list(range(axis, x.ndim)), keepdims=True)
    y = K.multiply(K.subtract(x, mean), K.rsqrt(K.add(var, np.asarray(eps, dtype=x.dtype.np_dtype))))
    y = K.multiply(y, ctx.t(node.input[1]))
    if len(node.input) > 2 and node.input[2]:
        y = K.add(y, ctx.t(node.input[2]))
    return [y]


@translates("Gemm")
def gemm(ctx, node, attrs):
    a, b = ctx.t(node.input[0]), ctx.t(node.input[1])
    y = K.matmul(a, b, transpose_a=bool(attrs.get("transA", 0)), transpose_b=bool(attrs.get("transB", 0)))
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if alpha != 1.0:
        y = K.multiply(y, np.asarray(alpha, dtype=a.dtype.np_dtype))
    if len(node.input) > 2 and node.input[2] and beta != 0.0:
        c = ctx.t(node.input[2])
        if beta != 1.0:
            c = K.multiply(c, np.asarray(beta, dtype=a.dtype.np_dtype))
        y = K.add(y, c)
    return [y]


@translates("MatMul")
def matmul(ctx, node, attrs):
    a, b = ctx.t(node.input[0]), ctx.t(node.input[1])
    if a.ndim is None or b.ndim is None:
        raise GraphError("MatMul needs operands of known rank.")
    squeeze = []
    if a.ndim == 1:
        a = K.expand_dims(a, 0)
        squeeze.append(-2)
    if b.ndim == 1:
        b = K.expand_dims(b, -1)
        squeeze.append(-1)
    y = K.matmul(a, b)
    return [K.squeeze(y, axis=squeeze) if squeeze else y]


@translates("Einsum")
def einsum(ctx, node, attrs):
    eq = attrs["equation"]
    eq = eq.decode() if isinstance(eq, bytes) else eq
    eq = eq.replace(" ", "")
    if "->" not in eq and "..." not in eq:  # implicit output: the letters seen once, sorted (numpy's rule)
        letters = eq.replace(",", "")
        eq += "->" + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return [apply("OnnxEinsum", *[ctx.t(n) for n in node.input], equation=eq)]


# -- activations --------------------------------------------------------------------------------------
def _unary(fn):
    return lambda ctx, node, attrs: [fn(ctx.t(node.input[0]))]


for _op, _fn in {"Relu": K.relu, "Sigmoid": K.sigmoid, "Tanh": K.tanh, "Erf": K.erf}.items():
    translates(_op)(_unary(_fn))


@translates("LeakyRelu")
def leaky_relu(ctx, node, attrs):
    return [K.leaky_relu(ctx.t(node.input[0]), alpha=float(attrs.get("alpha", 0.01)))]


def _scalar(x, v: float):
    return np.asarray(v, dtype=x.dtype.np_dtype)


def _hard_sigmoid(x, alpha: float, beta: float):
    y = K.add(K.multiply(x, _scalar(x, alpha)), _scalar(x, beta))
    return K.minimum(K.maximum(y, _scalar(x, 0.0)), _scalar(x, 1.0))


@translates("HardSigmoid")
def hard_sigmoid(ctx, node, attrs):
    x = ctx.t(node.input[0])
    return [_hard_sigmoid(x, float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5)))]


@translates("HardSwish")
def hard_swish(ctx, node, attrs):
    x = ctx.t(node.input[0])
    return [K.multiply(x, _hard_sigmoid(x, 1.0 / 6.0, 0.5))]


@translates("Gelu")
def gelu(ctx, node, attrs):
    approx = attrs.get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    return [K.gelu(ctx.t(node.input[0]), approximate=approx == "tanh")]


@translates("Clip")
def clip(ctx, node, attrs):
    x = ctx.t(node.input[0])
    y = x
    if len(node.input) > 1 and node.input[1]:
        y = K.maximum(y, _clip_bound(ctx, node.input[1]))
    if len(node.input) > 2 and node.input[2]:
        y = K.minimum(y, _clip_bound(ctx, node.input[2]))
    return [y if y is not x else K.identity(x)]


def _clip_bound(ctx, name: str):
    """A bound of ``Clip``: a constant when it is an initializer (so the plan optimiser sees ``Clip(0, 6)``
    after a convolution as a ReLU6 and fuses it), else the tensor computed at run time."""
    if ctx.known(name) is None and ctx.has(name):
        try:
            return constant(ctx.value(name, "A Clip bound"))
        except GraphError:  # computed at run time
            pass
    return ctx.t(name)


@translates("Softmax", "LogSoftmax")
def softmax(ctx, node, attrs):
    fn = K.softmax if node.op_type == "Softmax" else K.log_softmax
    return [fn(ctx.t(node.input[0]), axis=int(attrs.get("axis", -1)))]


@translates("Dropout")
def dropout(ctx, node, attrs):
    x = ctx.t(node.input[0])
    training = ctx.known(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and (training is None or bool(training)):
        raise GraphError("Dropout in training mode is not supported; hubkit imports models for inference.")
    outs = [K.identity(x)]
    if len(node.output) > 1 and node.output[1]:
        zeros = K.zeros_like(x)
        outs.append(K.greater_equal(zeros, zeros))  # inference keeps every element
    return outs
