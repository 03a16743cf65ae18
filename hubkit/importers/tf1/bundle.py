"""TensorFlow tensor bundles (``variables/variables.index`` + ``variables.data-NNNNN-of-NNNNN``).

The index is a LevelDB table (see :mod:`.table`): key ``""`` holds a ``BundleHeaderProto``, every other
key a ``BundleEntryProto`` giving a tensor's dtype, shape, shard, byte offset, size and masked CRC-32C.
Numeric tensors are raw little-endian bytes, so each becomes a :class:`TensorEntry` that hubkit
memory-maps straight from the shard. String tensors (varint lengths, a masked CRC of the lengths, then
the bytes) are decoded. Slices of partitioned variables live under binary keys (OrderedCode:
``0``, the name, the rank, then ``start, length`` per dimension, ``length = -1`` for a whole dimension).

Checks at load: every index block's CRC (so the index file is always verified), every entry's bounds against
its shard's size, and the data CRC of every numeric tensor once per version of the files. With Numba the CRC runs
at ~1-2 GB/s (:mod:`.crc32c`): the first load of a bundle checks every tensor, then records a *verified stamp*
(the SHA-256 of each file's real path, device, inode, size, mtime_ns and ctime_ns) in this process and as an empty
file under ``<hubkit cache>/tf1-verified/``; a later load whose files have the same stamp skips the data CRCs, so
a cached 1 GB module loads in milliseconds and any rewrite of a file (which changes its ctime) is checked again.
Without Numba (NumPy CRC at ~60 MB/s) only the smallest entries up to a 4 MB budget are checked at load.
:func:`verify_bundle` always checks every byte of every shard.

Shards are opened as regular files only (``O_NONBLOCK`` open, then ``fstat``: never a FIFO, device or
directory), and a shard that is a symbolic link must resolve inside the directory of the bundle's index file.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import threading
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError

from hubkit.errors import FormatError
from hubkit.format.bounded_io import map_regular, open_regular
from hubkit.format.safetensors_io import TensorEntry
from hubkit.importers.tf1 import crc32c as _crc
from hubkit.importers.tf1.crc32c import crc32c, mask
from hubkit.importers.tf1.dtypes import numpy_dtype, tf_dtype_name
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from hubkit.importers.tf1.table import read_table

__all__ = ["Bundle", "BundleEntry", "read_bundle", "verify_bundle"]

INDEX_FILE = "variables.index"
CRC_BUDGET_BYTES = 4 << 20  # data bytes CRC-checked at load without a fast CRC
STAMP_DIR = "tf1-verified"
_verified: set[str] = set()  # stamps of bundles checked by this process
_verified_lock = threading.Lock()
MAX_STRING_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class BundleEntry:
    """One stored tensor: where its bytes are and what they hold."""

    key: str
    dtype: int  # TF DataType enum value
    shape: tuple[int, ...]
    file: str  # the shard's name inside variables/
    offset: int
    size: int
    crc32c: int
    slices: tuple[tuple[tuple[int, int], ...], ...] = ()  # set on the entry of a full partitioned tensor


@dataclass
class Bundle:
    """A parsed tensor bundle: entries by name, and slice entries by (name, extents)."""

    directory: str
    entries: dict[str, BundleEntry]
    slices: dict[tuple[str, tuple[tuple[int, int], ...]], BundleEntry]

    def tensor_entry(self, entry: BundleEntry) -> TensorEntry:
        """The memory-mappable location of a numeric entry."""
        return TensorEntry(entry.file, numpy_dtype(entry.dtype), entry.shape, entry.offset, entry.offset + entry.size)

    def read_strings(self, entry: BundleEntry) -> np.ndarray:
        """Decodes a string tensor (its CRC is checked)."""
        path = os.path.join(self.directory, entry.file)
        try:
            with open_regular(path, "Tensor bundle shard") as f:
                f.seek(entry.offset)
                data = f.read(entry.size)
        except OSError as e:
            raise FormatError(f"Tensor bundle shard {path!r} cannot be read: {e.strerror or e}.") from None
        return _decode_strings(data, entry, path)


# -- OrderedCode slice keys --------------------------------------------------------------------------------
_HEADER_BITS = {1: (0x80, 0), 2: (0xC0, 0), 3: (0xE0, 0), 4: (0xF0, 0), 5: (0xF8, 0), 6: (0xFC, 0), 7: (0xFE, 0),
                8: (0xFF, 0), 9: (0xFF, 0x80), 10: (0xFF, 0xC0)}


def _num_increasing(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise ValueError("a number is missing")
    n = data[pos]
    if n > 8 or pos + 1 + n > len(data):
        raise ValueError("a number is malformed")
    return int.from_bytes(data[pos + 1:pos + 1 + n], "big"), pos + 1 + n


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while pos + 1 < len(data):
        b = data[pos]
        if b == 0:
            nxt = data[pos + 1]
            if nxt == 1:
                return bytes(out), pos + 2
            if nxt != 0xFF:
                raise ValueError("a string has an invalid escape")
            out.append(0)
            pos += 2
        elif b == 0xFF:
            if data[pos + 1] != 0:
                raise ValueError("a string has an invalid escape")
            out.append(0xFF)
            pos += 2
        else:
            out.append(b)
            pos += 1
    raise ValueError("a string is not terminated")


def _leading_ones(b: int) -> int:
    n = 0
    while n < 8 and b & (0x80 >> n):
        n += 1
    return n


def _signed_num_increasing(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise ValueError("a signed number is missing")
    flip = 0 if data[pos] & 0x80 else 0xFF
    first = data[pos] ^ flip
    length = _leading_ones(first)
    if length == 8:
        if pos + 1 >= len(data):
            raise ValueError("a signed number is truncated")
        length = 8 + _leading_ones(data[pos + 1] ^ flip)
    if length not in _HEADER_BITS or pos + length > len(data):
        raise ValueError("a signed number is malformed")
    raw = bytearray(data[pos:pos + length])
    raw[0] ^= _HEADER_BITS[length][0]
    if length > 1:
        raw[1] ^= _HEADER_BITS[length][1]
    return int.from_bytes(bytes(raw), "big", signed=True), pos + length


def decode_slice_key(key: bytes) -> tuple[str, tuple[tuple[int, int], ...]]:
    """(tensor name, ((start, length), ...)) of a slice key; ``length`` is -1 for a whole dimension."""
    zero, pos = _num_increasing(key, 0)
    if zero != 0:
        raise ValueError("it does not start with 0")
    name, pos = _string(key, pos)
    rank, pos = _num_increasing(key, pos)
    extents = []
    for _ in range(rank):
        start, pos = _signed_num_increasing(key, pos)
        length, pos = _signed_num_increasing(key, pos)
        extents.append((start, length))
    if pos != len(key):
        raise ValueError("it has trailing bytes")
    return name.decode("utf-8"), tuple(extents)


# -- reading ------------------------------------------------------------------------------------------------
def _shape(proto, where: str) -> tuple[int, ...]:
    if proto.unknown_rank or any(d.size < 0 for d in proto.dim):
        raise FormatError(f"{where} has an incomplete shape.")
    return tuple(int(d.size) for d in proto.dim)


def _shard_name(num_shards: int, shard: int) -> str:
    return f"variables.data-{shard:05d}-of-{num_shards:05d}"


def read_bundle(variables_dir: str) -> Bundle:
    """Parses ``variables_dir/variables.index`` and checks every entry against its shard.

    Raises:
        FormatError: naming the file: a corrupt table or entry, a missing or short shard, an unsupported
            dtype or endianness, a failed data CRC.
    """
    index_path = os.path.join(variables_dir, INDEX_FILE)
    where = f"Tensor bundle index {index_path!r}"
    items = read_table(index_path)
    if not items or items[0][0] != b"":
        raise FormatError(f"{where} has no bundle header (its empty key is missing).")
    try:
        header = tfpb.BundleHeaderProto.FromString(items[0][1])
    except DecodeError:
        raise FormatError(f"{where} has a corrupt bundle header.") from None
    if header.endianness != 0:
        raise FormatError(f"{where} stores big-endian tensors, which hubkit does not read.")
    if not 1 <= header.num_shards <= 100000:
        raise FormatError(f"{where} claims {header.num_shards} shards.")
    sizes: dict[str, int] = {}
    stats: list[os.stat_result] = [os.stat(index_path)]
    root = os.path.dirname(os.path.realpath(index_path))
    for shard in range(header.num_shards):
        name = _shard_name(header.num_shards, shard)
        st = _shard_stat(os.path.join(variables_dir, name), root)
        sizes[name] = st.st_size
        stats.append(st)
    entries: dict[str, BundleEntry] = {}
    slices: dict[tuple[str, tuple[tuple[int, int], ...]], BundleEntry] = {}
    for key, value in items[1:]:
        shown = key.decode("utf-8", "replace")
        try:
            proto = tfpb.BundleEntryProto.FromString(value)
        except DecodeError:
            raise FormatError(f"{where} has a corrupt entry for {shown!r}.") from None
        ewhere = f"{where} entry {shown!r}"
        shape = _shape(proto.shape, ewhere)
        if not 0 <= proto.shard_id < header.num_shards:
            raise FormatError(f"{ewhere} names shard {proto.shard_id} of {header.num_shards}.")
        file = _shard_name(header.num_shards, proto.shard_id)
        if proto.offset < 0 or proto.size < 0 or proto.offset + proto.size > sizes[file]:
            raise FormatError(
                f"Tensor bundle shard {os.path.join(variables_dir, file)!r} is truncated: {shown!r} needs bytes "
                f"[{proto.offset}, {proto.offset + proto.size}) of {sizes[file]}."
            )
        extents = tuple(tuple((e.start, e.length if e.HasField("length") else -1) for e in s.extent)
                        for s in proto.slices)
        entry = BundleEntry(shown, proto.dtype, shape, file, proto.offset, proto.size, proto.crc32c, extents)
        if not extents:
            _check_size(entry, ewhere)
        elif entry.size:  # a partitioned tensor's own entry holds no bytes: its slices' entries do
            raise FormatError(f"{ewhere} lists slices but also holds {entry.size} bytes of its own.")
        if key[:1] == b"\x00":
            try:
                name, ext = decode_slice_key(key)
            except (ValueError, UnicodeDecodeError) as e:
                raise FormatError(f"{where} has a malformed slice key {key!r}: {e}.") from None
            slices[(name, ext)] = entry
        else:
            entries[shown] = entry
    bundle = Bundle(variables_dir, entries, slices)
    _check_data(bundle, stats)
    return bundle


def _shard_stat(path: str, root: str) -> os.stat_result:
    """The ``fstat`` of the shard at ``path``, opened without blocking; a regular file inside ``root`` only."""
    if os.path.islink(path) and os.path.commonpath([os.path.realpath(path), root]) != root:
        raise FormatError(f"Tensor bundle shard {path!r} is a symbolic link to {os.path.realpath(path)!r}, outside "
                          f"the bundle's directory {root!r}; refusing to read it.")
    if not os.path.lexists(path):
        raise FormatError(f"Tensor bundle shard {path!r} is missing.")
    with open_regular(path, "Tensor bundle shard") as f:  # FormatError for a FIFO, device, directory, OS error
        return os.fstat(f.fileno())


def _stamp(bundle: Bundle, stats: list[os.stat_result]) -> str:
    files = [INDEX_FILE] + sorted({e.file for e in list(bundle.entries.values()) + list(bundle.slices.values())})
    parts = [os.path.realpath(os.path.join(bundle.directory, INDEX_FILE))]
    parts += [f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}" for st in stats]
    parts += files
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _stamp_path(stamp: str) -> str | None:
    root = os.environ.get("HUBKIT_CACHE_DIR")
    if not root:
        try:
            import platformdirs
        except ImportError:  # pragma: no cover - a dependency of hubkit
            return None
        root = platformdirs.user_cache_dir("hubkit")
    return os.path.join(os.path.abspath(os.path.expanduser(root)), STAMP_DIR, stamp)


def _check_data(bundle: Bundle, stats: list[os.stat_result]) -> None:
    """Every tensor's CRC once per version of the files when the CRC is fast, else the budgeted spot check."""
    if not _crc.fast():
        _spot_check(bundle)
        return
    stamp = _stamp(bundle, stats)
    if stamp in _verified:
        return
    path = _stamp_path(stamp)
    if path is not None and os.path.isfile(path):
        with _verified_lock:
            _verified.add(stamp)
        return
    _check_all(bundle)
    with _verified_lock:
        _verified.add(stamp)
    if path is not None:
        try:  # a read-only cache only costs the next process another check
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644))
        except OSError:
            pass


