"""Epilogues of fused linear steps: ``out = act(out + bias)`` written in place, one pass over ``out``.

A fused ``MatMul``/``Conv2D`` + ``BiasAdd`` + activation step (``hubkit/runtime/optimize.py``)
calls :func:`bias_act_` on the GEMM's fresh output (the whole output after one GEMM, or each
cache-sized block of a convolution right after that block's GEMM). The Numba kernel does the bias
and the activation in one read and one write of each element; NumPy needs two or three passes.
Both give exactly the values of the separate ``BiasAdd`` and ``Relu``/``Relu6`` ops (the same
float additions, and NaN propagated as ``np.maximum``/``np.clip`` do).

:func:`activate` is that activation of one value, a :func:`hubkit.ops._numba.helper` that the fused
kernels' epilogues call (here, in ``_small_linear.py`` and ``conv_nchw.py``), compiled into each.
"""

from __future__ import annotations

import numpy as np

from hubkit.ops import _numba

__all__ = ["ACTIVATIONS", "activate", "bias_act_"]

NONE, RELU, RELU6 = 0, 1, 2
ACTIVATIONS = {None: NONE, "Relu": RELU, "Relu6": RELU6}
"""Activation op name (None: no activation) -> epilogue code."""

_NUMBA_DTYPES = _numba.FLOAT_DTYPES
_NO_BIAS = {dt: np.empty(0, dt) for dt in _NUMBA_DTYPES}  # read-only use: the kernel never writes its bias


@_numba.helper
def activate(v, act):
    """The activation ``act`` (:data:`NONE`, :data:`RELU`, :data:`RELU6`) of the float ``v``, as the ops compute it.

    ``np.maximum(v, 0)`` keeps NaN and turns -0.0 into 0.0; ``np.clip(v, 0, 6)`` keeps NaN and -0.0.
    """
    zero = type(v)(0)  # of v's type: a float32 stays float32
    if act == RELU:
        if v <= zero:
            v = zero
    elif act == RELU6:
        six = type(v)(6)
        if v < zero:
            v = zero
        elif v > six:
            v = six
    return v


def bias_act_kernel(out, bias, act):  # pragma: no cover - compiled by Numba
    """``out[i, j] = act(out[i, j] + bias[j])`` over a C-contiguous 2-D ``out`` (``bias`` may be empty)."""
    rows, cols = out.shape
    has_bias = bias.shape[0] > 0
    for i in range(rows):
        row = out[i]
        for j in range(cols):
            row[j] = activate(row[j] + bias[j] if has_bias else row[j], act)


def bias_act_(out: np.ndarray, bias: np.ndarray | None, act: int) -> np.ndarray:
    """Applies the epilogue to ``out`` in place and returns it.

    Args:
        out: a fresh, C-contiguous array whose last axis is the bias axis (owned by the caller).
        bias: a 1-D array as long as ``out``'s last axis, or None.
        act: :data:`NONE`, :data:`RELU` or :data:`RELU6`.
    """
    if out.size == 0:
        return out
    if out.dtype in _NUMBA_DTYPES and out.flags.c_contiguous and (bias is None or bias.dtype == out.dtype):
        fast = _numba.kernel(bias_act_kernel)
        if fast is not None:
            b = _NO_BIAS[out.dtype] if bias is None else bias if bias.flags.c_contiguous else np.ascontiguousarray(bias)
            fast(out if out.ndim == 2 else out.reshape(-1, out.shape[-1]), b, act)
            return out
    if bias is not None:
        np.add(out, bias, out=out)
    if act == RELU:
        np.maximum(out, 0, out=out)
    elif act == RELU6:
        np.clip(out, 0, 6, out=out)
    return out
