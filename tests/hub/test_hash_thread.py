"""The download's sha256 is computed by a thread of its own, from the received pieces themselves (no copy).

``http._PieceHasher`` hashes the pieces in order while the download receives the next ones; a piece's
buffer is reused (``BackgroundExtraction.piece_buffer``) only once no view of it is left, so the hasher
can lag behind the extraction without a buffer being written over before it is hashed. These tests
drive the hasher directly (order, bounds, failure, close) and through ``resolve`` with a hasher slowed
down (the digest is still right, buffers are still reused, a mismatch still leaves nothing in the
cache, no thread outlives a download). Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest

from hubkit.errors import DownloadError, IntegrityError
from hubkit.hub import extract, http, resolve
from hubkit.hub.extract import BackgroundExtraction
from hubkit.hub.registry import publish
from tests.hub.helpers import fake_validate, make_fake_module, read_tree


def _hasher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hubkit-sha256"]


def _no_hasher_thread_left(seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while _hasher_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _hasher_threads()


class _GatedHash:
    """A sha256 whose ``update`` waits for ``gate`` (so pieces pile up), recording each piece's bytes."""

    def __init__(self, gate: threading.Event, fail: bool = False) -> None:
        self._hash = hashlib.sha256()
        self.gate = gate
        self.fail = fail
        self.seen: list[bytes] = []

    def update(self, data) -> None:
        assert self.gate.wait(timeout=20)
        if self.fail:
            raise MemoryError("no memory for the hash")
        self.seen.append(bytes(data))
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@pytest.mark.parametrize("sizes", [[1], [7, 1 << 20, 3], [65536] * 40, [0, 5, 0]])
def test_pieces_are_hashed_in_order_from_the_buffers_given(sizes):
    data = os.urandom(sum(sizes))
    prefix = os.urandom(1000)  # what a resumed download had on disk, hashed before the thread
    start = hashlib.sha256(prefix)
    hasher = http._PieceHasher(start)
    try:
        offset = 0
        for number, size in enumerate(sizes):
            piece = data[offset:offset + size]
            hasher.update(memoryview(bytearray(piece)) if number % 2 else piece)  # views and bytes alike
            offset += size
        assert hasher.hexdigest() == hashlib.sha256(prefix + data).hexdigest()
        assert hasher.hexdigest() == hashlib.sha256(prefix + data).hexdigest()  # asking twice changes nothing
    finally:
        hasher.close()
    assert _no_hasher_thread_left()


def test_update_blocks_while_the_most_pieces_wait(monkeypatch):
    monkeypatch.setattr(http, "_HASH_WAITING", 2)
    gate = threading.Event()
    fake = _GatedHash(gate)
    hasher = http._PieceHasher(fake)  # type: ignore[arg-type]
    queued: list[int] = []

    def feed() -> None:
        for number in range(6):
            hasher.update(bytes([number]) * 4096)
            queued.append(number)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        time.sleep(0.2)
        assert len(queued) <= 3  # one being hashed (held at the gate) and two waiting
        gate.set()
        feeder.join(timeout=20)
        assert not feeder.is_alive()
        assert hasher.hexdigest() == hashlib.sha256(b"".join(bytes([n]) * 4096 for n in range(6))).hexdigest()
        assert [piece[0] for piece in fake.seen] == list(range(6))  # in order
    finally:
        gate.set()
        hasher.close()


