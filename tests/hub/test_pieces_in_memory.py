"""The download hands received pieces to the extraction thread in memory; that thread writes the file.

``BackgroundExtraction.take`` queues a piece (at most ``_HANDOFF_PIECES`` wait); the extraction thread
writes it to the download file, in order, then inflates it from memory. These tests drive that
mechanism directly: what the file holds in every case (so a download stays resumable), that a failing
extraction stops a download even while it waits for room, and that a buffer is never reused while a
view of it is alive. Every wait is bounded.
"""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from hubkit.errors import DownloadError
from hubkit.hub import extract
from hubkit.hub.extract import BackgroundExtraction
from hubkit.hub.registry import pack_module
from tests.hub.helpers import make_fake_module, read_tree

PIECE = 100_003  # odd: cuts land inside headers and gzip members


@pytest.fixture
def archive(tmp_path):
    module = make_fake_module(str(tmp_path / "module"), payload=os.urandom(3 << 20), extra_files=3)
    with open(tmp_path / "module.tar.gz", "w+b") as out:
        pack_module(module, out)
        out.seek(0)
        return module, out.read()


@pytest.fixture
def download_file(tmp_path):
    """(path, descriptor) of an empty private download file, and a fresh destination directory."""
    path = str(tmp_path / ".part")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    (tmp_path / "dest").mkdir()
    yield path, fd, str(tmp_path / "dest")
    os.close(fd)


def _take_all(job, data, piece=PIECE):
    for start in range(0, len(data), piece):
        assert job.take(start, memoryview(bytearray(data[start:start + piece])))


def _slow_writes(monkeypatch, seconds):
    real = extract._write_piece

    def slow(*args):
        time.sleep(seconds)
        real(*args)

    monkeypatch.setattr(extract, "_write_piece", slow)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_taken_pieces_are_extracted_and_written_to_the_file_in_order(archive, download_file):
    module, data = archive
    path, fd, dest = download_file
    with BackgroundExtraction(path, dest, 1 << 30, 1000, "a") as job:
        job.use_descriptor(fd)
        _take_all(job, data)
        files = job.finish()
    assert read_tree(dest) == read_tree(module)
    assert sorted(f.path for f in files) == sorted(read_tree(module))
    assert _read(path) == data


@pytest.mark.parametrize("slow", ["extraction", "writes", "download"])
def test_the_file_grows_without_holes_whichever_thread_writes(archive, download_file, monkeypatch, slow):
    """Both threads write pieces (the download when the extraction is behind): every write starts exactly
    where the file ends, so a process killed at any moment leaves an exact start of the body."""
    module, data = archive
    path, fd, dest = download_file
    writers, real_write, real_inflate = [], extract._write_piece, extract._Gunzip.read_piece

    def checked_write(descriptor, offset, piece, source):
        assert os.fstat(descriptor).st_size == offset  # appends, never leaves a hole
        writers.append(threading.current_thread().name)
        if slow == "writes":
            time.sleep(0.005)
        real_write(descriptor, offset, piece, source)

    def slow_inflate(self, limit):
        time.sleep(0.01)
        return real_inflate(self, limit)

    monkeypatch.setattr(extract, "_write_piece", checked_write)
    if slow == "extraction":
        monkeypatch.setattr(extract._Gunzip, "read_piece", slow_inflate)
    with BackgroundExtraction(path, dest, 1 << 30, 1000, "a") as job:
        job.use_descriptor(fd)
        for start in range(0, len(data), 1 << 16):
            assert job.take(start, memoryview(bytearray(data[start:start + (1 << 16)])))
            if slow == "download":
                time.sleep(0.002)
        job.finish()
    assert read_tree(dest) == read_tree(module)
    assert _read(path) == data
    if slow == "extraction":  # behind from the start: the download wrote the file
        assert "hubkit-extract" not in set(writers[8:])
    if slow == "download":  # the extraction keeps up: it writes the file
        assert writers.count("hubkit-extract") > len(writers) // 2


def test_a_resumed_start_is_read_from_the_file_and_the_rest_from_memory(archive, download_file):
    module, data = archive
    path, fd, dest = download_file
    half = len(data) // 2
    os.pwrite(fd, data[:half], 0)  # what an interrupted download left
    with BackgroundExtraction(path, dest, 1 << 30, 1000, "a") as job:
        job.use_descriptor(fd)
        job.advance(half)
        for start in range(half, len(data), PIECE):
            assert job.take(start, memoryview(data[start:start + PIECE]))
        job.finish()
    assert read_tree(dest) == read_tree(module)
    assert _read(path) == data


def test_pieces_still_waiting_when_the_block_is_left_are_written(archive, download_file, monkeypatch):
    """A download that failed on the network leaves every byte it received on disk, to resume from."""
    _, data = archive
    path, fd, dest = download_file
    _slow_writes(monkeypatch, 0.02)
    monkeypatch.setattr(extract, "_DOWNLOAD_WRITES_AT", 1 << 30)  # the pieces wait for the extraction thread
    pieces = extract._HANDOFF_PIECES  # all taken at once: none waits for room
    with BackgroundExtraction(path, dest, 1 << 30, 1000, "a") as job:
        job.use_descriptor(fd)
        _take_all(job, data[: pieces * PIECE])
        assert os.path.getsize(path) < pieces * PIECE  # most still wait in memory
    assert _read(path) == data[: pieces * PIECE]