def _check_all(bundle: Bundle) -> None:
    maps: dict[str, np.memmap] = {}
    for entry in list(bundle.entries.values()) + list(bundle.slices.values()):
        if not entry.slices and tf_dtype_name(entry.dtype) != "string":
            _data_crc(bundle, entry, maps)


def _check_size(entry: BundleEntry, where: str) -> None:
    name = tf_dtype_name(entry.dtype)
    if name == "string":
        return
    dt = numpy_dtype(entry.dtype, where)
    need = math.prod(int(d) for d in entry.shape) * dt.itemsize  # Python ints: a shape never wraps
    if need != entry.size:
        raise FormatError(f"{where} holds {entry.size} bytes; {name} {list(entry.shape)} needs {need}.")


def _data_crc(bundle: Bundle, entry: BundleEntry, maps: dict[str, np.memmap]) -> None:
    path = os.path.join(bundle.directory, entry.file)
    if entry.size == 0 and entry.crc32c == mask(crc32c(b"")):
        return
    mm = maps.get(entry.file)
    if mm is None:
        mm = maps[entry.file] = map_regular(path, "Tensor bundle shard")
    if mask(crc32c(mm[entry.offset:entry.offset + entry.size])) != entry.crc32c:
        raise FormatError(f"Tensor bundle shard {path!r} is corrupt: the data of {entry.key!r} fails its CRC-32C check.")


