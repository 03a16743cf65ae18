"""Extraction while downloading: identical files, and a bad archive leaves nothing behind.

The module here is big enough (a few MB: stored weights plus a deflated vocabulary, so several gzip
members) that the download arrives in many pieces and the extraction thread works on a growing file.
"""

import json
import os
import tarfile
import threading
import time
import zlib

import pytest

import hubkit
from hubkit.errors import DownloadError, IntegrityError
from hubkit.hub import resolve
from hubkit.hub.extract import BackgroundExtraction, UnsafeArchiveError, safe_extract
from hubkit.hub.registry import pack_module
from tests.hub.archives import build_archive, file_entry, special_entry
from tests.hub.helpers import make_fake_module, read_tree

BIG = "/acme/big/1.tar.gz"
_WEIGHTS = 3 << 20


@pytest.fixture
def big_module(tmp_path):
    path = make_fake_module(str(tmp_path / "big"), payload=os.urandom(_WEIGHTS), extra_files=3)
    with open(os.path.join(path, "assets", "vocab.txt"), "w") as f:
        f.write("".join(f"token{i}\n" for i in range(300_000)))  # compressible: its own deflated member
    return path


@pytest.fixture
def big_server(registry_server, big_module):
    hubkit.publish(big_module, registry_server.root, name="acme/big", validate=lambda d: {})
    registry_server.archive = os.path.join(registry_server.root, BIG[1:])
    return registry_server


@pytest.fixture
def spy(monkeypatch):
    """Records which thread copied each member and how far the download was at that moment."""
    from hubkit.hub import extract

    calls = []
    original = extract._copy_member

    def copy_member(stream, member, target, relative):
        calls.append((threading.current_thread().name, relative))
        return original(stream, member, target, relative)

    monkeypatch.setattr(extract, "_copy_member", copy_member)
    return calls


def _cache_leftovers(config):
    return sorted(os.listdir(config.cache_dir)) if os.path.isdir(config.cache_dir) else []


def test_pipelined_install_gives_identical_files(hub_env, big_server, big_module, spy, tmp_path):
    path = resolve(f"{big_server.url}/acme/big/1")
    assert {name for name, _ in spy} == {"hubkit-extract"}  # extracted by the second thread
    assert read_tree(path) == read_tree(big_module)
    reference = tmp_path / "reference"
    reference.mkdir()
    safe_extract(big_server.archive, str(reference), 1 << 30)
    assert read_tree(path) == read_tree(str(reference))
    with open(os.path.join(os.path.dirname(path), "complete.json")) as f:
        record = json.load(f)["files"]
    for relative, data in read_tree(big_module).items():
        # a registry download is sha256-pinned: a large file's CRC-32 is the one its gzip member states
        assert {k: v for k, v in record[relative].items() if k != "crc32_stated"} == {
            "size": len(data), "crc32": zlib.crc32(data)}
        assert record[relative].get("crc32_stated", False) == (len(data) >= 1 << 20)


def test_archive_is_multi_member(big_server):
    with open(big_server.archive, "rb") as f:
        raw = f.read()
    members = 0
    while raw:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        decompressor.decompress(raw)
        assert decompressor.eof
        raw = decompressor.unused_data
        members += 1
    assert members >= 2  # deflated headers and vocabulary, then the stored weights


