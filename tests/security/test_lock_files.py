"""Classes 1, 7 and 9: lock files, descriptors and completion records are untrusted; special lock paths; clocks.

A shared cache directory may be written by another user: a planted lock must never make hubkit delete
anything outside the cache, a lock path occupied by a directory or FIFO must fail with a named error
(not hang or crash), and a lock whose mtime lies in the future must still go stale.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from hubkit.errors import ResolveError
from hubkit.hub import Cache, HubConfig
from hubkit.hub.cache import InstallContext
from hubkit.hub.extract import ExtractedFile
from hubkit.hub.handles import cache_key
from hubkit.hub.lock import LockFile, LockHolder

KEY = cache_key("https://h/acme/m/1")


def _producer(ctx: InstallContext):
    path = os.path.join(ctx.module_dir, "hubkit_module.pb")
    with open(path, "wb") as f:
        f.write(b"\x08\x01")
    return [ExtractedFile("hubkit_module.pb", 2, crc32=0)], {}


def _config(tmp_path, **kw) -> HubConfig:
    return HubConfig(cache_dir=str(tmp_path / "cache"), lock_timeout=kw.pop("lock_timeout", 0.3), lock_poll=0.02, **kw)


def _plant_lock(cache_dir, lock_id, host=None, pid=None, mtime=None):
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"{KEY}.lock")
    with open(path, "w") as f:
        json.dump({"host": host or socket.gethostname(), "pid": pid if pid is not None else 2**22 + 12345,
                   "id": lock_id}, f)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.mark.parametrize("lock_id", [
    "../../victim", "/abs/victim", "..", "x" * 32, "A" * 32, "0" * 31, "0" * 33, "0" * 32 + "\n", "", 7, None, ["a"],
])
def test_a_planted_lock_id_never_reaches_a_deleted_path(tmp_path, lock_id):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    cache_dir = tmp_path / "cache"
    # Variants of the attack: the id names a path outside the cache, relative or absolute.
    (tmp_path / "cache").mkdir()
    for suffix in ("part", "tmp"):
        os.symlink(str(victim), str(cache_dir / f".{KEY}.{lock_id}.{suffix}")) if isinstance(lock_id, str) and "/" not in lock_id and lock_id not in ("", "..") else None
    _plant_lock(str(cache_dir), lock_id, mtime=time.time() - 3600)  # stale: it will be taken over
    path = Cache(_config(tmp_path)).get_or_install(KEY, "https://h/acme/m/1", _producer)
    assert os.path.isfile(os.path.join(path, "hubkit_module.pb"))
    assert (victim / "precious").read_text() == "keep me"


@pytest.mark.parametrize("text", [
    '{"host": "h", "pid": 1, "id": "../../x"}', '{"host": "../h", "pid": 1, "id": "' + "a" * 32 + '"}',
    '{"host": "h", "pid": -1, "id": "' + "a" * 32 + '"}', '{"host": "h", "pid": true, "id": "' + "a" * 32 + '"}',
    '{"host": "h", "pid": 1e400, "id": "' + "a" * 32 + '"}', "[" * 100_000, '"just a string"', "\xff\xfe", "x" * 10_000,
])
def test_lock_holder_parsing_is_strict(text):
    assert LockHolder.parse(text) is None


def test_completion_record_paths_are_checked(tmp_path):
    """A record naming ../../ files (or absolute ones) is not a hit and is never followed by `cache verify`."""
    cache = Cache(_config(tmp_path))
    entry = tmp_path / "cache" / KEY
    (entry / "module").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_bytes(b"12345")
    for name in ["../../outside", str(outside), "a/../../../outside", "a//b", "./x", ""]:
        (entry / "complete.json").write_text(json.dumps({"files": {name: {"size": 5}}}))
        assert cache.lookup(KEY) is None, name
        [listed] = list(cache.entries())
        assert not listed.complete
        assert cache.verify(listed) and "completion record" in cache.verify(listed)[0]


@pytest.mark.parametrize("record", [
    b"[" * 200_000, b'{"files": {"a": {"size": true}}}', b'{"files": {"a": {"size": -1}}}',
    b'{"files": {"a": {"size": 1, "sha256": 5}}}', b'{"files": []}', b"\x00" * 100,
])
def test_malformed_completion_records_are_misses(tmp_path, record):
    entry = tmp_path / "cache" / KEY
    (entry / "module").mkdir(parents=True)
    (entry / "module" / "a").write_bytes(b"x")
    (entry / "complete.json").write_bytes(record)
    (entry / "descriptor.json").write_bytes(b"[" * 100_000)
    cache = Cache(_config(tmp_path))
    assert cache.lookup(KEY) is None
    [listed] = list(cache.entries())
    assert listed.descriptor == {} and listed.handle == "?"


def test_descriptor_records_host_and_pid(tmp_path):
    path = Cache(_config(tmp_path)).get_or_install(KEY, "https://h/acme/m/1", _producer)
    with open(os.path.join(os.path.dirname(path), "descriptor.json")) as f:
        descriptor = json.load(f)
    assert descriptor["host"] == socket.gethostname() and descriptor["pid"] == os.getpid()


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink-to-fifo", "symlink-to-dir", "dangling-symlink"])
def test_lock_path_occupied_by_something_else_is_a_named_error(tmp_path, kind):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    lock = cache_dir / f"{KEY}.lock"
    target = tmp_path / "target"
    if kind == "directory":
        lock.mkdir()
    elif kind == "fifo":
        os.mkfifo(lock)
    elif kind == "symlink-to-fifo":
        os.mkfifo(target)
        lock.symlink_to(target)
    elif kind == "symlink-to-dir":
        target.mkdir()
        lock.symlink_to(target)
    else:
        lock.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ResolveError, match=r"Lock path .* is a (directory|FIFO|symbolic link), not a lock file"):
        Cache(_config(tmp_path)).get_or_install(KEY, "https://h/acme/m/1", _producer)
    assert os.path.lexists(lock)  # not ours: left alone


@pytest.mark.parametrize("future", [60.0, 3600.0, 10 * 365 * 86400.0])
def test_a_lock_from_the_future_still_goes_stale(tmp_path, future):
    """Clock skew: a live-looking holder (another host) whose lock's mtime lies in the future."""
    cache_dir = str(tmp_path / "cache")
    _plant_lock(cache_dir, "b" * 32, host="other-host", pid=1, mtime=time.time() + future)
    start = time.monotonic()
    path = Cache(_config(tmp_path, lock_timeout=0.3)).get_or_install(KEY, "https://h/acme/m/1", _producer)
    assert os.path.isfile(os.path.join(path, "hubkit_module.pb"))
    assert time.monotonic() - start < 10


