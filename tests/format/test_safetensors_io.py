"""The variables store: deterministic safetensors, shards, header validation, zero-copy mapping."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import safetensors.numpy

import hubkit as hk
from hubkit.format.safetensors_io import INDEX_FILE, map_tensors, read_store_index, write_store

ARRAYS = {
    "b/bias": np.arange(3, dtype=np.float32),
    "a/kernel": np.arange(12, dtype=np.float64).reshape(3, 4),
    "flags": np.array([True, False, True]),
    "step": np.array(7, dtype=np.int64),
    "empty": np.zeros((0, 2), np.float32),
    "ids": np.array([1, 2], np.int32),
}


def test_round_trip_and_reference_reader(tmp_path):
    assert write_store(str(tmp_path), ARRAYS) == ["variables.safetensors"]
    mapped = map_tensors(str(tmp_path), read_store_index(str(tmp_path)))
    reference = safetensors.numpy.load_file(str(tmp_path / "variables.safetensors"))
    for name, value in ARRAYS.items():
        assert mapped[name].dtype == value.dtype and mapped[name].shape == value.shape
        np.testing.assert_array_equal(mapped[name], value)
        np.testing.assert_array_equal(reference[name], value)
    assert isinstance(mapped["a/kernel"], np.memmap)
    assert mapped["a/kernel"].flags.writeable  # copy-on-write: writable, but never written back


def test_reference_writer_files_are_read(tmp_path):
    safetensors.numpy.save_file(ARRAYS, str(tmp_path / "variables.safetensors"))
    mapped = map_tensors(str(tmp_path), read_store_index(str(tmp_path)))
    for name, value in ARRAYS.items():
        np.testing.assert_array_equal(mapped[name], value)


def test_writes_are_deterministic(tmp_path):
    os.makedirs(tmp_path / "a")
    os.makedirs(tmp_path / "b")
    write_store(str(tmp_path / "a"), ARRAYS)
    write_store(str(tmp_path / "b"), dict(reversed(list(ARRAYS.items()))))
    assert (tmp_path / "a" / "variables.safetensors").read_bytes() == (tmp_path / "b" / "variables.safetensors").read_bytes()


def test_shards_and_index(tmp_path):
    files = write_store(str(tmp_path), ARRAYS, max_shard_bytes=40)
    assert files[-1] == INDEX_FILE and len(files) > 2
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert sorted(index["weight_map"]) == sorted(ARRAYS)
    mapped = map_tensors(str(tmp_path), read_store_index(str(tmp_path)))
    for name, value in ARRAYS.items():
        np.testing.assert_array_equal(mapped[name], value)
    os.remove(tmp_path / files[0])
    with pytest.raises(hk.FormatError, match="is missing"):
        read_store_index(str(tmp_path))


def test_strings_are_refused(tmp_path):
    with pytest.raises(hk.FormatError, match="Variable 'words' holds strings"):
        write_store(str(tmp_path), {"words": np.array(["a"], dtype=object)})


def test_header_claiming_bytes_beyond_the_file(tmp_path):
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    (tmp_path / "variables.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    with pytest.raises(hk.FormatError, match=r"'x' \(F32 \[4\]\) claims bytes \[0, 16\) of 8"):
        read_store_index(str(tmp_path))


def _write_raw(tmp_path, header: dict, data_bytes: int) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    (tmp_path / "variables.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + b"\0" * data_bytes)


def test_overlapping_entries_are_refused(tmp_path):
    # Two variables over the same bytes would share memory: writing one would change the other.
    _write_raw(tmp_path, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 8)
    with pytest.raises(hk.FormatError, match=r"'b' \(bytes \[0, 8\)\) overlaps 'a', which ends at byte 8"):
        read_store_index(str(tmp_path))
    with pytest.raises(safetensors.SafetensorError):  # the reference reader refuses it too
        safetensors.numpy.load_file(str(tmp_path / "variables.safetensors"))


def test_holes_and_unclaimed_bytes_are_refused(tmp_path):
    _write_raw(tmp_path, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                          "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, 12)
    with pytest.raises(hk.FormatError, match=r"'b' \(bytes \[8, 12\)\) leaves a 4-byte hole after 'a'"):
        read_store_index(str(tmp_path))
    _write_raw(tmp_path, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, 8)
    with pytest.raises(hk.FormatError, match=r"'a' .* hole after the start of the data"):
        read_store_index(str(tmp_path))
    _write_raw(tmp_path, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, 8)
    with pytest.raises(hk.FormatError, match="cover 4 of its 8 data bytes"):
        read_store_index(str(tmp_path))


def test_empty_tensors_may_share_an_offset(tmp_path):
    _write_raw(tmp_path, {"e1": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                          "e2": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
                          "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, 4)
    assert sorted(read_store_index(str(tmp_path))) == ["e1", "e2", "x"]
