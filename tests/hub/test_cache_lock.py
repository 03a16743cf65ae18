"""The cache protocol: locks, takeovers, concurrent and killed downloaders, failures, maintenance."""

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from hubkit.errors import DownloadError
from hubkit.hub import Cache, HubConfig, resolve
from hubkit.hub.cache import InstallContext
from hubkit.hub.extract import ExtractedFile
from hubkit.hub.lock import LockFile
from tests.hub.helpers import REPO

ARCHIVE = "/acme/echo/1.tar.gz"


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(10)
    return process.pid


def _write_lock(path, host, pid, lock_id="5" * 32, age=0.0):
    with open(path, "w") as f:
        json.dump({"host": host, "pid": pid, "id": lock_id}, f)
    if age:
        past = time.time() - age
        os.utime(path, (past, past))


def _producer(calls, content=b"data"):
    def produce(ctx: InstallContext):
        calls.append(ctx)
        with open(os.path.join(ctx.module_dir, "hubkit_module.pb"), "wb") as f:
            f.write(content)
        return [ExtractedFile("hubkit_module.pb", len(content), hashlib.sha256(content).hexdigest())], {"source": "x"}

    return produce


def test_lock_protocol(tmp_path):
    path = str(tmp_path / "k.lock")
    first, second = LockFile(path, 60), LockFile(path, 60)
    assert first.try_acquire()
    assert not second.try_acquire()
    holder = second.holder()
    assert (holder.host, holder.pid, holder.lock_id) == (socket.gethostname(), os.getpid(), first.lock_id)
    assert second.take_over_if_stale() is None  # alive and fresh
    second.release()  # not the holder: must not remove the lock
    assert os.path.exists(path)
    first.release()
    assert not os.path.exists(path)
    assert second.try_acquire()


def test_dead_holder_is_taken_over_at_once(tmp_path):
    path = str(tmp_path / "k.lock")
    _write_lock(path, socket.gethostname(), _dead_pid())
    taken = LockFile(path, stale_after=3600).take_over_if_stale()
    assert taken is not None and taken.lock_id == "5" * 32
    assert not os.path.exists(path)


def test_live_holder_without_progress_is_taken_over_after_timeout(tmp_path):
    path = str(tmp_path / "k.lock")
    _write_lock(path, "another-host", 1, age=5)  # cannot tell if it is alive: only progress counts
    assert LockFile(path, stale_after=60).take_over_if_stale() is None
    assert LockFile(path, stale_after=2).take_over_if_stale() is not None
    _write_lock(path, socket.gethostname(), os.getpid(), age=5)
    assert LockFile(path, stale_after=60).take_over_if_stale() is None


def test_holder_touch_records_progress(tmp_path):
    lock = LockFile(str(tmp_path / "k.lock"), 60)
    assert lock.try_acquire()
    past = time.time() - 100
    os.utime(lock.path, (past, past))
    lock.touch(min_interval=0)
    assert time.time() - os.stat(lock.path).st_mtime < 50


def test_waiting_is_logged_then_stuck_holder_taken_over(tmp_path, caplog):
    config = HubConfig(cache_dir=str(tmp_path / "cache"), lock_timeout=0.4, lock_poll=0.05)
    os.makedirs(config.cache_dir)
    key = "a" * 40
    _write_lock(os.path.join(config.cache_dir, f"{key}.lock"), socket.gethostname(), os.getpid())
    calls = []
    with caplog.at_level(logging.INFO, logger="hubkit.hub"):
        path = Cache(config).get_or_install(key, "h", _producer(calls))
    assert len(calls) == 1 and os.path.isfile(os.path.join(path, "hubkit_module.pb"))
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "Waiting for 'h'" in messages and "made no progress" in messages
    assert not os.path.exists(os.path.join(config.cache_dir, f"{key}.lock"))


def test_failed_download_leaves_nothing_behind(tmp_path):
    config = HubConfig(cache_dir=str(tmp_path / "cache"))

    def produce(ctx):
        with open(ctx.part_path, "wb") as f:
            f.write(b"partial")
        with open(os.path.join(ctx.module_dir, "graph.pb"), "wb") as f:
            f.write(b"half")
        raise DownloadError("boom")

    with pytest.raises(DownloadError, match="boom"):
        Cache(config).get_or_install("b" * 40, "h", produce)
    assert os.listdir(config.cache_dir) == []


def test_completed_entry_found_after_acquiring_lock_is_not_downloaded_again(tmp_path):
    config = HubConfig(cache_dir=str(tmp_path / "cache"))
    calls = []
    cache = Cache(config)
    first = cache.get_or_install("c" * 40, "h", _producer(calls))
    assert cache.get_or_install("c" * 40, "h", _producer(calls)) == first
    assert len(calls) == 1


