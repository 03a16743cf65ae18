"""The checkpoint file format: a JSON index plus raw little-endian data shards, no pickle.

A checkpoint with prefix ``dir/ckpt-3`` is the files::

    dir/ckpt-3.index                      JSON: format, version, shard names, one entry per key
    dir/ckpt-3.data-00000-of-00001        the values' bytes, back to back

Each index entry gives the value's ``dtype``, ``shape``, ``shard``, ``offset``, ``nbytes`` and a
``crc32`` of its bytes (strings are stored in the entry itself as a JSON list). The data shards are
written first and the index last, each to a temporary name renamed into place, so a crash never
leaves an index pointing at missing data: a checkpoint exists exactly when its index does.

The directory's ``checkpoint`` file (JSON) names the latest checkpoint and the ones kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from hubkit._fileio import atomic_write
from hubkit.errors import CheckpointError
from hubkit.graph import as_dtype

__all__ = [
    "CheckpointReader",
    "latest_checkpoint",
    "list_variables",
    "load_checkpoint",
    "read_state",
    "remove_checkpoint",
    "write_checkpoint",
    "write_state",
]

FORMAT = "hubkit-checkpoint"
VERSION = 1
STATE_FILE = "checkpoint"
INDEX_SUFFIX = ".index"


def _shard_name(prefix: str, i: int, n: int) -> str:
    return f"{os.path.basename(prefix)}.data-{i:05d}-of-{n:05d}"


def write_checkpoint(
    prefix: str, values: Iterable[tuple[str, np.ndarray, str | None]], max_shard_bytes: int = 1 << 30
) -> str:
    """Writes ``(key, array, variable name)`` triples as a checkpoint at ``prefix``.

    Args:
        prefix: path prefix of the files (``dir/ckpt-3``); the directory is created.
        values: the entries; keys must be unique.
        max_shard_bytes: a new data shard starts when the current one would grow past this.

    Returns:
        ``prefix``.

    Raises:
        CheckpointError: a key repeats, or the files cannot be written.
    """
    directory = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"Cannot write checkpoint {prefix!r}: {e}") from e
    entries: dict[str, dict[str, Any]] = {}
    shards: list[list[bytes]] = [[]]
    sizes = [0]
    for key, value, var_name in values:
        if key in entries:
            raise CheckpointError(f"Checkpoint key {key!r} would be written twice.")
        arr = np.asarray(value)
        entry: dict[str, Any] = {"shape": list(arr.shape)}
        if var_name is not None:
            entry["name"] = var_name
        if arr.dtype.kind in "OUS":
            entry.update(dtype="string", strings=[str(x) for x in arr.reshape(-1)])
        else:
            dt = as_dtype(arr.dtype)
            data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            if sizes[-1] and sizes[-1] + len(data) > max_shard_bytes:
                shards.append([])
                sizes.append(0)
            entry.update(
                dtype=dt.name, shard=len(shards) - 1, offset=sizes[-1], nbytes=len(data), crc32=zlib.crc32(data)
            )
            shards[-1].append(data)
            sizes[-1] += len(data)
        entries[key] = entry
    names = [_shard_name(prefix, i, len(shards)) for i in range(len(shards))]
    index = {"format": FORMAT, "version": VERSION, "shards": names, "entries": dict(sorted(entries.items()))}
    try:
        for name, parts in zip(names, shards):
            atomic_write(os.path.join(directory, name), b"".join(parts))
        atomic_write(prefix + INDEX_SUFFIX, json.dumps(index, indent=1).encode("utf-8"))
    except OSError as e:
        raise CheckpointError(f"Cannot write checkpoint {prefix!r}: {e}") from e
    return prefix


class CheckpointReader:
    """Reads one checkpoint's keys, shapes, dtypes and values.

    Args:
        prefix: the checkpoint's path prefix (``dir/ckpt-3``), or a directory (its latest checkpoint).

    Raises:
        CheckpointError: there is no checkpoint there, or its index is corrupt.
    """

    def __init__(self, prefix: str) -> None:
        prefix = _resolve_prefix(os.fspath(prefix))
        self.prefix = prefix
        path = prefix + INDEX_SUFFIX
        try:
            with open(path, "rb") as f:
                index = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"No checkpoint at {prefix!r}: {path!r} does not exist.") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"Checkpoint index {path!r} is corrupt: {e}") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise CheckpointError(f"{path!r} is not a hubkit checkpoint index.")
        if index.get("version") != VERSION:
            raise CheckpointError(
                f"Checkpoint {path!r} has format version {index.get('version')!r}; this hubkit reads {VERSION}."
            )
        self._shards = [os.path.join(os.path.dirname(path), str(n)) for n in index.get("shards", [])]
        self._entries: dict[str, dict[str, Any]] = index.get("entries", {})
        for key, entry in self._entries.items():
            self._validate(key, entry)

    def _validate(self, key: str, e: Any) -> None:
        try:
            as_dtype(e["dtype"])
            shape = [int(d) for d in e["shape"]]
            if e["dtype"] != "string":
                ok = 0 <= int(e["shard"]) < len(self._shards) and int(e["offset"]) >= 0
                count = int(np.prod(shape, dtype=np.int64))
                ok = ok and int(e["nbytes"]) == count * as_dtype(e["dtype"]).np_dtype.itemsize
                if not ok:
                    raise ValueError("shard, offset or size out of range")
            elif len(e["strings"]) != int(np.prod(shape, dtype=np.int64)):
                raise ValueError("wrong number of strings")
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"Checkpoint {self.prefix!r} has a corrupt entry {key!r}: {err}") from None

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def has_tensor(self, key: str) -> bool:
        return key in self._entries

    def variable_name(self, key: str) -> str | None:
        """The name the variable had when it was saved (e.g. ``"dense/kernel"``), if recorded."""
        return self._entry(key).get("name")

    def get_variable_to_shape_map(self) -> dict[str, list[int]]:
        """``{key: shape}`` for every value in the checkpoint."""
        return {k: list(e["shape"]) for k, e in sorted(self._entries.items())}

    def get_variable_to_dtype_map(self) -> dict[str, Any]:
        """``{key: hubkit dtype}`` for every value in the checkpoint."""
        return {k: as_dtype(e["dtype"]) for k, e in sorted(self._entries.items())}

    def _entry(self, key: str) -> dict[str, Any]:
        try:
            return self._entries[key]
        except KeyError:
            raise CheckpointError(
                f"Checkpoint {self.prefix!r} has no key {key!r}; it has {sorted(self._entries)}."
            ) from None

    def get_tensor(self, key: str) -> np.ndarray:
        """The value stored under ``key`` (a fresh, writable array).

        Raises:
            CheckpointError: no such key, or its bytes are missing or corrupt.
        """
        e = self._entry(key)
        shape = tuple(int(d) for d in e["shape"])
        if e["dtype"] == "string":
            return np.array(e["strings"], dtype=object).reshape(shape)
        dt = as_dtype(e["dtype"]).np_dtype
        shard = self._shards[int(e["shard"])]
        try:
            with open(shard, "rb") as f:
                f.seek(int(e["offset"]))
                data = f.read(int(e["nbytes"]))
        except OSError as err:
            raise CheckpointError(f"Cannot read {key!r} from checkpoint shard {shard!r}: {err}") from None
        if len(data) != int(e["nbytes"]) or zlib.crc32(data) != e.get("crc32", zlib.crc32(data)):
            raise CheckpointError(f"Checkpoint shard {shard!r} is truncated or corrupt at key {key!r}.")
        return np.frombuffer(data, dtype=dt.newbyteorder("<")).astype(dt).reshape(shape)


def _resolve_prefix(prefix: str) -> str:
    if os.path.isdir(prefix) and not os.path.exists(prefix + INDEX_SUFFIX):
        latest = latest_checkpoint(prefix)
        if latest is None:
            raise CheckpointError(f"Directory {prefix!r} holds no checkpoint.")
        return latest
    return prefix


def load_checkpoint(path: str) -> CheckpointReader:
    """A reader for the checkpoint at ``path`` (a prefix, or a directory meaning its latest checkpoint).

    >>> import tempfile, os, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> _ = write_checkpoint(os.path.join(d, "ckpt-1"), [("w/.ATTRIBUTES/VARIABLE_VALUE", np.ones(2), None)])
    >>> load_checkpoint(os.path.join(d, "ckpt-1")).get_variable_to_shape_map()
    {'w/.ATTRIBUTES/VARIABLE_VALUE': [2]}
    """
    return CheckpointReader(path)


def list_variables(path: str) -> list[tuple[str, list[int]]]:
    """Sorted ``(key, shape)`` pairs of the checkpoint at ``path``."""
    return sorted(CheckpointReader(path).get_variable_to_shape_map().items())


# -- the directory's state file ---------------------------------------------------------------------
def read_state(directory: str) -> dict[str, Any] | None:
    """The parsed ``checkpoint`` state file of ``directory``, or None when there is none."""
    path = os.path.join(directory, STATE_FILE)
    try:
        with open(path, "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"Checkpoint state file {path!r} is corrupt: {e}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"Checkpoint state file {path!r} is corrupt: expected a JSON object.")
    return state


def write_state(directory: str, latest: str, kept: list[str], **extra: Any) -> None:
    """Records the latest checkpoint and the kept ones (names relative to ``directory``)."""
    state = {
        "model_checkpoint_path": os.path.basename(latest),
        "all_model_checkpoint_paths": [os.path.basename(p) for p in kept],
        **extra,
    }
    atomic_write(os.path.join(directory, STATE_FILE), json.dumps(state, indent=1).encode("utf-8"))


def latest_checkpoint(directory: str) -> str | None:
    """The prefix of the newest complete checkpoint recorded in ``directory``, or None.

    Args:
        directory: a directory written by ``Checkpoint.save`` or ``CheckpointManager``.
    """
    state = read_state(os.fspath(directory))
    if not state:
        return None
    name = state.get("model_checkpoint_path")
    if not isinstance(name, str):
        return None
    prefix = os.path.join(directory, name)
    return prefix if os.path.exists(prefix + INDEX_SUFFIX) else None


def remove_checkpoint(prefix: str) -> None:
    """Deletes a checkpoint's files: the index first, so it stops counting as a checkpoint at once."""
    directory = os.path.dirname(os.path.abspath(prefix))
    base = os.path.basename(prefix)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(prefix + INDEX_SUFFIX)
    for name in os.listdir(directory):
        if name.startswith(base + ".data-"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
