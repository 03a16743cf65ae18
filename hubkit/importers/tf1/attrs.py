"""TF ``AttrValue``/``TensorProto``/``TensorShapeProto`` -> plain data (NumPy arrays, hubkit dtypes, tuples)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hubkit.errors import FormatError
from hubkit.importers.tf1.dtypes import base_dtype, hubkit_dtype, numpy_dtype, tf_dtype_name
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb

__all__ = ["TensorBudget", "decode_attr_value", "decode_shape", "decode_tensor"]

MAX_CONST_ELEMENTS = 1 << 24  # TF repeats a constant's last value: a few bytes may declare a huge tensor
# What every attribute tensor of one SavedModel file (every node, every variant, every op default, every function
# body translated) may decode to in all, beyond twice the file's own size: a few bytes declare a large tensor.
MAX_DECODED_TENSOR_BYTES = 256 << 20


class TensorBudget:
    """The bytes the attribute tensors of one module file may still decode to; shared by all its graphs."""

    def __init__(self, file_bytes: int = 0, base: int | None = None) -> None:
        self.limit = (MAX_DECODED_TENSOR_BYTES if base is None else base) + 2 * max(file_bytes, 0)
        self.used = 0
        self.function_nodes = 0  # see functions.MAX_FUNCTION_NODES

    def charge(self, nbytes: int, where: str) -> None:
        self.used += nbytes
        if self.used > self.limit:
            raise FormatError(f"{where}: the module's attribute tensors decode to more than {self.limit} bytes in "
                              "all (few stored values repeated into large tensors, or repeated many times).")


def decode_shape(proto: tfpb.TensorShapeProto) -> tuple[int | None, ...] | None:
    """A static shape with None for unknown dims, or None for an unknown rank."""
    if proto.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in proto.dim)


def _decode_string(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{where} holds a string that is not valid UTF-8: {raw[:40]!r}.") from None


def decode_tensor(proto: tfpb.TensorProto, where: str, budget: TensorBudget | None = None) -> np.ndarray:
    """A TF constant as a NumPy array (strings as an object array of str); its bytes are charged to ``budget``.

    Raises:
        FormatError: an incomplete or too large shape, values that do not fit the dtype, the budget exhausted.
    """
    shape = decode_shape(proto.tensor_shape)
    if shape is None or any(d is None for d in shape):
        raise FormatError(f"{where} is a constant with an incomplete shape.")
    size = math.prod(int(d or 0) for d in shape)  # Python ints: never wraps
    if size > MAX_CONST_ELEMENTS:
        raise FormatError(f"{where} is a constant of {size} elements, more than the limit of {MAX_CONST_ELEMENTS}.")
    dt = base_dtype(proto.dtype)
    if tf_dtype_name(dt) == "string":
        if budget is not None:
            budget.charge(8 * size + sum(len(s) for s in proto.string_val), where)
        values = [_decode_string(s, where) for s in proto.string_val]
        return _fill(values, size, shape, object, where)
    np_dt = numpy_dtype(dt, where)
    if budget is not None:
        budget.charge(size * np_dt.itemsize, where)
    if proto.tensor_content:
        if len(proto.tensor_content) != size * np_dt.itemsize:
            raise FormatError(f"{where} holds {len(proto.tensor_content)} bytes; {list(shape)} needs "
                              f"{size * np_dt.itemsize}.")
        return np.frombuffer(proto.tensor_content, dtype=np_dt).astype(np_dt.newbyteorder("=")).reshape(shape)
    field = {1: proto.float_val, 2: proto.double_val, 3: proto.int_val, 4: proto.int_val, 5: proto.int_val,
             6: proto.int_val, 9: proto.int64_val, 10: proto.bool_val, 17: proto.int_val, 19: proto.half_val,
             22: proto.uint32_val, 23: proto.uint64_val}.get(dt)
    if field is None:
        raise FormatError(f"{where} is a {tf_dtype_name(dt)} constant, which hubkit cannot read.")
    values = list(field)
    if dt == 19:  # float16 bit patterns in an int32 field
        _check_range(values, np.dtype(np.uint16), where, "float16 bit patterns")
        values = list(np.array(values, dtype=np.uint16).view(np.float16))
    elif np_dt.kind in "iu":
        _check_range(values, np_dt, where, tf_dtype_name(dt))
    return _fill(values, size, shape, np_dt.newbyteorder("="), where)


def _check_range(values: list, dtype: np.dtype, where: str, what: str) -> None:
    info = np.iinfo(dtype)
    bad = next((v for v in values if not info.min <= v <= info.max), None)
    if bad is not None:
        raise FormatError(f"{where} holds the value {bad}, outside the range of {what} ({info.min}..{info.max}).")


def _fill(values: list, size: int, shape: tuple, dtype: Any, where: str) -> np.ndarray:
    if len(values) > size:
        raise FormatError(f"{where} holds {len(values)} values for a shape of {size} elements.")
    out = np.empty(size, dtype=dtype)
    if size:
        if not values:
            out[:] = "" if dtype is object else 0
        else:
            out[:len(values)] = values
            out[len(values):] = values[-1]  # TF repeats the last value to fill the shape
    return out.reshape(shape)


def decode_attr_value(value: tfpb.AttrValue, where: str, budget: TensorBudget | None = None) -> Any:
    """One attribute as plain data; types as hubkit dtypes where hubkit has them (else the TF enum number)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "s":
        return value.s.decode("utf-8", "replace")
    if kind in ("i", "f", "b"):
        return getattr(value, kind)
    if kind == "type":
        return _dtype_or_number(value.type, where)
    if kind == "shape":
        return decode_shape(value.shape)
    if kind == "tensor":
        return decode_tensor(value.tensor, where, budget)
    if kind == "list":
        lv = value.list
        if lv.s:
            return [s.decode("utf-8", "replace") for s in lv.s]
        if lv.i:
            return list(lv.i)
        if lv.f:
            return list(lv.f)
        if lv.b:
            return list(lv.b)
        if lv.type:
            return [_dtype_or_number(t, where) for t in lv.type]
        if lv.shape:
            return [decode_shape(s) for s in lv.shape]
        if lv.tensor:
            return [decode_tensor(t, where, budget) for t in lv.tensor]
        return []
    return None  # func / placeholder attrs: ops using them are not supported


def _dtype_or_number(value: int, where: str) -> Any:
    try:
        return hubkit_dtype(value, where)
    except FormatError:
        return int(value)
