"""Plan rewrites for the non-convolution steps of imported ONNX CNNs: pools and LRN as one-pass kernels.

Called by :func:`hubkit.runtime.optimize.optimize_plan` after the convolution rewrites. Each 2-D
``OnnxMaxPool`` and ``OnnxAveragePool`` step (an ``(N, C, H, W)`` input of known rank) and ``OnnxLRN``
with beta 0.75
runs a Numba kernel of :mod:`hubkit.ops.pool_nchw` instead of its NumPy ``forward``, which pads a
copy of the input and makes one pass over the whole tensor per window tap (MaxPool was ~15% of
SqueezeNet's and Inception v1's time, LRN 9-14% of Inception's). The step falls back to the op's
own ``forward`` when Numba is off or the dtype is not float32/float64. Equalities: max and average
pools exact, LRN within a few float32 ulps (``powf``), see :mod:`hubkit.ops.pool_nchw`.

``HUBKIT_OPTIMIZE_POOL=0`` leaves these steps as they are (to measure the rewrite against the
NumPy kernels in one process; the other rewrites still apply).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from hubkit.ops import pool_nchw
from hubkit.ops.onnx_conv import check_window_sizes, window_geometry

__all__ = ["PoolStep", "rewrite_pool_plan"]

_OPS = frozenset({"OnnxMaxPool", "OnnxAveragePool", "OnnxLRN"})


class PoolStep:
    """The kernel of a rewritten pool or LRN step; ``forward`` (the op's NumPy kernel) when Numba cannot run it.

    Attributes:
        label: the op's name, what plan descriptions show.
        note: what the step runs, for ``hubkit info --plan``.
    """

    __slots__ = ("attrs", "forward", "kind", "label", "note")
    note: str

    def __init__(self, kind: str, forward: Any, attrs: dict[str, Any]) -> None:
        self.kind = kind
        self.forward = forward
        self.attrs = attrs
        self.label = kind
        self.note = "one pass plane by plane in a Numba kernel (the op's NumPy kernel when Numba is off)"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        a = self.attrs
        out = None
        if self.kind == "OnnxLRN":
            out = pool_nchw.lrn(x, a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))
        elif x.ndim == 4:
            kernel, strides = a["kernel_shape"], a["strides"]
            dilations = a.get("dilations") or [1, 1]
            if self.kind == "OnnxAveragePool":
                dilations = [1, 1]
            hw, begin, end = window_geometry(
                x.shape[2:], kernel, strides, dilations, a["pads"], a.get("auto_pad", "NOTSET"),
                a.get("ceil_mode", False),
            )
            check_window_sizes(x.shape, hw, begin, end)
            if self.kind == "OnnxMaxPool":
                out = pool_nchw.max_pool2d(x, kernel, strides, dilations, begin, hw)
            else:
                out = pool_nchw.avg_pool2d(x, kernel, strides, begin, end, a.get("count_include_pad", False), hw)
        return self.forward(x, **a) if out is None else out

    def __repr__(self) -> str:
        return f"PoolStep({self.label})"


def _enabled() -> bool:
    return os.environ.get("HUBKIT_OPTIMIZE_POOL", "1").strip().lower() not in ("0", "false", "no", "off")


def rewrite_pool_plan(steps: list, keep: set[int]) -> tuple[list, int]:
    """``steps`` (``(fn, kwargs, ins, outs, node)``) with 2-D pools and LRNs on Numba kernels; how many changed."""
    if not _enabled():
        return steps, 0
    out: list[tuple] = []
    changed = 0
    for fn, kwargs, ins, outs, node in steps:
        if _runs_on_numba(node, kwargs) and len(ins) == 1 and len(outs) == 1:
            out.append((PoolStep(node.op, fn, dict(kwargs)), {}, ins, outs, node))
            changed += 1
        else:
            out.append((fn, kwargs, ins, outs, node))
    return out, changed


def _runs_on_numba(node: Any, kwargs: dict[str, Any]) -> bool:
    """An LRN (beta 0.75) of known rank >= 3, or a pool of a rank-4 input over a 2-D window."""
    if node.op not in _OPS or not node.inputs or node.inputs[0].shape is None:
        return False
    rank = len(node.inputs[0].shape)
    if node.op == "OnnxLRN":
        return rank >= 3 and kwargs.get("beta", 0.75) == 0.75  # pool_nchw.lrn's one beta
    return rank == 4 and len(kwargs.get("kernel_shape", ())) == 2