def _spot_check(bundle: Bundle) -> None:
    """CRC of each shard's smallest numeric entries, up to CRC_BUDGET_BYTES in all.

    Smallest first, so a shard of many variables gets most of them checked; an entry larger than the
    budget (a 100 MB embedding) is left to :func:`verify_bundle`, which a load cannot afford without Numba
    (NumPy computes CRC-32C at about 60 MB/s).
    """
    numeric = [e for e in list(bundle.entries.values()) + list(bundle.slices.values())
               if not e.slices and tf_dtype_name(e.dtype) != "string"]
    maps: dict[str, np.memmap] = {}
    budget = CRC_BUDGET_BYTES
    for entry in sorted(numeric, key=lambda e: (e.size, e.key)):
        if entry.size > budget:
            break
        budget -= entry.size
        _data_crc(bundle, entry, maps)


def verify_bundle(variables_dir: str) -> None:
    """Checks the CRC-32C of every tensor of the bundle (reads every byte).

    Raises:
        FormatError: naming the first file and tensor whose bytes do not match.
    """
    bundle = read_bundle(variables_dir)
    _check_all(bundle)
    for entry in list(bundle.entries.values()) + list(bundle.slices.values()):
        if not entry.slices and tf_dtype_name(entry.dtype) == "string":
            bundle.read_strings(entry)


