"""A bounded reader of LevelDB-format tables (the ``variables.index`` file of a TensorFlow tensor bundle).

Layout: data blocks, a metaindex block, an index block, then a 48-byte footer holding two block
handles (varint offset and size) padded to 40 bytes and the magic number ``0xdb4775248b80fb57``.
Each block ends with a 5-byte trailer: the compression type (0 none, 1 snappy) and the masked
CRC-32C of the block and that type byte. A block is a run of entries ``varint shared, varint
non_shared, varint value_length, key suffix, value`` whose keys share prefixes with the previous
key, then the ``uint32`` offsets of the restart points (entries with ``shared == 0``) and their count.

Every offset, length and count is checked against the bytes present, keys must increase strictly,
and the total decoded size is capped, so hostile bytes give a :class:`FormatError` naming the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from hubkit.errors import FormatError
from hubkit.format.bounded_io import read_regular_file
from hubkit.importers.tf1.crc32c import crc32c, unmask

__all__ = ["MAX_INDEX_BYTES", "read_table", "snappy_decompress"]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
TRAILER_SIZE = 5
MAX_INDEX_BYTES = 1 << 30  # an index of 1 GiB would describe ~10 million tensors: refuse anything larger
_MAX_BLOCK = 64 << 20
# A value is one BundleEntryProto (a few dozen bytes; a partitioned tensor's lists its slices' extents).
MAX_VALUE_BYTES = 1 << 20
# All blocks of an index decode to at most this plus a few times the file (snappy rarely gains 2x on an index).
MAX_DECODED_BASE = 64 << 20
DECODED_PER_FILE_BYTE = 4


class _Corrupt(Exception):
    """A problem inside a block; turned into a FormatError naming the file by the caller."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Corrupt("a varint runs past the end of its block")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Corrupt("a varint is longer than 10 bytes")


