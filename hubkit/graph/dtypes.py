"""Element types of tensors, each mapped to a NumPy dtype."""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.errors import GraphError

__all__ = ["DType", "as_dtype", "bool_", "float32", "float64", "int32", "int64", "string"]


class DType:
    """A tensor element type (``hubkit.float32``, ``hubkit.string``, ...).

    Attributes:
        name: the type's name, as written in graph files ("float32").
        np_dtype: the NumPy dtype values of this type are stored in. ``string`` values are
            Python ``str`` objects in an object array.
    """

    __slots__ = ("name", "np_dtype")

    def __init__(self, name: str, np_dtype: Any) -> None:
        self.name = name
        self.np_dtype = np.dtype(np_dtype)

    @property
    def is_floating(self) -> bool:
        return self.np_dtype.kind == "f"

    @property
    def is_integer(self) -> bool:
        return self.np_dtype.kind in "iu"

    @property
    def is_numeric(self) -> bool:
        return self.np_dtype.kind in "fiu"

    def __repr__(self) -> str:
        return f"hubkit.{self.name}"

    def __reduce__(self):  # dtypes are singletons, also across copy.deepcopy
        return (as_dtype, (self.name,))


float32 = DType("float32", np.float32)
float64 = DType("float64", np.float64)
int32 = DType("int32", np.int32)
int64 = DType("int64", np.int64)
bool_ = DType("bool", np.bool_)
string = DType("string", object)

_BY_NAME = {d.name: d for d in (float32, float64, int32, int64, bool_, string)}
_BY_NP = {d.np_dtype: d for d in (float32, float64, int32, int64, bool_)}


def as_dtype(value: Any) -> DType:
    """Converts a DType, a name ("float32"), a NumPy dtype or a Python type to a DType.

    >>> as_dtype("int64")
    hubkit.int64
    >>> as_dtype(float)
    hubkit.float32
    """
    if isinstance(value, DType):
        return value
    if isinstance(value, str) and value in _BY_NAME:
        return _BY_NAME[value]
    if value is str or value is bytes:
        return string
    if value is float:
        return float32
    if value is int:
        return int64
    if value is bool:
        return bool_
    try:
        npd = np.dtype(value)
    except TypeError:
        npd = None
    if npd is not None:
        if npd.kind in "USO":
            return string
        if npd in _BY_NP:
            return _BY_NP[npd]
    raise GraphError(f"Unsupported dtype {value!r}; expected one of {sorted(_BY_NAME)}.")
