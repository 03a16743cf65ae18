"""Files another user of a shared cache directory plants at hubkit's temp paths are never trusted or followed.

A partial download is resumed only from this user's own private file (owned by this user, writable by
nobody else): bytes another user left there would make an unpinned archive URL install foreign content,
and a pinned one download in full before its sha256 caught them. The resume record is written as a new
private file, never through a link planted at its path. A device or FIFO at a download path is never
written to, read from or removed.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from hubkit import resolve
from hubkit.errors import DownloadError
from hubkit.hub import http
from hubkit.hub.handles import cache_key, normalize_handle
from tests.security.hostile import entry, gz, tar_bytes

PAYLOAD = os.urandom(256 << 10)
ARCHIVE = gz(tar_bytes([entry("variables/v.bin", PAYLOAD)]))
FOREIGN = gz(tar_bytes([entry("variables/v.bin", b"planted by another user" * 1000)]))


def _plant_resume(cache_dir: str, handle: str, part: bytes, mode: int = 0o600, uid: int | None = None,
                  link_to: str | None = None) -> str:
    key = cache_key(normalize_handle(handle))
    os.makedirs(cache_dir, exist_ok=True)
    part_path = os.path.join(cache_dir, f".{key}.resume.part")
    if link_to is not None:
        os.symlink(link_to, part_path)
    else:
        with open(part_path, "wb") as f:
            f.write(part)
        os.chmod(part_path, mode)
        if uid is not None:
            os.chown(part_path, uid, -1)
    with open(os.path.join(cache_dir, f".{key}.resume.info"), "w") as f:  # a valid record: the URL and its ETag
        json.dump({"url": handle, "validator": '"v1"'}, f)
    return part_path


def _ranges(hostile, path: str) -> list[str]:
    return [h["Range"] for p, h in hostile.requests if p == path and "Range" in h]


@pytest.mark.parametrize("planted", ["another user's", "group-writable", "world-writable", "a link to a victim"])
def test_a_partial_download_not_private_to_this_user_is_never_resumed(hub_env, hostile, tmp_path, planted):
    if planted == "another user's" and os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    hostile.serve_bytes("/m.tar.gz", ARCHIVE)
    handle = f"{hostile.url}/m.tar.gz"  # unpinned: nothing but the resume check stands between FOREIGN and the cache
    victim = tmp_path / "victim"
    victim.write_bytes(FOREIGN[:100])
    _plant_resume(hub_env.cache_dir, handle, FOREIGN[:100],
                  mode={"group-writable": 0o620, "world-writable": 0o602}.get(planted, 0o600),
                  uid=65534 if planted == "another user's" else None,
                  link_to=str(victim) if planted == "a link to a victim" else None)
    path = resolve(handle)
    assert Path(path, "variables", "v.bin").read_bytes() == PAYLOAD
    assert _ranges(hostile, "/m.tar.gz") == []  # started over: the planted bytes were not continued
    assert victim.read_bytes() == FOREIGN[:100]  # a link was removed, never followed


def test_this_users_own_partial_download_still_resumes(hub_env, hostile):
    hostile.serve_bytes("/m.tar.gz", ARCHIVE)
    handle = f"{hostile.url}/m.tar.gz"
    _plant_resume(hub_env.cache_dir, handle, ARCHIVE[: len(ARCHIVE) // 2])
    path = resolve(handle)
    assert Path(path, "variables", "v.bin").read_bytes() == PAYLOAD
    assert _ranges(hostile, "/m.tar.gz") == [f"bytes={len(ARCHIVE) // 2}-"]


def test_the_resume_record_is_never_written_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    info = tmp_path / ".info"
    os.symlink(victim, info)
    http._write_validator(str(info), "http://h/m.tar.gz", '"v1"')
    assert victim.read_text() == "precious"
    assert not info.is_symlink() and stat.S_IMODE(info.stat().st_mode) == 0o600
    assert http._read_validator(str(info), "http://h/m.tar.gz") == '"v1"'


def test_a_fifo_at_the_resume_record_or_download_path_is_left_alone_without_hanging(tmp_path):
    info, part = tmp_path / ".info", tmp_path / ".part"
    os.mkfifo(info)
    os.mkfifo(part)
    done = threading.Event()

    def run() -> None:
        http._write_validator(str(info), "http://h/m.tar.gz", '"v1"')  # logged, not kept
        with pytest.raises(DownloadError, match="not a regular file"):
            http._open_download_file(str(part))
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert done.is_set()
    assert stat.S_ISFIFO(os.lstat(info).st_mode) and stat.S_ISFIFO(os.lstat(part).st_mode)  # never removed


def test_a_download_file_this_user_cannot_write_is_replaced(tmp_path):
    part = tmp_path / ".part"
    part.write_bytes(b"x" * 10)
    os.chmod(part, 0o444)
    if os.geteuid() == 0:
        os.chown(part, 65534, -1)
    fd = http._open_download_file(str(part))
    try:
        info = os.fstat(fd)
        assert info.st_size == 0 and info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == 0o600
    finally:
        os.close(fd)


def test_the_temp_entry_is_private_while_it_is_built_even_with_umask_0(hub_env, tmp_path, monkeypatch):
    """In a cache shared by a group, others must not plant links in an entry being built; it opens up when done."""
    from hubkit.hub import resolvers

    archive = str(tmp_path / "m.tar.gz")
    with open(archive, "wb") as f:
        f.write(ARCHIVE)
    modes = []
    real = resolvers.extract_stream

    def extract(raw, destination, *args, **kwargs):
        modes.append(stat.S_IMODE(os.stat(os.path.dirname(destination)).st_mode))
        return real(raw, destination, *args, **kwargs)

    monkeypatch.setattr(resolvers, "extract_stream", extract)
    old = os.umask(0)
    try:
        path = resolve(archive)
    finally:
        os.umask(old)
    assert modes == [0o700]
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755
    for name in ("descriptor.json", "complete.json"):
        assert stat.S_IMODE(os.stat(os.path.join(os.path.dirname(path), name)).st_mode) == 0o644


@pytest.mark.parametrize("how", ["rewritten in place", "replaced by another file"])
def test_a_pinned_local_archive_changed_while_it_is_installed_never_enters_the_cache(hub_env, tmp_path, monkeypatch,
                                                                                    how):
    """The bytes checked against the pin are the bytes extracted (one pass over one descriptor)."""
    import hashlib

    from hubkit.errors import IntegrityError
    from hubkit.hub import resolvers

    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(ARCHIVE)
    real = resolvers.extract_stream

    def extract(raw, destination, *args, **kwargs):  # another user swaps the content once hubkit has started
        if how == "rewritten in place":
            with open(archive, "r+b") as f:
                f.write(FOREIGN)
        else:
            (tmp_path / "other").write_bytes(FOREIGN)
            os.replace(tmp_path / "other", archive)
        return real(raw, destination, *args, **kwargs)

    monkeypatch.setattr(resolvers, "extract_stream", extract)
    handle = f"{archive}#sha256={hashlib.sha256(ARCHIVE).hexdigest()}"
    if how == "rewritten in place":
        with pytest.raises(IntegrityError):
            resolve(handle)
        assert [n for n in os.listdir(hub_env.cache_dir) if not n.startswith(".")] == []
    else:  # the descriptor still reads the file that was checked
        assert Path(resolve(handle), "variables", "v.bin").read_bytes() == PAYLOAD


def test_a_pinned_local_onnx_model_is_copied_and_hashed_in_one_pass(hub_env, tmp_path, monkeypatch):
    import hashlib

    from hubkit.errors import IntegrityError
    from hubkit.hub import onnx_file

    model = b"\x08\x07" + os.urandom(3 << 20)  # starts like a ModelProto; the bytes are what matter here
    (tmp_path / "a.onnx").write_bytes(model)
    (tmp_path / "b.onnx").write_bytes(b"\x08\x07")  # a second model: the pinned one is copied into the cache
    with pytest.raises(IntegrityError):
        resolve(f"file://{tmp_path}/a.onnx#sha256={'0' * 64}")
    real = onnx_file.open_regular

    def rewritten_after_open(path, *args, **kwargs):  # another user rewrites the file as hubkit starts copying it
        context = real(path, *args, **kwargs)
        with open(path, "r+b") as f:
            f.write(b"\x08\x07planted")
        return context

    monkeypatch.setattr(onnx_file, "open_regular", rewritten_after_open)
    with pytest.raises(IntegrityError):
        resolve(f"file://{tmp_path}/a.onnx#sha256={hashlib.sha256(model).hexdigest()}")
    monkeypatch.setattr(onnx_file, "open_regular", real)  # not undo(): that would drop hub_env's cache too
    (tmp_path / "a.onnx").write_bytes(model)
    directory = resolve(f"file://{tmp_path}/a.onnx#sha256={hashlib.sha256(model).hexdigest()}")
    copied = Path(directory, "a.onnx")
    assert copied.read_bytes() == model and stat.S_IMODE(copied.stat().st_mode) == 0o644


@pytest.mark.parametrize("abandoned", [False, True])
def test_the_extraction_reads_the_file_the_download_wrote_not_what_its_path_names_later(tmp_path, abandoned):
    """Another user renames a file of theirs over the download's temp path: the verified bytes are extracted."""
    from hubkit.hub.extract import BackgroundExtraction

    part, destination = tmp_path / ".part", tmp_path / "dest"
    destination.mkdir()
    with BackgroundExtraction(str(part), str(destination), 1 << 30, 1000, "test") as extraction:
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            extraction.use_descriptor(fd)
            os.write(fd, ARCHIVE)
            (tmp_path / "foreign").write_bytes(FOREIGN)
            os.replace(tmp_path / "foreign", part)  # before the extraction opened anything
            if abandoned:
                extraction.restart()  # the download started over: the finished file is extracted at the end
            else:
                extraction.advance(len(ARCHIVE))
            files = extraction.finish()
        finally:
            os.close(fd)
    assert [f.path for f in files if f.path.endswith("v.bin")] == ["variables/v.bin"]
    assert (destination / "variables" / "v.bin").read_bytes() == PAYLOAD


def test_a_downloaded_onnx_model_replaced_before_it_is_installed_is_refused(hub_env, hostile):
    from hubkit.errors import IntegrityError

    model = b"\x08\x07" + os.urandom(1 << 20)
    hostile.serve_bytes("/m.onnx", model, content_type="application/octet-stream")
    real = http.HttpClient.download

    def download_then_swap(self, url, destination, *args, **kwargs):
        result = real(self, url, destination, *args, **kwargs)
        other = destination + ".other"
        with open(other, "wb") as f:
            f.write(b"\x08\x07planted")
        os.replace(other, destination)  # another user's file, renamed over the verified download
        return result

    import unittest.mock

    with unittest.mock.patch.object(http.HttpClient, "download", download_then_swap), pytest.raises(IntegrityError):
        resolve(f"{hostile.url}/m.onnx")
    assert [n for n in os.listdir(hub_env.cache_dir) if not n.startswith(".") and not n.endswith(".lock")] == []