def test_concurrent_threads_download_once(hub_env, registry_server):
    registry_server.drip = 0.002
    handle = f"{registry_server.url}/acme/echo/1"
    results, errors = [], []

    def worker():
        try:
            results.append(resolve(handle))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(set(results)) == 1 and len(results) == 4
    assert registry_server.count(ARCHIVE) == 1


_RESOLVE_AND_DIGEST = """
import hashlib, os, sys
import hubkit
path = hubkit.resolve(sys.argv[1])
digest = hashlib.sha256()
for d, _, files in sorted(os.walk(path)):
    for name in sorted(files):
        digest.update(name.encode())
        with open(os.path.join(d, name), "rb") as f:
            digest.update(f.read())
print(path, digest.hexdigest())
"""


@pytest.mark.slow
def test_eight_processes_download_once_and_get_identical_modules(hub_env, registry_server):
    registry_server.drip = 0.005  # slow enough that all eight overlap with the download
    handle = f"{registry_server.url}/acme/echo/1"
    processes = [subprocess.Popen([sys.executable, "-c", _RESOLVE_AND_DIGEST, handle], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.strip())
    assert len(set(outputs)) == 1
    assert registry_server.count(ARCHIVE) == 1
    assert registry_server.count("/acme/echo/1.json") == 1


@pytest.mark.slow
def test_downloader_killed_mid_download_next_resolve_succeeds(hub_env, registry_server, fake_module):
    registry_server.drip = 0.05  # ~4 KiB every 50 ms: the archive takes a while
    from tests.hub.helpers import make_fake_module

    big = make_fake_module(os.path.join(os.path.dirname(fake_module), "big"), payload=os.urandom(200_000))
    import hubkit

    hubkit.publish(big, registry_server.root, name="acme/big", validate=lambda d: {})
    handle = f"{registry_server.url}/acme/big/1"
    child = subprocess.Popen([sys.executable, "-c", _RESOLVE_AND_DIGEST, handle], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    parts = []
    while time.monotonic() < deadline:
        names = os.listdir(hub_env.cache_dir) if os.path.isdir(hub_env.cache_dir) else []
        parts = [n for n in names if n.endswith(".part")]
        if parts and os.path.getsize(os.path.join(hub_env.cache_dir, parts[0])) > 8192:
            break
        time.sleep(0.02)
    else:
        child.kill()
        pytest.fail("the child never started downloading")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    assert any(n.endswith(".lock") for n in os.listdir(hub_env.cache_dir))  # the dead holder's lock stays
    registry_server.drip = 0.0
    started = time.monotonic()
    path = resolve(handle)
    assert time.monotonic() - started < 20  # taken over at once, not after HUBKIT_LOCK_TIMEOUT (600 s)
    with open(os.path.join(path, "variables", "variables.safetensors"), "rb") as f, \
            open(os.path.join(big, "variables", "variables.safetensors"), "rb") as g:
        assert f.read() == g.read()
    leftovers = [n for n in os.listdir(hub_env.cache_dir) if n.startswith(".") or n.endswith(".lock")]
    assert leftovers == []


def test_cache_maintenance(hub_env, registry_server):
    handle = f"{registry_server.url}/acme/echo/1"
    path = resolve(handle)
    cache = Cache(hub_env)
    (entry,) = list(cache.entries())
    assert entry.complete and entry.size > 0 and cache.verify(entry) == []
    with open(os.path.join(path, "graph.pb"), "r+b") as f:
        f.write(b"X")  # same size: only re-hashing notices
    problems = cache.verify(entry)
    assert len(problems) == 1 and "modified file 'graph.pb'" in problems[0]
    # An abandoned temp file of a dead process, a stale lock and an incomplete entry are pruned.
    dead = "d" * 32
    open(os.path.join(hub_env.cache_dir, f".{'e' * 40}.{dead}.part"), "wb").close()
    _write_lock(os.path.join(hub_env.cache_dir, f"{'e' * 40}.lock"), socket.gethostname(), _dead_pid(), dead)
    os.makedirs(os.path.join(hub_env.cache_dir, "f" * 40, "module"))
    removed = cache.prune()
    assert len(removed) == 3
    assert sorted(os.listdir(hub_env.cache_dir)) == [entry.key]
    assert cache.remove(entry.key) and not cache.remove(entry.key)
    assert os.listdir(hub_env.cache_dir) == []
