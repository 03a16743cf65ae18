"""Converting concrete values (arrays, lists, scalars, strings) to a tensor's dtype and static shape.

One rule for every place a user hands hubkit a value for a typed slot: feeds of a session and
inputs of an eager module call. Conversions that lose information are refused: a string to a
number, a float to an int, an int outside the target's range, a value contradicting the shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.graph.dtypes import DType
from hubkit.graph.shapes import Shape, format_shape, is_compatible
from hubkit.graph.tensor import Tensor

__all__ = ["convert_value"]

_STR_ONLY = frozenset((str,))  # element types of a string value needing no conversion


def convert_value(value: Any, dtype: DType, shape: Shape, label: str, error: type[Exception]) -> np.ndarray:
    """Returns ``value`` as an array of ``dtype`` fitting ``shape``.

    Args:
        value: an array, a (nested) list, a scalar, or strings/bytes for a string dtype.
        dtype: the target element type.
        shape: the static shape the value must fit (``None`` entries are free).
        label: how errors name the slot, e.g. ``"Placeholder 'x'"``.
        error: the exception class to raise (a hubkit error).

    >>> from hubkit.graph import float32
    >>> convert_value([1, 2], float32, (None,), "Placeholder 'x'", ValueError)
    array([1., 2.], dtype=float32)
    """
    if isinstance(value, np.ndarray) and value.dtype == dtype.np_dtype and dtype.name != "string":
        arr = value
    elif dtype.name == "string":
        arr = _strings(value, label, error)
    else:
        if isinstance(value, Tensor):
            raise error(f"{label} was given the symbolic tensor {value.name!r}; give an array.")
        try:
            src = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise error(f"{label} cannot take this {type(value).__name__}: {e}") from None
        arr = _numbers(src, dtype, label, error)
    if not is_compatible(shape, arr.shape):
        raise error(
            f"{label} has shape {format_shape(shape)}; the value given has shape {format_shape(tuple(arr.shape))}."
        )
    return arr


def _strings(value: Any, label: str, error: type[Exception]) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=object)
    except (ValueError, TypeError) as e:
        raise error(f"{label} cannot take this {type(value).__name__}: {e}") from None
    flat = arr.reshape(-1)
    if not set(map(type, flat.tolist())) <= _STR_ONLY:  # one C-speed pass; the loop decodes or refuses
        flat = flat.copy()  # never write into the caller's array
        for i, x in enumerate(flat):
            if isinstance(x, (bytes, np.bytes_)):
                try:
                    flat[i] = bytes(x).decode("utf-8")
                except UnicodeDecodeError as e:
                    raise error(f"{label} expects UTF-8 text; element {i} {x!r} is not: {e.reason}.") from None
            elif isinstance(x, str):
                flat[i] = str(x)  # np.str_ -> str
            else:
                raise error(f"{label} expects strings, got the {type(x).__name__} {x!r}.")
        arr = flat.reshape(arr.shape)
    return arr


def _numbers(src: np.ndarray, dtype: DType, label: str, error: type[Exception]) -> np.ndarray:
    target = dtype.np_dtype
    if src.dtype == target:
        return src
    kind = src.dtype.kind
    same_kind = kind in "biuf" and np.can_cast(src.dtype, target, "same_kind")
    if not (same_kind or (kind in "biu" and dtype.is_floating)):
        raise error(f"{label} has dtype {dtype.name}; a value of dtype {src.dtype} cannot be converted to it safely.")
    if kind in "iu" and dtype.is_integer and src.size and not np.can_cast(src.dtype, target, "safe"):
        info = np.iinfo(target)  # narrowing ints: refuse values that would wrap around
        lo, hi = src.min(), src.max()
        if lo < info.min or hi > info.max:
            bad = lo if lo < info.min else hi
            raise error(f"{label} has dtype {dtype.name}; the value {int(bad)} is outside [{info.min}, {info.max}].")
    return src.astype(target, copy=False)
