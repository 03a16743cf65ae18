"""Writes TensorFlow tensor bundles (``variables.index`` + one data shard), the inverse of :mod:`.bundle`.

Used to make hostile and large bundles in tests and benchmarks without TensorFlow. Keys are
prefix-compressed with a restart point every 16 entries, blocks hold about 4 KiB, and
``compress=True`` stores the blocks as snappy literals (what a snappy encoder emits for data it
cannot shorten), so both block kinds of the reader are exercised.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping

import numpy as np

from hubkit.importers.tf1.crc32c import crc32c, mask
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from hubkit.importers.tf1.table import TABLE_MAGIC

__all__ = ["write_bundle", "write_table"]

_TF_DTYPES = {"float32": 1, "float64": 2, "int32": 3, "int64": 9, "bool": 10}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _snappy_literal(data: bytes) -> bytes:
    out = bytearray(_varint(len(data)))
    for start in range(0, len(data), 65536):
        chunk = data[start:start + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + n.to_bytes(2, "little")
        out += chunk
    return bytes(out)


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    out = bytearray()
    restarts = []
    prev = b""
    for i, (key, value) in enumerate(entries):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        prev = key
    if not restarts:
        restarts = [0]
    for r in restarts:
        out += struct.pack("<I", r)
    out += struct.pack("<I", len(restarts))
    return bytes(out)


def write_table(path: str, items: list[tuple[bytes, bytes]], *, compress: bool = False, block_bytes: int = 4096) -> None:
    """Writes sorted ``(key, value)`` pairs as a LevelDB table."""
    out = bytearray()

    def put(contents: bytes) -> bytes:
        kind = 0
        if compress:
            contents, kind = _snappy_literal(contents), 1
        handle = _varint(len(out)) + _varint(len(contents))
        out.extend(contents)
        out.append(kind)
        out.extend(struct.pack("<I", mask(crc32c(contents + bytes([kind])))))
        return handle

    index: list[tuple[bytes, bytes]] = []
    pending: list[tuple[bytes, bytes]] = []
    size = 0
    for key, value in items:
        pending.append((key, value))
        size += len(key) + len(value) + 8
        if size >= block_bytes:
            index.append((pending[-1][0], put(_block(pending))))
            pending, size = [], 0
    if pending:
        index.append((pending[-1][0], put(_block(pending))))
    meta = put(_block([]))
    index_handle = put(_block(index, restart_interval=1))
    footer = (meta + index_handle).ljust(40, b"\0") + struct.pack("<Q", TABLE_MAGIC)
    with open(path, "wb") as f:
        f.write(bytes(out) + footer)


def _string_bytes(values: np.ndarray) -> tuple[bytes, int]:
    raw = [str(v).encode("utf-8") for v in values.reshape(-1)]
    lengths = b"".join(_varint(len(r)) for r in raw)
    crc = 0
    for r in raw:
        crc = crc32c(struct.pack("<I", len(r)), crc)
    length_check = struct.pack("<I", mask(crc))
    crc = crc32c(length_check, crc)
    for r in raw:
        crc = crc32c(r, crc)
    return lengths + length_check + b"".join(raw), mask(crc)


def write_bundle(variables_dir: str, tensors: Mapping[str, np.ndarray], *, compress: bool = False) -> None:
    """Writes ``variables.index`` and ``variables.data-00000-of-00001`` holding ``tensors`` (numbers or strings)."""
    os.makedirs(variables_dir, exist_ok=True)
    header = tfpb.BundleHeaderProto(num_shards=1, endianness=0)
    items = [(b"", header.SerializeToString())]
    offset = 0
    with open(os.path.join(variables_dir, "variables.data-00000-of-00001"), "wb") as data:
        for name in sorted(tensors):
            arr = np.asarray(tensors[name])
            entry = tfpb.BundleEntryProto(shard_id=0, offset=offset)
            for d in arr.shape:
                entry.shape.dim.add(size=d)
            if arr.dtype.kind in "OUS":
                raw, crc = _string_bytes(arr)
                entry.dtype = 7
            else:
                raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
                crc = mask(crc32c(raw))
                entry.dtype = _TF_DTYPES[arr.dtype.name]
            entry.size, entry.crc32c = len(raw), crc
            data.write(raw)
            offset += len(raw)
            items.append((name.encode("utf-8"), entry.SerializeToString()))
    write_table(os.path.join(variables_dir, "variables.index"), items, compress=compress)
