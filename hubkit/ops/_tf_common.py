"""Helpers shared by the TF-exact op families (``hubkit/ops/tf_*.py``): constant inputs and static shapes."""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.graph import Shape, Tensor

__all__ = ["const_value", "known_size", "np_dtype_of", "static_list"]


def const_value(t: Tensor) -> np.ndarray | None:
    """The value of ``t`` when a ``Const`` node produces it (shape and axis arguments usually are), else None."""
    node = t.node
    if node.op == "Const":
        return np.asarray(node.attrs["value"])
    if node.op == "TfShape":
        shape = node.inputs[0].shape
        if shape is not None and all(d is not None for d in shape):
            return np.array(shape, dtype=node.attrs["out_type"].np_dtype)
    return None


def static_list(t: Tensor) -> list[int] | None:
    """A constant 0-D or 1-D integer tensor as a list of ints, else None."""
    value = const_value(t)
    if value is None:
        return None
    return [int(v) for v in np.reshape(value, -1)]


def known_size(shape: Shape) -> int | None:
    if shape is None or any(d is None for d in shape):
        return None
    return int(np.prod(shape, dtype=np.int64))


def np_dtype_of(dtype: Any) -> np.dtype:
    return dtype.np_dtype
