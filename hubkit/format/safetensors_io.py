"""The variables store: safetensors files written deterministically and read back memory-mapped.

A safetensors file is an 8-byte little-endian header length, a JSON header
``{name: {"dtype", "shape", "data_offsets": [begin, end]}}`` and the raw little-endian bytes. The
writer streams each array to disk (no full copy in memory) with the header's keys sorted and the
arrays ordered by decreasing item size then name, so every array stays aligned and exporting the
same values twice gives the same bytes. The reader parses the header itself and returns views of one
copy-on-write ``np.memmap`` per file: loading costs no reads of the data, and writes made by
training stay in private memory, never in the file.

Large stores are split in shards ``variables-00001-of-00003.safetensors`` listed by
``variables.safetensors.index.json`` (``{"metadata": {...}, "weight_map": {name: file}}``), the
layout other safetensors tools use.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hubkit.errors import FormatError
from hubkit.format.bounded_io import map_regular, open_regular, parse_json, read_json_file

__all__ = [
    "DEFAULT_MAX_SHARD_BYTES",
    "INDEX_FILE",
    "SINGLE_FILE",
    "VARIABLES_DIR",
    "TensorEntry",
    "dtype_code",
    "map_tensors",
    "read_store_index",
    "write_store",
]

VARIABLES_DIR = "variables"  # the store's directory inside a module
SINGLE_FILE = "variables.safetensors"
INDEX_FILE = "variables.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3
_MAX_HEADER = 100 * 1024**2

_CODES = {"bool": "BOOL", "float16": "F16", "float32": "F32", "float64": "F64", "int8": "I8", "int16": "I16",
          "int32": "I32", "int64": "I64", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64"}
_FROM_CODE = {code: np.dtype(name) for name, code in _CODES.items()}


@dataclass(frozen=True)
class TensorEntry:
    """Where one stored array lives: its file, dtype, shape and byte range after the header."""

    file: str
    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


def dtype_code(dtype: np.dtype) -> str:
    """The safetensors code of a storable dtype (``float32`` -> ``"F32"``), as written in headers."""
    return _CODES[np.dtype(dtype).name]


def _check_storable(name: str, arr: np.ndarray) -> None:
    if arr.dtype.name not in _CODES:
        kind = "strings" if arr.dtype.kind in "OUS" else f"dtype {arr.dtype}"
        raise FormatError(
            f"Variable {name!r} holds {kind}, which the variables store cannot hold; storable dtypes are "
            f"{sorted(_CODES)}."
        )


def _write_file(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    header: dict[str, dict] = {}
    offset = 0
    for name in order:
        arr = arrays[name]
        header[name] = {"dtype": _CODES[arr.dtype.name], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    text = json.dumps(dict(sorted(header.items())), separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-(len(text) + 8) % 8)  # keep the data 8-byte aligned, as the spec allows
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in order:
            arr = np.ascontiguousarray(arrays[name], dtype=arrays[name].dtype.newbyteorder("<"))
            f.write(arr.reshape(-1).view(np.uint8).data if arr.size else b"")
        f.flush()
        os.fsync(f.fileno())


def write_store(directory: str, arrays: Mapping[str, np.ndarray], max_shard_bytes: int | None = None) -> list[str]:
    """Writes ``arrays`` (name -> array) into ``directory``; returns the file names written.

    One ``variables.safetensors`` when the total fits in ``max_shard_bytes`` (default 2 GiB), else
    shards plus an index. Raises FormatError for values the store cannot hold (e.g. strings).
    """
    limit = DEFAULT_MAX_SHARD_BYTES if max_shard_bytes is None else int(max_shard_bytes)
    arrs = {}
    for name in sorted(arrays):
        arr = np.asarray(arrays[name])
        _check_storable(name, arr)
        arrs[name] = arr
    total = sum(a.nbytes for a in arrs.values())
    if total <= limit:
        _write_file(os.path.join(directory, SINGLE_FILE), arrs)
        return [SINGLE_FILE]
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, arr in arrs.items():
        if shards[-1] and size + arr.nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = arr
        size += arr.nbytes
    files = [f"variables-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for file, shard in zip(files, shards):
        _write_file(os.path.join(directory, file), shard)
        weight_map.update(dict.fromkeys(shard, file))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(directory, INDEX_FILE), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")
    return [*files, INDEX_FILE]


def _read_header(path: str) -> tuple[int, dict]:
    where = f"Variables file {path!r}"
    try:
        with open_regular(path, "Variables file") as f:  # never a FIFO, device or directory
            file_size = os.fstat(f.fileno()).st_size
            raw = f.read(8)
            if len(raw) < 8:
                raise FormatError(f"{where} is truncated: it has no safetensors header.")
            (n,) = struct.unpack("<Q", raw)
            if n > min(_MAX_HEADER, file_size - 8):
                raise FormatError(f"{where} is corrupt or truncated: its header length {n} exceeds the file.")
            text = f.read(n)
    except OSError as e:
        raise FormatError(f"{where} cannot be read: {e}.") from None
    try:
        header = parse_json(text, path)
    except FormatError as e:
        raise FormatError(f"{where} has a corrupt safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise FormatError(f"{where} has a corrupt safetensors header: not a JSON object.")
    return 8 + n, header


def _json_int(value: object) -> int:
    """An integer from a header (not a bool, float or string), within int64."""
    if not isinstance(value, int) or isinstance(value, bool) or not -(2**63) <= value < 2**63:
        raise ValueError(f"{value!r} is not an int64")
    return value


def _entries_of(path: str, file: str) -> dict[str, TensorEntry]:
    data_start, header = _read_header(path)
    data_size = os.path.getsize(path) - data_start
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _FROM_CODE[info["dtype"]]
            shape = tuple(_json_int(d) for d in info["shape"])
            begin, end = (_json_int(x) for x in info["data_offsets"])
            if len(shape) > 64:
                raise ValueError("too many dimensions")
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"Variables file {path!r} has a malformed entry for {name!r}.") from None
        nbytes = math.prod(shape) * dtype.itemsize  # Python ints: a huge product cannot wrap around
        if any(d < 0 for d in shape) or not 0 <= begin <= end <= data_size or end - begin != nbytes:
            raise FormatError(
                f"Variables file {path!r} is corrupt or truncated: {name!r} ({info['dtype']} {list(shape)}) "
                f"claims bytes [{begin}, {end}) of {data_size}."
            )
        out[name] = TensorEntry(file, dtype, shape, data_start + begin, data_start + end)
    _check_coverage(path, out, data_start, data_size)
    return out


def _check_coverage(path: str, entries: Mapping[str, TensorEntry], data_start: int, data_size: int) -> None:
    """Refuses byte ranges that overlap, leave holes, or leave bytes unclaimed, as the reference library does.

    Overlapping ranges would make two variables share memory; the safetensors reference reader
    requires the ranges, sorted by offset, to tile the data section exactly.
    """
    where = f"Variables file {path!r}"
    previous, at = "", 0
    for name in sorted(entries, key=lambda k: (entries[k].begin, entries[k].end, k)):
        begin, end = entries[name].begin - data_start, entries[name].end - data_start
        if begin != at:
            problem = "overlaps" if begin < at else f"leaves a {begin - at}-byte hole after"
            after = f"{previous!r}, which ends at byte {at}" if previous else "the start of the data"
            raise FormatError(
                f"{where} is corrupt: {name!r} (bytes [{begin}, {end})) {problem} {after}; tensors must cover the "
                "data section without overlaps or holes."
            )
        previous, at = name, end
    if at != data_size:
        raise FormatError(
            f"{where} is corrupt: its tensors cover {at} of its {data_size} data bytes; tensors must cover the data "
            "section without overlaps or holes."
        )


def read_store_index(directory: str) -> dict[str, TensorEntry]:
    """Parses the headers of the store in ``directory`` (no data is read): name -> entry.

    Raises:
        FormatError: a file is missing, truncated or has a corrupt header.
    """
    index_path = os.path.join(directory, INDEX_FILE)
    if os.path.lexists(index_path):
        try:
            weight_map = read_json_file(index_path, _MAX_HEADER, "Variables index", follow_links=True)["weight_map"]
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise TypeError("'weight_map' is not an object of variable name -> file name")
            files = sorted(set(weight_map.values()))
        except (FormatError, KeyError, TypeError, AttributeError) as e:
            raise FormatError(f"Variables index {index_path!r} is corrupt: {e}.") from None
    else:
        weight_map = None
        files = [SINGLE_FILE]
    entries: dict[str, TensorEntry] = {}
    for file in files:
        if not isinstance(file, str) or os.path.basename(file) != file or file.startswith("."):
            raise FormatError(f"Variables index {index_path!r} names the invalid file {file!r}.")
        path = os.path.join(directory, file)
        if not os.path.isfile(path):
            raise FormatError(f"Variables file {path!r} is missing.")
        for name, entry in _entries_of(path, file).items():
            if weight_map is not None and weight_map.get(name) != file:
                raise FormatError(f"Variables file {path!r} holds {name!r}, which the index places elsewhere.")
            entries[name] = entry
    if weight_map is not None:
        missing = sorted(set(weight_map) - set(entries))
        if missing:
            raise FormatError(f"Variables index {index_path!r} lists {missing}, which no shard holds.")
    return entries


def map_tensors(directory: str, entries: Mapping[str, TensorEntry]) -> dict[str, np.ndarray]:
    """Memory-maps each entry copy-on-write: name -> array view (an ``np.memmap``); nothing is read."""
    maps: dict[str, np.memmap] = {}
    out: dict[str, np.ndarray] = {}
    for name, e in entries.items():
        if e.end == e.begin:
            out[name] = np.zeros(e.shape, dtype=e.dtype)
            continue
        mm = maps.get(e.file)
        if mm is None:  # opened as a regular file (never a FIFO or device), then mapped from that descriptor
            mm = maps[e.file] = map_regular(os.path.join(directory, e.file), "Variables file", mode="c")
        le = e.dtype.newbyteorder("<")
        out[name] = mm[e.begin:e.end].view(le).reshape(e.shape)
    return out