def test_a_download_without_a_descriptor_is_not_taken_over(archive, tmp_path):
    _, data = archive
    (tmp_path / "dest").mkdir()
    with BackgroundExtraction(str(tmp_path / ".part"), str(tmp_path / "dest"), 1 << 30, 1000, "a") as job:
        assert not job.take(0, memoryview(data[:PIECE]))  # the download writes the file itself
        job.abandon()


def test_after_a_restart_no_old_piece_is_written_and_none_is_taken(archive, download_file, monkeypatch):
    """The server cannot resume: the file is truncated and the download starts over writing it itself."""
    _, data = archive
    path, fd, dest = download_file
    _slow_writes(monkeypatch, 0.02)
    monkeypatch.setattr(extract, "_DOWNLOAD_WRITES_AT", 1 << 30)  # the pieces wait for the extraction thread
    with BackgroundExtraction(path, dest, 1 << 30, 1000, "a") as job:
        job.use_descriptor(fd)
        _take_all(job, data[: 8 * PIECE])
        job.restart()
        os.ftruncate(fd, 0)  # what the download does next
        time.sleep(0.1)
        assert os.path.getsize(path) == 0  # nothing of the old body lands after the truncation
        assert not job.take(0, memoryview(data[:PIECE]))
        os.pwrite(fd, data, 0)
        job.advance(len(data))
        assert job.finish()
    assert os.path.getsize(path) == len(data)


def test_a_failing_extraction_stops_a_download_that_waits_for_room(download_file, monkeypatch):
    """The queue is full and the download waits in take(); the extraction then finds the archive bad."""
    path, fd, dest = download_file
    monkeypatch.setattr(extract, "_HANDOFF_PIECES", 2)
    _slow_writes(monkeypatch, 0.3)  # the first piece is still being written when the queue fills
    garbage = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff" * PIECE  # a gzip header, then block type 3
    outcome = []

    def download(job):
        try:
            for number in range(1000):  # an endless body, as far as the download knows
                job.take(number * len(garbage), memoryview(bytearray(garbage)))
            outcome.append("never stopped")
        except DownloadError as exc:
            outcome.append(exc)

    with BackgroundExtraction(path, dest, 1 << 30, 1000, "bad") as job:
        job.use_descriptor(fd)
        thread = threading.Thread(target=download, args=(job,), daemon=True)
        thread.start()
        thread.join(timeout=20)
        assert not thread.is_alive(), "the download kept waiting after the extraction failed"
    assert isinstance(outcome[0], DownloadError) and "corrupted" in str(outcome[0])
    assert os.path.getsize(path) <= 4 * len(garbage)  # it stopped within a few pieces


def test_a_download_file_that_cannot_be_written_stops_the_download_naming_it(archive, download_file, monkeypatch):
    _, data = archive
    path, fd, dest = download_file

    def disk_full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(extract.os, "pwrite", disk_full)
    with BackgroundExtraction(path, dest, 1 << 30, 1000, "https://h/m.tar.gz") as job:
        job.use_descriptor(fd)
        with pytest.raises(DownloadError, match=r"Cannot write the download of 'https://h/m.tar.gz' to its temp file: "
                                                r"No space left on device"):
            deadline = time.monotonic() + 20
            for start in range(0, 1000 * PIECE, PIECE):
                job.take(start, memoryview(bytearray(data[:PIECE])))
                assert time.monotonic() < deadline
        with pytest.raises(DownloadError, match="No space left"):
            job.finish()


def test_a_buffer_is_reused_only_once_no_view_of_it_is_left(download_file):
    path, _fd, dest = download_file
    with BackgroundExtraction(path, dest, 1 << 30, 1000, "a") as job:
        buffer = job.piece_buffer(4096)
        piece = memoryview(buffer)[:100]
        kept = piece[10:20]  # someone still holds a view of the piece
        job._recycle(piece)
        assert job.piece_buffer(4096) is not buffer  # dropped, never handed out again
        del kept
        job._recycle(memoryview(buffer))
        assert job.piece_buffer(4096) is buffer  # nothing looks at it: reused
        job._recycle(memoryview(buffer))
        assert job.piece_buffer(8192) is not buffer  # a buffer of another size is not
        job.abandon()


def test_the_download_receives_into_recycled_buffers(hub_env, registry_server, tmp_path, monkeypatch):
    """End to end over HTTP: the pieces are taken, and the buffers are reused rather than allocated anew."""
    import hubkit

    module = make_fake_module(str(tmp_path / "large"), payload=os.urandom(24 << 20))  # more pieces than may wait
    hubkit.publish(module, registry_server.root, name="acme/pieces", validate=lambda d: {})
    given = []  # the buffers themselves (no views): kept alive, so their ids stay distinct
    real = BackgroundExtraction.piece_buffer

    def spy(self, size):
        buffer = real(self, size)
        given.append(buffer)
        return buffer

    monkeypatch.setattr(BackgroundExtraction, "piece_buffer", spy)
    path = hubkit.resolve(f"{registry_server.url}/acme/pieces/1")
    assert read_tree(path) == read_tree(module)
    allocated = len({id(b) for b in given})
    assert len(given) > extract._HANDOFF_PIECES + 4  # more pieces than can wait at once
    assert allocated <= extract._HANDOFF_PIECES + 4  # the waiting ones, plus the few in hand: the others reused