def _decode_strings(data: bytes, entry: BundleEntry, path: str) -> np.ndarray:
    where = f"Tensor bundle shard {path!r} string tensor {entry.key!r}"
    count = math.prod(int(d) for d in entry.shape)
    if count > MAX_STRING_ELEMENTS:
        raise FormatError(f"{where} has {count} elements, more than the limit of {MAX_STRING_ELEMENTS}.")
    lengths = []
    pos = 0
    crc = 0
    for _ in range(count):
        value = shift = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise FormatError(f"{where} is truncated or corrupt in its string lengths.")
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if value > 0xFFFFFFFFFFFFFFFF:
            raise FormatError(f"{where} is corrupt: a string length does not fit in 64 bits.")
        lengths.append(value)
        crc = crc32c(struct.pack("<I" if value <= 0xFFFFFFFF else "<Q", value), crc)  # as TF extends it
    if pos + 4 > len(data):
        raise FormatError(f"{where} is truncated: its length checksum is missing.")
    (stored,) = struct.unpack_from("<I", data, pos)
    if stored != mask(crc):
        raise FormatError(f"{where} is corrupt: its string lengths fail their CRC-32C check.")
    crc = crc32c(data[pos:pos + 4], crc)
    pos += 4
    if pos + sum(lengths) != len(data):
        raise FormatError(f"{where} is corrupt: its string lengths do not add up to its size.")
    out = np.empty(count, dtype=object)
    for i, n in enumerate(lengths):
        raw = data[pos:pos + n]
        crc = crc32c(raw, crc)
        pos += n
        try:
            out[i] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{where} holds a string that is not UTF-8 (element {i}).") from None
    if mask(crc) != entry.crc32c:
        raise FormatError(f"{where} is corrupt: its data fails its CRC-32C check.")
    return out.reshape(entry.shape)
