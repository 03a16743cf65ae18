"""Class 2: a stalled (not dead) lock holder that wakes up after a take-over never installs a partial module.

Two processes, paused deterministically with signal files (every wait bounded), and a short lock
timeout: process A starts installing, writes part of the module and stalls; process B (this test)
takes the lock over, removes A's temp entry and installs; then A wakes up, recreates its directories
(as a careless extractor would), writes the rest and tries to rename its entry into place.
Whatever the interleaving, the cache ends up with a complete entry and A fails with a clear error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from hubkit.hub import Cache, HubConfig
from hubkit.hub.extract import ExtractedFile
from hubkit.hub.handles import cache_key

KEY = cache_key("https://h/acme/race/1")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_HOLDER = r"""
import os, sys, time
from hubkit.hub import Cache, HubConfig
from hubkit.hub.extract import ExtractedFile
cache_dir, signals, key = sys.argv[1:4]

def wait_for(name):
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(signals, name)):
        if time.monotonic() > deadline:
            sys.exit("timed out waiting for " + name)
        time.sleep(0.01)

def produce(ctx):
    with open(os.path.join(ctx.module_dir, "hubkit_module.pb"), "wb") as f:
        f.write(b"A1")
    open(os.path.join(signals, "a_paused"), "w").close()
    wait_for("a_go")
    os.makedirs(os.path.join(ctx.module_dir, "variables"), exist_ok=True)  # recreates a removed temp entry
    with open(os.path.join(ctx.module_dir, "variables", "v.bin"), "wb") as f:
        f.write(b"A2" * 10)
    return [ExtractedFile("hubkit_module.pb", 2, crc32=0), ExtractedFile("variables/v.bin", 20, crc32=0)], {}

config = HubConfig(cache_dir=cache_dir, lock_timeout=0.5, lock_poll=0.02)
try:
    print(Cache(config).get_or_install(key, "https://h/acme/race/1", produce))
except Exception as exc:
    print(type(exc).__name__ + ": " + str(exc))
    sys.exit(3)
"""


def _wait_for(path: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.01)


def _complete_entry(cache_dir: str) -> dict[str, bytes]:
    module = Cache.lookup_in(cache_dir, KEY)
    assert module is not None
    out = {}
    for directory, _, files in os.walk(module):
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                out[os.path.relpath(os.path.join(directory, name), module)] = f.read()
    return out


def _b_producer(on_produce=None):
    def produce(ctx):
        os.makedirs(os.path.join(ctx.module_dir, "variables"))
        with open(os.path.join(ctx.module_dir, "hubkit_module.pb"), "wb") as f:
            f.write(b"B1")
        with open(os.path.join(ctx.module_dir, "variables", "v.bin"), "wb") as f:
            f.write(b"B2" * 10)
        if on_produce is not None:
            on_produce()
        return [ExtractedFile("hubkit_module.pb", 2, crc32=0), ExtractedFile("variables/v.bin", 20, crc32=0)], {}

    return produce


@pytest.mark.parametrize("order", ["b-installs-then-a-wakes", "a-wakes-while-b-downloads"])
def test_a_stalled_holder_that_wakes_up_never_installs_a_partial_entry(tmp_path, order):
    cache_dir, signals = str(tmp_path / "cache"), str(tmp_path / "signals")
    os.makedirs(signals)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, cache_dir, signals, KEY], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(os.path.join(signals, "a_paused"), holder)
        config = HubConfig(cache_dir=cache_dir, lock_timeout=0.5, lock_poll=0.02)

        def let_a_finish_first() -> None:  # A wakes up while B is still producing, and ends
            open(os.path.join(signals, "a_go"), "w").close()
            holder.wait(timeout=30)

        produce = _b_producer(let_a_finish_first if order == "a-wakes-while-b-downloads" else None)
        path = Cache(config).get_or_install(KEY, "https://h/acme/race/1", produce)
        assert os.path.isdir(path)
        open(os.path.join(signals, "a_go"), "w").close()
        out, err = holder.communicate(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
    assert holder.returncode == 3, (out, err)
    assert "taken over" in out or "was modified" in out, out
    assert _complete_entry(cache_dir) == {"hubkit_module.pb": b"B1", os.path.join("variables", "v.bin"): b"B2" * 10}
    leftovers = [n for n in os.listdir(cache_dir) if n.startswith(".")]
    assert leftovers == [], leftovers


def test_a_holder_whose_entry_was_emptied_does_not_rename_it(tmp_path):
    """Same process, no take-over needed: files listed in the record but missing from the temp entry."""
    config = HubConfig(cache_dir=str(tmp_path / "cache"), lock_timeout=5, lock_poll=0.02)

    def produce(ctx):
        with open(os.path.join(ctx.module_dir, "hubkit_module.pb"), "wb") as f:
            f.write(b"x")
        return [ExtractedFile("hubkit_module.pb", 1, crc32=0), ExtractedFile("graph.pb", 10, crc32=0)], {}

    from hubkit.errors import ResolveError

    with pytest.raises(ResolveError, match="taken over"):
        Cache(config).get_or_install(KEY, "https://h/acme/race/1", produce)
    assert Cache.lookup_in(config.cache_dir, KEY) is None