def snappy_decompress(data: bytes, limit: int = _MAX_BLOCK) -> bytes:
    """Decodes one raw snappy block (no framing), refusing output beyond ``limit`` bytes.

    Raises:
        ValueError: the block is malformed or would decode to more than ``limit`` bytes.
    """
    try:
        size, pos = _varint(data, 0, len(data))
    except _Corrupt as e:
        raise ValueError(str(e)) from None
    if size > limit:
        raise ValueError(f"it would decompress to {size} bytes, more than the limit of {limit}")
    out = bytearray()
    n = len(data)
    while pos < n:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                if pos + extra > n:
                    raise ValueError("a literal length runs past the end")
                length = int.from_bytes(data[pos:pos + extra], "little")
                pos += extra
            length += 1
            if pos + length > n or len(out) + length > size:
                raise ValueError("a literal runs past the end of the input or the output")
            out += data[pos:pos + length]
            pos += length
            continue
        if kind == 1:
            if pos >= n:
                raise ValueError("a copy runs past the end")
            length = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        else:
            width = 2 if kind == 2 else 4
            if pos + width > n:
                raise ValueError("a copy runs past the end")
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[pos:pos + width], "little")
            pos += width
        if offset == 0 or offset > len(out) or len(out) + length > size:
            raise ValueError("a copy points outside the decoded data")
        start = len(out) - offset
        if offset >= length:
            out += out[start:start + length]
        else:  # overlapping copy: the last `offset` bytes repeat
            pattern = bytes(out[start:])
            out += (pattern * (length // offset + 1))[:length]
    if len(out) != size:
        raise ValueError(f"it decoded to {len(out)} bytes instead of the {size} its header announces")
    return bytes(out)


def _block(data: bytes, offset: int, size: int) -> bytes:
    if offset < 0 or size < 0 or offset + size + TRAILER_SIZE > len(data):
        raise _Corrupt(f"a block handle (offset {offset}, size {size}) points past the end of the file")
    if size > _MAX_BLOCK:
        raise _Corrupt(f"a block of {size} bytes exceeds the limit of {_MAX_BLOCK}")
    contents = data[offset:offset + size]
    kind = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if crc32c(data[offset:offset + size + 1]) != unmask(stored):
        raise _Corrupt(f"the block at offset {offset} fails its CRC-32C check")
    if kind == 0:
        return contents
    if kind == 1:
        try:
            return snappy_decompress(contents)
        except ValueError as e:
            raise _Corrupt(f"the snappy block at offset {offset} is corrupt: {e}") from None
    raise _Corrupt(f"the block at offset {offset} uses the unknown compression type {kind}")


def _entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise _Corrupt("a block is shorter than its restart count")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if (num_restarts == 0 and len(block) > 4) or limit < 0:
        raise _Corrupt(f"a block claims {num_restarts} restart points, which do not fit in it")
    restarts = set(struct.unpack_from(f"<{num_restarts}I", block, limit))
    pos, key = 0, b""
    while pos < limit:
        at = pos
        shared, pos = _varint(block, pos, limit)
        non_shared, pos = _varint(block, pos, limit)
        value_len, pos = _varint(block, pos, limit)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise _Corrupt(f"the entry at block offset {at} runs past its block")
        if at in restarts and shared:
            raise _Corrupt(f"the restart entry at block offset {at} shares a key prefix")
        new_key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        if at and new_key <= key:
            raise _Corrupt(f"keys are not in increasing order ({new_key!r} after {key!r})")
        key = new_key
        yield key, block[pos:pos + value_len]
        pos += value_len
    if any(r >= max(limit, 1) for r in restarts):
        raise _Corrupt("a restart point lies outside the block's entries")


def _handle(value: bytes) -> tuple[int, int, int]:
    offset, pos = _varint(value, 0, len(value))
    size, pos = _varint(value, pos, len(value))
    return offset, size, pos


def read_table(path: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of the table at ``path``, in key order; every block's CRC is checked.

    Raises:
        FormatError: naming ``path``: unreadable, truncated, a bad magic number or CRC, a malformed block.
    """
    where = f"Tensor bundle index {path!r}"
    try:
        data = read_regular_file(path, 2 * MAX_INDEX_BYTES, "Tensor bundle index")  # never a FIFO or device
    except OSError as e:
        raise FormatError(f"{where} cannot be read: {e.strerror or e}.") from None
    if len(data) > MAX_INDEX_BYTES:
        raise FormatError(f"{where} is larger than the limit of {MAX_INDEX_BYTES} bytes.")
    if len(data) < FOOTER_SIZE:
        raise FormatError(f"{where} is truncated: it is shorter than a table footer ({len(data)} bytes).")
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, 40)
    if magic != TABLE_MAGIC:
        raise FormatError(f"{where} is not a LevelDB table: its footer magic is {magic:#x}, not {TABLE_MAGIC:#x}.")
    body = data[:-FOOTER_SIZE]
    try:
        _, _, pos = _handle(footer[:40])  # the metaindex block (filters) is not needed
        index_offset, index_size, _ = _handle(footer[pos:40])
        out: list[tuple[bytes, bytes]] = []
        last = None
        cap = MAX_DECODED_BASE + DECODED_PER_FILE_BYTE * len(data)
        index_block = _block(body, index_offset, index_size)
        decoded = len(index_block)
        for _, handle in _entries(index_block):
            offset, size, used = _handle(handle)
            if used != len(handle):
                raise _Corrupt("an index entry holds more than a block handle")
            block = _block(body, offset, size)
            decoded += len(block)
            if decoded > cap:
                raise _Corrupt(f"its blocks decode to more than {cap} bytes in all")
            for key, value in _entries(block):
                if len(value) > MAX_VALUE_BYTES or len(key) > MAX_VALUE_BYTES:
                    raise _Corrupt(f"the entry {key[:40]!r} holds more than {MAX_VALUE_BYTES} bytes")
                if last is not None and key <= last:
                    raise _Corrupt(f"keys are not in increasing order across blocks ({key!r} after {last!r})")
                last = key
                out.append((key, value))
    except _Corrupt as e:
        raise FormatError(f"{where} is corrupt: {e}.") from None
    return out
