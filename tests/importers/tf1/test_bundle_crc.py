"""CRC-32C of tensor-bundle data: the Numba kernel equals the NumPy one, every tensor is checked once per version
of the files (a verified stamp), and shards are opened as regular files inside the bundle's directory only."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import hubkit as hk
from hubkit.errors import FormatError
from hubkit.importers.tf1 import bundle as bundle_mod
from hubkit.importers.tf1 import crc32c as crc
from hubkit.importers.tf1.bundle import read_bundle, verify_bundle
from hubkit.importers.tf1.writer import write_bundle
from hubkit.ops import _numba

SHARD = "variables.data-00000-of-00001"
needs_numba = pytest.mark.skipif(not crc.fast(), reason="the fast CRC needs Numba")


def _reference(data: bytes) -> int:
    return crc._update_bytes(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def test_known_vector():
    assert crc.crc32c(b"123456789") == 0xE3069283
    assert crc.crc32c(b"") == 0


@pytest.mark.parametrize("size", [0, 1, 7, 8, 15, 16, 17, 255, 256, 257, 1000, 4095, 4096, 4097, 65537])
@pytest.mark.parametrize("offset", [0, 1, 3, 8])
def test_numba_numpy_and_bytewise_crcs_agree(size, offset, tmp_path):
    rng = np.random.default_rng(size + offset)
    raw = rng.integers(0, 256, size + offset, dtype=np.uint8).tobytes()
    path = tmp_path / "blob"
    path.write_bytes(raw)
    view = np.memmap(path, dtype=np.uint8, mode="r")[offset:] if raw else np.zeros(0, np.uint8)
    want = _reference(raw[offset:])
    assert crc.crc32c(view) == want and crc.crc32c(raw[offset:]) == want
    assert crc.crc32c(raw[offset:][size // 2:], crc.crc32c(raw[offset:][:size // 2])) == want  # continued
    _numba.set_numba_enabled(False)
    try:
        assert crc.crc32c(view) == want
    finally:
        _numba.set_numba_enabled(None)


def _bundle(tmp_path, mb: float = 5.0) -> str:
    rng = np.random.default_rng(0)
    variables = str(tmp_path / "variables")
    write_bundle(variables, {"big": rng.standard_normal(int(mb * (1 << 20)) // 4).astype(np.float32),
                             "small": np.arange(6, dtype=np.int64), "words": np.array([b"a", b"b\xc3\xa9"], object)})
    return variables


def _flip(path: str, offset: int, count: int = 1) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        data = bytearray(f.read(count))
        f.seek(offset)
        f.write(bytes(b ^ 0x5A for b in data))


@needs_numba
@pytest.mark.parametrize("where, count", [(0, 1), (17, 3), (2 << 20, 1), (4 << 20, 4096), (-1, 1)])
def test_corruption_anywhere_in_a_large_tensor_fails_at_load(tmp_path, where, count):
    variables = _bundle(tmp_path)
    shard = os.path.join(variables, SHARD)
    entry = read_bundle(variables).entries["big"]
    _flip(shard, entry.offset + (entry.size - count if where < 0 else where), count)
    with pytest.raises(FormatError, match=rf"{SHARD}.*'big' fails its CRC-32C check"):
        read_bundle(variables)


@needs_numba
def test_a_verified_bundle_is_checked_once_per_version_of_its_files(tmp_path, monkeypatch):
    variables = _bundle(tmp_path, 0.5)
    checks = []
    real = bundle_mod._check_all
    monkeypatch.setattr(bundle_mod, "_check_all", lambda b: (checks.append(b.directory), real(b)))
    read_bundle(variables)
    read_bundle(variables)
    assert len(checks) == 1
    stamps = os.listdir(tmp_path / "hubkit-cache" / bundle_mod.STAMP_DIR)
    assert len(stamps) == 1 and len(stamps[0]) == 64
    bundle_mod._verified.clear()  # another process: the stamp file is enough
    read_bundle(variables)
    assert len(checks) == 1
    entry = read_bundle(variables).entries["big"]
    _flip(os.path.join(variables, SHARD), entry.offset + 100)  # a rewrite changes mtime/ctime: checked again
    with pytest.raises(FormatError, match="fails its CRC-32C check"):
        read_bundle(variables)
    assert len(checks) == 2


@needs_numba
def test_an_unwritable_cache_only_costs_another_check(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(blocker))
    read_bundle(_bundle(tmp_path, 0.1))


def test_without_numba_large_tensors_are_left_to_verify_bundle(tmp_path):
    variables = _bundle(tmp_path)
    entry = read_bundle(variables).entries["big"]
    _flip(os.path.join(variables, SHARD), entry.offset + 5)
    bundle_mod._verified.clear()
    _numba.set_numba_enabled(False)
    try:
        read_bundle(variables)  # 5 MB is over the NumPy CRC's budget at load
        with pytest.raises(FormatError, match="fails its CRC-32C check"):
            verify_bundle(variables)
    finally:
        _numba.set_numba_enabled(None)


# -- shards are regular files inside the bundle ------------------------------------------------------------------
def _replace_shard(variables: str, kind: str, tmp_path) -> None:
    shard = os.path.join(variables, SHARD)
    os.remove(shard)
    if kind == "fifo":
        os.mkfifo(shard)
    elif kind == "directory":
        os.mkdir(shard)
    elif kind == "dev_zero":
        os.symlink("/dev/zero", shard)
    elif kind == "outside":
        outside = tmp_path / "elsewhere.bin"
        outside.write_bytes(b"\0" * (1 << 20))
        os.symlink(str(outside), shard)
    elif kind == "dangling":
        os.symlink(str(tmp_path / "nothing"), shard)


@pytest.mark.parametrize("kind, message", [("fifo", "FIFO"), ("directory", "directory"), ("dev_zero", "outside"),
                                           ("outside", "outside"), ("dangling", "outside"), ("missing", "missing")])
def test_a_shard_that_is_not_a_regular_file_inside_the_bundle_is_refused(tmp_path, kind, message):
    variables = _bundle(tmp_path, 0.01)
    _replace_shard(variables, kind, tmp_path)
    result: list = []

    def load():
        try:
            read_bundle(variables)
        except FormatError as e:
            result.append(e)

    worker = threading.Thread(target=load, daemon=True)  # a FIFO opened for reading without O_NONBLOCK would block
    worker.start()
    worker.join(20)
    assert result, "read_bundle blocked or did not refuse the shard"
    assert SHARD in str(result[0]) and message in str(result[0])


def test_a_symlinked_shard_inside_the_bundle_is_fine(tmp_path):
    variables = _bundle(tmp_path, 0.01)
    shard = os.path.join(variables, SHARD)
    os.rename(shard, os.path.join(variables, "real.bin"))
    os.symlink("real.bin", shard)
    assert read_bundle(variables).entries["small"].shape == (6,)


def test_a_module_whose_shard_is_a_fifo_fails_with_the_path(tf1_copy):
    path = tf1_copy("text_embedding")
    shard = os.path.join(path, "variables", SHARD)
    os.remove(shard)
    os.mkfifo(shard)
    with pytest.raises(FormatError, match=r"variables\.data-00000-of-00001.*FIFO"):
        hk.Module(path)
