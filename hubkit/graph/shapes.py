"""Static shapes: tuples of ints with ``None`` for unknown dimensions, or ``None`` for unknown rank."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Optional

import numpy as np

from hubkit.errors import GraphError

Shape = Optional[tuple]  # noqa: UP045 -- a runtime alias; tuple[int | None, ...] or None when even the rank is unknown

__all__ = ["Shape", "broadcast_shapes", "format_shape", "is_compatible", "merge_shapes", "normalize_shape"]


def normalize_shape(shape: Iterable | int | None) -> Shape:
    """Returns ``shape`` as a tuple of ``int | None`` (or ``None`` for unknown rank).

    >>> normalize_shape([None, 3])
    (None, 3)
    """
    if shape is None:
        return None
    if isinstance(shape, int):
        shape = (shape,)
    out: list[int | None] = []
    try:
        dims = list(shape)
    except TypeError:
        raise GraphError(f"Invalid shape {shape!r}; expected a list of ints or None.") from None
    for d in dims:
        if d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d == -1):
            out.append(None)  # -1 means unknown, as in TensorFlow
            continue
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise GraphError(
                f"Invalid dimension {d!r} in shape {shape!r}; expected non-negative ints, or None (or -1) for unknown."
            )
        out.append(int(d))
    return tuple(out)


def format_shape(shape: Shape) -> str:
    """Renders a shape as users write it: ``[None, 4]``, or ``<unknown>``."""
    if shape is None:
        return "<unknown>"
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def is_compatible(static: Shape, concrete: Sequence[int]) -> bool:
    """Whether a concrete shape (of an array) fits a static shape."""
    if static is None:
        return True
    if len(static) != len(concrete):
        return False
    return all(s is None or s == c for s, c in zip(static, concrete))


def merge_shapes(a: Shape, b: Shape) -> Shape | Literal[False]:
    """The most specific shape compatible with both, or ``False`` when they contradict."""
    if a is None:
        return b
    if b is None:
        return a
    if len(a) != len(b):
        return False
    out = []
    for x, y in zip(a, b):
        if x is not None and y is not None and x != y:
            return False
        out.append(x if x is not None else y)
    return tuple(out)


def broadcast_shapes(a: Shape, b: Shape) -> Shape | Literal[False]:
    """NumPy broadcasting of two static shapes; ``False`` when they cannot broadcast."""
    if a is None or b is None:
        return None
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out: list[int | None] = []
    for x, y in zip(a, b):
        if x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        elif x is None:
            out.append(y if y is not None else None)
        elif y is None or x == y:
            out.append(x)
        else:
            return False
    return tuple(out)