def test_index_lock_from_the_future_does_not_block_publish(tmp_path, fake_module, monkeypatch):
    from hubkit.hub import registry
    from tests.hub.helpers import fake_validate

    root = tmp_path / "reg"
    root.mkdir()
    lock = root / ".index.lock"
    lock.write_text(json.dumps({"host": "other-host", "pid": 1, "id": "c" * 32}))
    os.utime(lock, (time.time() + 86400, time.time() + 86400))
    monkeypatch.setattr(registry, "INDEX_LOCK_STALE_AFTER", 0.3)
    monkeypatch.setattr(registry, "_sleep", lambda s: time.sleep(min(s, 0.05)))
    registry.publish(fake_module, str(root), "acme/m", validate=fake_validate)
    assert (root / "acme" / "m" / "1.json").is_file()


def test_lock_file_progress_is_seen_without_trusting_the_clock(tmp_path):
    """A lock that keeps changing (its holder touches it) is not stale, whatever its mtime says."""
    path = _plant_lock(str(tmp_path / "cache"), "d" * 32, host="other-host", pid=1, mtime=time.time() + 3600)
    waiter = LockFile(path, stale_after=0.2)
    for i in range(5):
        os.utime(path, (time.time() + 3600 + i, time.time() + 3600 + i))  # the holder makes progress
        assert waiter.take_over_if_stale() is None
        time.sleep(0.1)
    time.sleep(0.25)
    assert waiter.take_over_if_stale() is not None


def test_cache_dir_that_is_a_file(tmp_path, monkeypatch):
    from hubkit import resolve

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(blocker))
    archive = tmp_path / "m.tar.gz"
    from tests.security.hostile import gz, tar_bytes

    archive.write_bytes(gz(tar_bytes([])))
    with pytest.raises(ResolveError, match=r"cache directory .*not-a-dir.* cannot be created"):
        resolve(str(archive))
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(blocker / "sub"))
    with pytest.raises(ResolveError, match=r"cache directory .* cannot be created"):
        resolve(str(archive))


def test_touching_a_lock_replaced_by_a_link_never_touches_the_links_target(tmp_path):
    from hubkit.hub.lock import LockFile

    victim = tmp_path / "victim"
    victim.write_text("x")
    os.utime(victim, (1_000_000, 1_000_000))
    lock = LockFile(str(tmp_path / "k.lock"), 600)
    assert lock.try_acquire()
    os.unlink(lock.path)  # taken over, then replaced by another user's link
    os.symlink(victim, lock.path)
    lock.touch(min_interval=0)
    assert victim.stat().st_mtime == 1_000_000
