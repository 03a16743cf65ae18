"""Attribute values, arrays and shapes round-trip through protobuf; invalid data is refused."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.attrs import (
    decode_array,
    decode_attrs,
    decode_shape,
    encode_array,
    encode_attrs,
    encode_shape,
)


def _round_trip(attrs):
    proto = pb.AttrMap()
    encode_attrs(attrs, proto)
    return decode_attrs(pb.AttrMap.FromString(proto.SerializeToString()))


def test_plain_values_round_trip():
    attrs = {
        "none": None, "flag": True, "count": -(2**40), "rate": 0.1, "name": "héllo", "dtype": hk.int64,
        "shape": (None, 3), "axes": [0, 2], "empty": (), "config": {"class": "glorot", "seed": None, "nested": {"a": [1.5]}},
        "np_scalar": np.float32(2.5), "np_int": np.int64(7), "np_bool": np.bool_(False),
    }
    out = _round_trip(attrs)
    assert out["dtype"] is hk.int64
    assert out["shape"] == (None, 3) and isinstance(out["shape"], tuple)
    assert out["axes"] == [0, 2] and isinstance(out["axes"], list)
    assert out["config"] == attrs["config"] and list(out) == list(attrs)
    assert out["np_scalar"] == 2.5 and out["np_int"] == 7 and out["np_bool"] is False
    for k in ("none", "flag", "count", "rate", "name", "empty"):
        assert out[k] == attrs[k] and type(out[k]) is type(attrs[k])


@pytest.mark.parametrize("value", [
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.array([[1, -2]], dtype=np.int64),
    np.array(3.5, dtype=np.float64),
    np.array([True, False]),
    np.zeros((0, 4), np.int32),
    np.array([1, 2], dtype=np.uint8),
    np.array([["a", "bé"], ["", "c"]], dtype=object),
])
def test_arrays_round_trip(value):
    proto = pb.TensorProto()
    encode_array(value, proto)
    out = decode_array(pb.TensorProto.FromString(proto.SerializeToString()))
    assert out.shape == value.shape and out.dtype == value.dtype
    np.testing.assert_array_equal(out, value)


def test_big_endian_arrays_are_stored_little_endian():
    value = np.arange(3, dtype=">i4")
    proto = pb.TensorProto()
    encode_array(value, proto)
    assert proto.content == np.arange(3, dtype="<i4").tobytes()
    np.testing.assert_array_equal(decode_array(proto), [0, 1, 2])


def test_unstorable_values_are_refused():
    with pytest.raises(hk.GraphError, match="not plain data"):
        encode_attrs({"fn": print}, pb.AttrMap())
    with pytest.raises(hk.GraphError, match="does not fit in 64 bits"):
        encode_attrs({"big": 2**70}, pb.AttrMap())
    with pytest.raises(hk.GraphError, match="complex128"):
        encode_attrs({"c": np.array([1j])}, pb.AttrMap())
    with pytest.raises(hk.GraphError, match="non-strings"):
        encode_attrs({"o": np.array([object()], dtype=object)}, pb.AttrMap())


def test_corrupt_values_are_refused():
    proto = pb.TensorProto(dtype="float32", content=b"\0" * 7)
    proto.shape.dims.extend([2])
    with pytest.raises(hk.FormatError, match="holds 7 bytes; float32 of shape \\[2\\] needs 8"):
        decode_array(proto)
    with pytest.raises(hk.FormatError, match="unknown dtype 'complex64'"):
        decode_array(pb.TensorProto(dtype="complex64"))
    with pytest.raises(hk.FormatError, match="invalid dimension -5"):
        decode_shape(pb.ShapeProto(dims=[-5]))
    bad = pb.AttrMap()
    bad.entries.add(key="a").value.none = True
    bad.entries.add(key="a").value.none = True
    with pytest.raises(hk.FormatError, match="repeats the key 'a'"):
        decode_attrs(bad)
    empty = pb.AttrMap()
    empty.entries.add(key="x")
    with pytest.raises(hk.FormatError, match="has no value"):
        decode_attrs(empty)


def test_shapes_round_trip():
    for shape in (None, (), (None,), (2, None, 3)):
        proto = pb.ShapeProto()
        encode_shape(shape, proto)
        assert decode_shape(proto) == shape