def test_a_failing_hash_fails_the_download_instead_of_a_wrong_digest():
    gate = threading.Event()
    gate.set()
    hasher = http._PieceHasher(_GatedHash(gate, fail=True))  # type: ignore[arg-type]
    try:
        hasher.update(b"x" * 4096)
        with pytest.raises(DownloadError, match="Hashing the download failed"):
            hasher.hexdigest()
        with pytest.raises(DownloadError, match="Hashing the download failed"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the failure reaches the next update too
                hasher.update(b"y" * 4096)
    finally:
        hasher.close()
    assert _no_hasher_thread_left()


def test_close_drops_waiting_pieces_and_lets_their_buffers_be_reused():
    gate = threading.Event()
    hasher = http._PieceHasher(_GatedHash(gate))  # type: ignore[arg-type]
    buffers = [bytearray(os.urandom(4096)) for _ in range(4)]
    for buffer in buffers:
        hasher.update(memoryview(buffer))
    assert not any(extract._unshared(buffer) for buffer in buffers)  # held by the hasher until hashed
    closer = threading.Thread(target=hasher.close, daemon=True)
    closer.start()
    time.sleep(0.05)
    gate.set()  # the piece being hashed finishes; the others are dropped
    closer.join(timeout=20)
    assert not closer.is_alive()
    assert all(extract._unshared(buffer) for buffer in buffers)
    assert _no_hasher_thread_left()
    with pytest.raises(RuntimeError, match="closed"):
        hasher.update(b"late")


def test_a_buffer_the_hasher_still_holds_is_never_handed_out_again(tmp_path):
    """The extraction is done with a piece, the hasher is not: its buffer waits, and is reused after."""
    (tmp_path / "dest").mkdir()
    with BackgroundExtraction(str(tmp_path / ".part"), str(tmp_path / "dest"), 1 << 30, 1000, "a") as job:
        first = job.piece_buffer(4096)
        held = memoryview(first)[:100]  # what the hasher keeps until it has hashed the piece
        job._recycle(memoryview(first))
        second = job.piece_buffer(4096)
        assert second is not first
        job._recycle(memoryview(second))
        assert job.piece_buffer(4096) is second  # a free one is reused
        job._recycle(memoryview(second))
        held.release()
        assert {id(job.piece_buffer(4096)), id(job.piece_buffer(4096))} == {id(first), id(second)}
        job.abandon()


def _slow_hashes(monkeypatch, seconds: float) -> list[str]:
    """Makes every piece's hashing take ``seconds`` more (the hasher lags far behind the extraction)."""
    names: list[str] = []
    real = http._PieceHasher._run

    class Slow:
        def __init__(self, inner) -> None:
            self._inner = inner

        def update(self, data) -> None:
            names.append(threading.current_thread().name)
            time.sleep(seconds)
            self._inner.update(data)

        def hexdigest(self) -> str:
            return self._inner.hexdigest()

    def run(self) -> None:
        self._hash = Slow(self._hash)
        real(self)

    monkeypatch.setattr(http._PieceHasher, "_run", run)
    return names


@pytest.fixture
def big_registry(tmp_path):
    """A registry serving a module of ~6 MB (several full pieces of 1 MB), and the module itself."""
    module = make_fake_module(str(tmp_path / "module"), payload=os.urandom(6 << 20), extra_files=2)
    root = str(tmp_path / "registry")
    publish(module, root, name="acme/big", validate=fake_validate)
    return module, root


def test_a_lagging_hasher_still_gives_the_right_digest_and_buffers_are_reused(
    hub_env, big_registry, server_factory, monkeypatch
):
    module, root = big_registry
    server = server_factory(root)
    names = _slow_hashes(monkeypatch, 0.01)
    handed_out: list[int] = []
    real_buffer = BackgroundExtraction.piece_buffer

    def counting(self, size):
        buffer = real_buffer(self, size)
        handed_out.append(id(buffer))
        return buffer

    monkeypatch.setattr(BackgroundExtraction, "piece_buffer", counting)
    path = resolve(f"{server.url}/acme/big/1")  # the manifest's sha256 is checked: a buffer overwritten first fails
    assert read_tree(path) == read_tree(module)
    assert set(names) == {"hubkit-sha256"}  # hashed in its own thread, not the download's
    assert len(set(handed_out)) < len(handed_out)  # buffers came back for reuse
    assert _no_hasher_thread_left()


def test_a_digest_mismatch_leaves_nothing_in_the_cache_and_no_thread(hub_env, big_registry, server_factory, monkeypatch):
    """A valid archive (it extracts completely) whose bytes are not the ones the manifest pins."""
    _, root = big_registry
    manifest_path = os.path.join(root, "acme", "big", "1.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["sha256"] = hashlib.sha256(b"other bytes").hexdigest()
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    server = server_factory(root)
    _slow_hashes(monkeypatch, 0.005)
    with pytest.raises(IntegrityError, match="sha256"):
        resolve(f"{server.url}/acme/big/1")
    assert not os.path.isdir(hub_env.cache_dir) or os.listdir(hub_env.cache_dir) == []
    assert _no_hasher_thread_left()


def test_an_archive_found_bad_stops_the_download_and_its_hasher(hub_env, server_factory, tmp_path, monkeypatch):
    """The extraction fails mid-download while the hasher lags: the download stops, the hasher is closed."""
    _slow_hashes(monkeypatch, 0.02)
    bad = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff" * (8 << 20)  # a gzip header, then block type 3
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "bad.tar.gz").write_bytes(bad)
    server = server_factory(str(tmp_path / "served"))
    with pytest.raises(DownloadError, match="corrupted"):
        resolve(f"{server.url}/bad.tar.gz")
    assert _no_hasher_thread_left()
    assert not os.path.isdir(hub_env.cache_dir) or not [n for n in os.listdir(hub_env.cache_dir) if not n.startswith(".lock")]


def test_a_broken_connection_resumes_with_the_same_hasher(hub_env, big_registry, server_factory, monkeypatch):
    """A retry within the process continues the hash of the bytes already received (pieces still queued
    for the hasher included)."""
    module, root = big_registry
    server = server_factory(root)
    _slow_hashes(monkeypatch, 0.01)
    server.faults["/acme/big/1.tar.gz"] = ["reset"]
    path = resolve(f"{server.url}/acme/big/1")
    assert read_tree(path) == read_tree(module)
    ranges = [headers.get("Range") for request, headers in server.requests if request == "/acme/big/1.tar.gz"]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert _no_hasher_thread_left()
