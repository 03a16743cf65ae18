"""TensorFlow ``DataType`` enum values and what hubkit makes of them."""

from __future__ import annotations

import numpy as np

from hubkit.errors import FormatError
from hubkit.graph import DType, as_dtype

__all__ = ["REF_OFFSET", "base_dtype", "hubkit_dtype", "numpy_dtype", "tf_dtype_name"]

REF_OFFSET = 100  # *_REF dtypes of old reference variables are the base value + 100

_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string", 9: "int64",
          10: "bool", 14: "bfloat16", 17: "uint16", 19: "float16", 20: "resource", 21: "variant", 22: "uint32",
          23: "uint64"}
_NUMPY = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64, 10: np.bool_,
          17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}
_HUBKIT = {1: "float32", 2: "float64", 3: "int32", 7: "string", 9: "int64", 10: "bool"}


def base_dtype(value: int) -> int:
    return value - REF_OFFSET if value > REF_OFFSET else value


def tf_dtype_name(value: int) -> str:
    return _NAMES.get(base_dtype(value), f"DataType({value})")


def numpy_dtype(value: int, where: str = "tensor") -> np.dtype:
    dt = _NUMPY.get(base_dtype(value))
    if dt is None:
        raise FormatError(f"{where} has the dtype {tf_dtype_name(value)}, which hubkit cannot read.")
    return np.dtype(dt).newbyteorder("<")


def hubkit_dtype(value: int, where: str) -> DType:
    name = _HUBKIT.get(base_dtype(value))
    if name is None:
        raise FormatError(
            f"{where} has the dtype {tf_dtype_name(value)}; hubkit tensors are one of "
            f"{sorted(_HUBKIT.values())}."
        )
    return as_dtype(name)
