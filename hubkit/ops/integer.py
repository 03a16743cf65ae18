"""Op family: integer division, as ``tf.floordiv`` and ``tf.floormod`` (used by partitioned lookups).

>>> import hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     q, r = hk.floordiv(hk.constant([7, -7]), 3), hk.floormod(hk.constant([7, -7]), 3)
>>> hk.Session(g).run([q, r])
[array([ 2, -3], dtype=int32), array([1, 2], dtype=int32)]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.graph import Tensor
from hubkit.ops._helpers import broadcast_infer, operands
from hubkit.ops.registry import apply, register_op

__all__ = ["floordiv", "floormod", "mod"]


def _checked(fn):
    def forward(x, y):
        if y.dtype.kind in "iu" and not np.all(y):
            raise ValueError("integer division by zero")
        return fn(x, y)

    return forward


@register_op
class FloorDiv:
    """``floor(x / y)`` elementwise (integers: rounds towards minus infinity; division by zero is an error)."""

    differentiable = False

    def infer(x, y):
        return broadcast_infer(x, y, kinds="fi")

    forward = _checked(np.floor_divide)


@register_op
class FloorMod:
    """``x - floor(x / y) * y`` elementwise: the result has the sign of ``y``."""

    differentiable = False

    def infer(x, y):
        return broadcast_infer(x, y, kinds="fi")

    forward = _checked(np.mod)


def floordiv(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x // y`` rounded towards minus infinity."""
    a, b = operands(x, y)
    return apply("FloorDiv", a, b, name=name)


def floormod(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x % y`` with the sign of ``y`` (Python's ``%``)."""
    a, b = operands(x, y)
    return apply("FloorMod", a, b, name=name)


mod = floormod