def test_corruption_found_after_extraction_started_leaves_nothing(hub_env, big_server, monkeypatch):
    """The tail of the archive is damaged: files are already extracted when the sha256 mismatch shows."""
    with open(big_server.archive, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - _WEIGHTS // 4)  # inside the stored weights, near the end
        f.write(b"\xff" * 64)
    seen_during_download = []
    take = BackgroundExtraction.take

    def take_then_wait(self, offset, piece):
        taken = take(self, offset, piece)
        if offset > size // 2 and not seen_during_download:
            deadline = time.monotonic() + 10  # let the extraction thread write the first files
            while not os.listdir(self.destination) and time.monotonic() < deadline:
                time.sleep(0.005)
            seen_during_download.extend(os.listdir(self.destination))
        return taken

    monkeypatch.setattr(BackgroundExtraction, "take", take_then_wait)
    with pytest.raises(IntegrityError, match="sha256"):
        resolve(f"{big_server.url}/acme/big/1")
    assert seen_during_download  # extraction had started before the download finished
    assert _cache_leftovers(hub_env) == []  # no entry, no temp dir, no part file, no lock


def test_unpinned_corrupt_archive_url_leaves_nothing(hub_env, big_server):
    with open(big_server.archive, "rb") as f:
        data = bytearray(f.read())
    data[-_WEIGHTS // 4] ^= 0x01  # stored data: only the gzip CRC notices
    with open(os.path.join(big_server.root, "bad.tar.gz"), "wb") as f:
        f.write(data)
    with pytest.raises(DownloadError, match=r"corrupted or not a \.tar\.gz"):
        resolve(f"{big_server.url}/bad.tar.gz")
    assert _cache_leftovers(hub_env) == []


def test_resume_with_range_while_extracting(hub_env, big_server, big_module, spy):
    big_server.faults[BIG] = ["truncate"]
    path = resolve(f"{big_server.url}/acme/big/1")
    assert read_tree(path) == read_tree(big_module)
    ranges = [h.get("Range") for p, h in big_server.requests if p == BIG]
    assert ranges[0] is None and ranges[1].startswith("bytes=")


def test_restart_without_range_support_extracts_from_scratch(hub_env, big_server, big_module):
    big_server.range_support = False
    big_server.faults[BIG] = ["reset"]
    path = resolve(f"{big_server.url}/acme/big/1")
    assert read_tree(path) == read_tree(big_module)
    assert big_server.count(BIG) == 2


def _paths(tmp_path):
    archive = tmp_path / "a.tar.gz"
    dest = tmp_path / "dest"
    dest.mkdir()
    return str(archive), str(dest)


def test_background_extraction_follows_a_growing_file(tmp_path, big_module):
    archive, dest = _paths(tmp_path)
    with open(archive, "w+b") as out:
        pack_module(big_module, out)
        out.seek(0)
        raw = out.read()
    os.unlink(archive)
    with open(archive, "wb", buffering=0) as out, BackgroundExtraction(archive, dest, 1 << 30, 1000, "a") as job:
        for start in range(0, len(raw), 100_003):  # odd piece sizes: cuts land inside headers and members
            out.write(raw[start:start + 100_003])
            job.advance(min(start + 100_003, len(raw)))
        files = job.finish()
    assert read_tree(dest) == read_tree(big_module)
    assert sorted(f.path for f in files) == sorted(read_tree(big_module))


def test_background_extraction_abandoned_midway_stops_writing(tmp_path, big_module):
    archive, dest = _paths(tmp_path)
    with open(archive, "wb") as out:
        pack_module(big_module, out)
    job = BackgroundExtraction(archive, dest, 1 << 30, 1000, "a")
    job.advance(os.path.getsize(archive) // 2)
    job.abandon()  # joins the thread: nothing is written after this
    before = read_tree(dest)
    time.sleep(0.05)
    assert read_tree(dest) == before
    assert read_tree(dest) != read_tree(big_module)


def test_background_extraction_reports_unsafe_entries_on_finish(tmp_path):
    archive, dest = _paths(tmp_path)
    build_archive([file_entry("../evil", b"x")], path=archive)
    with BackgroundExtraction(archive, dest, 1 << 20, 1000, "a") as job:
        job.advance(os.path.getsize(archive))
        with pytest.raises(UnsafeArchiveError, match=r"'\.\.' component"):
            job.finish()
    assert not (tmp_path / "evil").exists()


def test_sparse_entries_are_refused(tmp_path):
    archive, dest = _paths(tmp_path)
    build_archive([special_entry("assets/holes", tarfile.GNUTYPE_SPARSE)], path=archive)
    with pytest.raises(UnsafeArchiveError, match="sparse file"):
        safe_extract(archive, dest, 1 << 20)


def _corrupt_copy(server, name):
    """Serves a copy of the archive with one bit flipped inside the stored weights; returns its URL."""
    with open(server.archive, "rb") as f:
        data = bytearray(f.read())
    data[-_WEIGHTS // 4] ^= 0x01  # stored payload: only the CRC (unpinned) or the sha256 (pinned) notices
    with open(os.path.join(server.root, name), "wb") as f:
        f.write(data)
    return f"{server.url}/{name}"


def test_pinned_corrupt_stored_payload_is_caught_by_the_sha256(hub_env, big_server):
    import hashlib

    with open(big_server.archive, "rb") as f:
        pin = hashlib.sha256(f.read()).hexdigest()
    url = _corrupt_copy(big_server, "bad.tar.gz")
    with pytest.raises(IntegrityError, match="sha256"):  # CRCs skipped: the pin proves the content
        resolve(f"{url}#sha256={pin}")
    assert _cache_leftovers(hub_env) == []
    good = os.path.join(big_server.root, "good.tar.gz")
    os.link(big_server.archive, good)
    assert os.path.isfile(os.path.join(resolve(f"{big_server.url}/good.tar.gz#sha256={pin}"), "hubkit_module.pb"))
