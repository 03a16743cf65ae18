"""Plain data <-> protobuf: node attributes, arrays, dtypes and static shapes.

Encoding refuses anything that is not plain data (so no object ever needs pickling); decoding
checks every value it builds (an array's byte count against its dtype and shape, dtype names
against a fixed list) and raises :class:`~hubkit.errors.FormatError` on anything else.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hubkit.errors import FormatError, GraphError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.graph import DType, Shape, as_dtype

__all__ = [
    "decode_array",
    "decode_attr",
    "decode_attrs",
    "decode_dtype",
    "decode_shape",
    "encode_array",
    "encode_attr",
    "encode_attrs",
    "encode_shape",
]

# NumPy element types an array attribute may hold (besides strings), by their stored name.
_ARRAY_DTYPES = {
    name: np.dtype(name)
    for name in (
        "bool", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
        "uint64",
    )
}
_HUBKIT_DTYPES = ("bool", "float32", "float64", "int32", "int64", "string")
_INT64 = (-(2**63), 2**63 - 1)
_MAX_ARRAY_ELEMENTS = 1 << 31  # an attribute lives in graph.pb, which protobuf caps at 2 GiB


# -- shapes and dtypes -----------------------------------------------------------------------------
def encode_shape(shape: Shape, out: pb.ShapeProto) -> None:
    """Writes a static shape (``None`` dims as -1; ``None`` shape as unknown rank) into ``out``."""
    if shape is None:
        out.unknown_rank = True
        return
    out.dims.extend(-1 if d is None else int(d) for d in shape)


def decode_shape(proto: pb.ShapeProto, where: str = "shape") -> Shape:
    """Reads a static shape; refuses dimensions below -1."""
    if proto.unknown_rank:
        if proto.dims:
            raise FormatError(f"{where} has unknown rank and dimensions {list(proto.dims)}.")
        return None
    dims = []
    for d in proto.dims:
        if d < -1:
            raise FormatError(f"{where} has the invalid dimension {d}.")
        dims.append(None if d == -1 else int(d))
    return tuple(dims)


def decode_dtype(name: str, where: str = "dtype") -> DType:
    """A hubkit dtype from its stored name."""
    if name not in _HUBKIT_DTYPES:
        raise FormatError(f"{where} has the unknown dtype {name!r}; expected one of {sorted(_HUBKIT_DTYPES)}.")
    return as_dtype(name)


# -- arrays ----------------------------------------------------------------------------------------
def encode_array(value: np.ndarray, out: pb.TensorProto, where: str = "array") -> None:
    """Stores an array: numbers and bools as little-endian bytes, strings as UTF-8 strings."""
    arr = np.asarray(value)
    encode_shape(tuple(arr.shape), out.shape)
    if arr.dtype.kind in "OU":
        flat = arr.reshape(-1)
        if not all(isinstance(x, str) for x in flat):
            raise GraphError(f"{where} is an object array holding non-strings; only str values can be stored.")
        out.dtype = "string"
        out.string_val.extend(str(x) for x in flat)
        return
    if arr.dtype.name not in _ARRAY_DTYPES:
        raise GraphError(f"{where} has dtype {arr.dtype}; storable dtypes are {sorted(_ARRAY_DTYPES)} and string.")
    out.dtype = arr.dtype.name
    out.content = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def decode_array(proto: pb.TensorProto, where: str = "array") -> np.ndarray:
    """Reads an array, checking its byte or string count against its dtype and shape."""
    shape = decode_shape(proto.shape, where)
    if shape is None or any(d is None for d in shape):
        raise FormatError(f"{where} has the incomplete shape {shape}; stored arrays need a full shape.")
    size = math.prod(shape)  # Python ints: a huge product cannot wrap around to a small one
    if size > _MAX_ARRAY_ELEMENTS:
        raise FormatError(f"{where} has the shape {list(shape)} of {size} elements; more than an attribute can hold.")
    if proto.dtype == "string":
        if proto.content or len(proto.string_val) != size:
            raise FormatError(f"{where} holds {len(proto.string_val)} strings; its shape {list(shape)} needs {size}.")
        arr = np.empty(size, dtype=object)
        arr[:] = list(proto.string_val)
        return arr.reshape(shape)
    dt = _ARRAY_DTYPES.get(proto.dtype)
    if dt is None:
        raise FormatError(f"{where} has the unknown dtype {proto.dtype!r}; expected one of {sorted(_ARRAY_DTYPES)}.")
    if proto.string_val or len(proto.content) != size * dt.itemsize:
        raise FormatError(
            f"{where} holds {len(proto.content)} bytes; {proto.dtype} of shape {list(shape)} needs "
            f"{size * dt.itemsize}."
        )
    return np.frombuffer(proto.content, dtype=dt.newbyteorder("<")).astype(dt).reshape(shape)


# -- attribute values ------------------------------------------------------------------------------
def encode_attr(value: Any, out: pb.AttrValue, where: str = "attribute") -> None:
    """Stores one plain-data attribute value; raises GraphError for anything else."""
    if value is None:
        out.none = True
    elif isinstance(value, (bool, np.bool_)):
        out.b = bool(value)
    elif isinstance(value, (int, np.integer)):
        if not _INT64[0] <= int(value) <= _INT64[1]:
            raise GraphError(f"{where} = {value} does not fit in 64 bits.")
        out.i = int(value)
    elif isinstance(value, (float, np.floating)):
        out.f = float(value)
    elif isinstance(value, str):
        out.s = value
    elif isinstance(value, DType):
        out.dtype = value.name
    elif isinstance(value, np.ndarray):
        encode_array(value, out.tensor, where)
    elif isinstance(value, list):
        out.list.SetInParent()
        for i, item in enumerate(value):
            encode_attr(item, out.list.items.add(), f"{where}[{i}]")
    elif isinstance(value, tuple):
        out.tuple.SetInParent()
        for i, item in enumerate(value):
            encode_attr(item, out.tuple.items.add(), f"{where}[{i}]")
    elif isinstance(value, dict):
        encode_attrs(value, out.map, where)
    else:
        raise GraphError(f"{where} is a {type(value).__name__} ({value!r}), which is not plain data and cannot be saved.")


def encode_attrs(attrs: dict[str, Any], out: pb.AttrMap, where: str = "attributes") -> None:
    """Stores a dict of attributes (keys in their order)."""
    out.SetInParent()
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise GraphError(f"{where} has the non-string key {key!r}.")
        entry = out.entries.add()
        entry.key = key
        encode_attr(value, entry.value, f"{where}[{key!r}]")


def decode_attr(proto: pb.AttrValue, where: str = "attribute") -> Any:
    """Reads one attribute value."""
    kind = proto.WhichOneof("kind")
    if kind is None:
        raise FormatError(f"{where} has no value.")
    if kind == "none":
        return None
    if kind in ("b", "i", "f", "s"):
        return getattr(proto, kind)
    if kind == "dtype":
        return decode_dtype(proto.dtype, where)
    if kind == "tensor":
        return decode_array(proto.tensor, where)
    if kind == "list":
        return [decode_attr(x, f"{where}[{i}]") for i, x in enumerate(proto.list.items)]
    if kind == "tuple":
        return tuple(decode_attr(x, f"{where}[{i}]") for i, x in enumerate(proto.tuple.items))
    return decode_attrs(proto.map, where)


def decode_attrs(proto: pb.AttrMap, where: str = "attributes") -> dict[str, Any]:
    """Reads a dict of attributes; refuses repeated keys."""
    out: dict[str, Any] = {}
    for entry in proto.entries:
        if entry.key in out:
            raise FormatError(f"{where} repeats the key {entry.key!r}.")
        out[entry.key] = decode_attr(entry.value, f"{where}[{entry.key!r}]")
    return out
