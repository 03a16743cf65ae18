"""Benchmark of the hub layer, against baselines run in the same process.

1. Cache hit: ``hubkit.Module(url)`` of a small module already in the cache vs ``hubkit.Module(local_path)``
   (target: within 1.2x).
2. Download + install of a large module (``--size-mb``, default 500) from a server on 127.0.0.1 vs ``curl``
   of the same archive to a file (or a plain ``requests`` streaming download when curl is missing)
   (target: at least 0.7x of its throughput), with the peak RSS of the downloading process
   (target: under 100 MB whatever the size). curl only downloads while hubkit also verifies and extracts,
   so ``curl URL | tar xz`` (what gives a user the files) is printed as a second baseline; and since
   ``resolve`` leaves the removal of the downloaded archive to a background thread, hubkit's time with
   that thread awaited is printed too.

    python scripts/bench_hub.py                 # full run (500 MB)
    python scripts/bench_hub.py --size-mb 50    # quick run

``--verbose`` also prints every round and hashlib's sha256 throughput on this CPU (1 MB pieces, as
the download hashes them).

Each download round runs, one after the other: hubkit's resolve (download + verify + extract) in a
fresh process with an empty cache, hubkit's download alone (``HttpClient.download``: what extraction
adds on top of it), and curl. The best and the median round are reported.

``--levers`` instead times ``hubkit.resolve`` (each in a fresh process, as above, interleaved round by round
with curl) with each CPU-per-byte lever of the install switched off alone (and all of them off) against all on:

- ``background``: the archive is extracted by a second thread while it downloads (off: extracted after
  the download finished). zlib's own gzip decoder does the inflating either way (the hand-written
  decoder and its levers were removed: they gained nothing, see docs/security.md).
- ``handoff``: the download hands each received piece to the extraction thread in memory, and that
  thread writes it to the download file (off: the download thread writes the file and the extraction
  thread reads it back, as before).
- ``download-writes``: when the extraction thread falls behind (4 pieces wait), the download thread
  writes the waiting pieces to the download file itself (off: only the extraction thread writes it).
- ``hash-thread``: the download's sha256 is computed by a thread of its own, from the received pieces
  themselves (off: the download thread hashes each piece after receiving it). An earlier sha256 thread that
  copied every piece (double-buffered) was a wash on 2 cores and was deleted.

Besides the best and the median of each contender, the download rounds are paired: each hubkit round
against the curl run of the same round, then the median of those ratios (the host's speed drifts within a
run). The CPU of the resolving process is printed by thread (``main`` is the downloading one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import NamedTuple

import numpy as np
from _timing import load_header

import hubkit
from hubkit.hub.serve import make_server

_CHILD_RESOLVE = """
import collections, json, os, sys, threading, time
import hubkit

thread_cpu = collections.defaultdict(float)  # CPU seconds by thread name (hubkit-extract, hubkit-sha256, ...)
run = threading.Thread.run

def counted_run(self):
    try:
        run(self)
    finally:
        thread_cpu[self.name] += time.thread_time()

threading.Thread.run = counted_run
if len(sys.argv) > 2:  # --levers: these levers off in this process (argv[3] is the scripts directory)
    sys.path.insert(0, sys.argv[3])
    import bench_hub
    bench_hub._set_levers(set(filter(None, sys.argv[2].split(","))))

def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

import requests, urllib3, tqdm, platformdirs  # loaded before the baseline, so it counts only the download
baseline = peak_rss_mb()
start, start_cpu, start_main = time.perf_counter(), time.process_time(), time.thread_time()
path = hubkit.resolve(sys.argv[1])
elapsed = time.perf_counter() - start
thread_cpu["main"] = time.thread_time() - start_main
for thread in threading.enumerate():  # e.g. the removal of the downloaded archive, which resolve does not wait for
    if thread is not threading.current_thread() and not thread.daemon:
        thread.join()
settled, cpu = time.perf_counter() - start, time.process_time() - start_cpu
for thread in threading.enumerate():  # watchdogs, stopped by now: a thread's CPU is counted when it ends
    if thread is not threading.current_thread():
        thread.join(5)
print(elapsed, baseline, peak_rss_mb(), settled, cpu)
print(json.dumps(thread_cpu))
"""

_CHILD_DOWNLOAD_ONLY = """
import sys, time
from hubkit.hub.config import HubConfig
from hubkit.hub.http import HttpClient
client = HttpClient(HubConfig.from_env())
start = time.perf_counter()
client.download(sys.argv[1], sys.argv[2])
print(time.perf_counter() - start)
"""

_CHILD_REQUESTS = """
import sys, time, requests
start = time.perf_counter()
with requests.get(sys.argv[1], stream=True, timeout=60) as r, open(sys.argv[2], "wb") as f:
    for chunk in r.iter_content(1 << 20):
        f.write(chunk)
print(time.perf_counter() - start)
"""


class _Resolved(NamedTuple):
    """What one resolve in a fresh process measured (see ``_CHILD_RESOLVE``)."""

    seconds: float  # wall time of resolve()
    baseline_mb: float  # peak RSS after the imports, before resolve()
    peak_mb: float  # peak RSS at the end
    settled: float  # wall time until its background cleanup ended too
    cpu: float  # CPU seconds of the process (all threads) during resolve() and the cleanup
    thread_cpu: dict[str, float]  # CPU seconds of each thread, by name ("main" for the resolving one)


def _resolve_in_child(url: str, env: dict[str, str], levers_off: set[str] | None = None) -> _Resolved:
    shutil.rmtree(env["HUBKIT_CACHE_DIR"], ignore_errors=True)
    args = [sys.executable, "-c", _CHILD_RESOLVE, url]
    if levers_off is not None:
        args += [",".join(sorted(levers_off)), os.path.dirname(os.path.abspath(__file__))]
    lines = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    shutil.rmtree(env["HUBKIT_CACHE_DIR"], ignore_errors=True)
    seconds, baseline, peak, settled, cpu = (float(value) for value in lines[0].split())
    return _Resolved(seconds, baseline, peak, settled, cpu, json.loads(lines[1]))


def _curl_seconds(curl: str, url: str, target: str) -> float:
    start = time.perf_counter()
    subprocess.run([curl, "-sSf", "--noproxy", "127.0.0.1", "-o", target, url], check=True)
    seconds = time.perf_counter() - start
    os.unlink(target)
    return seconds


def _thread_cpu_line(samples: list[dict[str, float]]) -> str:
    names = sorted({name for sample in samples for name in sample}, key=lambda name: (name != "main", name))
    return ", ".join(f"{name} {statistics.median(sample.get(name, 0.0) for sample in samples):.3f} s" for name in names)


def sha256_mb_per_s(megabytes: int = 64, rounds: int = 3) -> tuple[float, bool]:
    """(MB/s of hashlib's sha256 over 1 MB pieces, best of ``rounds``; whether the CPU has SHA-NI)."""
    data = memoryview(np.random.default_rng(0).bytes(megabytes << 20))
    best = float("inf")
    for _ in range(rounds):
        h = hashlib.sha256()
        start = time.perf_counter()
        for i in range(0, len(data), 1 << 20):
            h.update(data[i : i + (1 << 20)])
        h.digest()
        best = min(best, time.perf_counter() - start)
    try:
        with open("/proc/cpuinfo") as f:
            sha_ni = " sha_ni" in f.read()
    except OSError:
        sha_ni = False
    return len(data) / 1e6 / best, sha_ni


def _small_module_fn() -> None:
    x = hubkit.placeholder(hubkit.float32, [None, 64])
    h = hubkit.matmul(x, hubkit.get_variable("dense/kernel", [64, 64], initializer=hubkit.initializers.get("glorot_uniform")))
    y = hubkit.matmul(hubkit.nn.relu(h) if hasattr(hubkit.nn, "relu") else h,
                      hubkit.get_variable("out/kernel", [64, 8], initializer=hubkit.initializers.get("glorot_uniform")))
    hubkit.add_signature(inputs=x, outputs=y)


def _serve(root: str) -> tuple[str, object]:
    server = make_server(root, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def _start_nginx(root: str, workdir: str) -> tuple[str, subprocess.Popen] | None:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        return None
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "registry", "nginx.conf")) as f:
        site = f.read().replace("listen 8080;", f"listen 127.0.0.1:{port};").replace("/srv/hubkit-registry", root)
    prefix = os.path.join(workdir, "nginx")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    temp = "\n".join(f"{k}_temp_path {prefix}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;" if os.geteuid() == 0 else ""
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(f"{user}\ndaemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\n"
                f"events {{ worker_connections 64; }}\nhttp {{ access_log off; include /etc/nginx/mime.types;\n{temp}\n{site}\n}}\n")
    process = subprocess.Popen([binary, "-p", prefix, "-c", os.path.join(prefix, "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"http://127.0.0.1:{port}", process
        except OSError:
            time.sleep(0.05)
    process.kill()
    return None


def bench_cache_hit(workdir: str, repeats: int) -> None:
    local = os.path.join(workdir, "small")
    hubkit.Module(hubkit.create_module_spec(_small_module_fn)).export(local)
    root = os.path.join(workdir, "registry-small")
    hubkit.publish(local, root, name="bench/small")
    base, server = _serve(root)
    url = f"{base}/bench/small/1"
    hubkit.Module(url)  # fill the cache
    hubkit.Module(local)
    by_url, by_path = [], []
    for _ in range(repeats):
        for timings, handle in ((by_url, url), (by_path, local)):
            start = time.perf_counter()
            hubkit.Module(handle)
            timings.append(time.perf_counter() - start)
    server.shutdown()  # type: ignore[attr-defined]
    url_ms, path_ms = statistics.median(by_url) * 1e3, statistics.median(by_path) * 1e3
    resolve_us = statistics.median(_time_resolve(url, repeats)) * 1e6
    print(f"cache hit: Module(url) {url_ms:.3f} ms vs Module(path) {path_ms:.3f} ms -> "
          f"ratio {url_ms / path_ms:.3f}x (target <= 1.2x); resolve(url) alone {resolve_us:.0f} us")


def _time_resolve(url: str, repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        hubkit.resolve(url)
        timings.append(time.perf_counter() - start)
    return timings


def _make_big_module(path: str, size_mb: int) -> None:
    os.makedirs(os.path.join(path, "variables"))
    os.makedirs(os.path.join(path, "assets"))
    rng = np.random.default_rng(0)
    with open(os.path.join(path, "variables", "variables.safetensors"), "wb") as f:
        for _ in range(size_mb):  # float32 weights: incompressible, like real ones
            f.write(rng.standard_normal(1 << 18, dtype=np.float32).tobytes())
    for name in ("graph.pb", "hubkit_module.pb"):
        with open(os.path.join(path, name), "wb") as f:
            f.write(b"\x08\x01")


def bench_download(
    workdir: str, size_mb: int, server_kind: str, rounds: int, verbose: bool = False, levers: bool | str = False
) -> None:
    module = os.path.join(workdir, "big")
    _make_big_module(module, size_mb)
    root = os.path.join(workdir, "registry-big")
    start = time.perf_counter()
    manifest = hubkit.publish(module, root, name="bench/big", validate=lambda d: {"format_version": 1})
    print(f"published {size_mb} MB module in {time.perf_counter() - start:.1f} s "
          f"(archive {manifest['size'] / 1e6:.0f} MB)")
    shutil.rmtree(module)
    started = None
    if server_kind in ("auto", "nginx"):
        started = _start_nginx(root, workdir)
    if started is None:
        base, server = _serve(root)
        kind = "hubkit dev server"
    else:
        base, server = started
        kind = "nginx"
    url = f"{base}/bench/big/1"
    archive_url = f"{url}.tar.gz"
    env = {**os.environ, "HUBKIT_CACHE_DIR": os.path.join(workdir, "cache"), "HUBKIT_PROGRESS": "0",
           "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    if levers:
        print(f"levers, resolve in a fresh process each ({kind}, {rounds} interleaved rounds; "
              f"load {os.getloadavg()[0]:.1f}):")
        bench_levers(url, env, manifest["size"] / 1e6, rounds, shutil.which("curl"), workdir,
                     None if levers is True else levers)
        if kind == "nginx":
            server.terminate()  # type: ignore[attr-defined]
            server.wait(10)  # type: ignore[attr-defined]
        else:
            server.shutdown()  # type: ignore[attr-defined]
        return
    target = os.path.join(workdir, "curl.out")
    curl = shutil.which("curl")
    hub_times, download_times, base_times, peaks, baselines = [], [], [], [], []
    settled_times, untar_times = [], []  # resolve until its background cleanup ended; curl | tar xz
    cpu_times = []  # CPU seconds of the resolving process (all its threads): steadier than wall time under load
    thread_cpus: list[dict[str, float]] = []  # CPU seconds of each of its threads, by name
    tar = shutil.which("tar")
    untar_dir = os.path.join(workdir, "untar")
    for _ in range(rounds):  # contenders interleaved round by round: load from other jobs hits all alike
        resolved = _resolve_in_child(url, env)
        thread_cpus.append(resolved.thread_cpu)
        hub_times.append(resolved.seconds)
        baselines.append(resolved.baseline_mb)
        peaks.append(resolved.peak_mb)
        settled_times.append(resolved.settled)
        cpu_times.append(resolved.cpu)
        out = subprocess.run([sys.executable, "-c", _CHILD_DOWNLOAD_ONLY, archive_url, target], env=env,
                             capture_output=True, text=True, check=True).stdout
        download_times.append(float(out))
        os.unlink(target)
        if curl:
            base_times.append(_curl_seconds(curl, archive_url, target))
        else:
            out = subprocess.run([sys.executable, "-c", _CHILD_REQUESTS, archive_url, target], env=env,
                                 capture_output=True, text=True, check=True).stdout
            base_times.append(float(out))
            os.unlink(target)
        if curl and tar:  # what a user would run to get the files: download and extract in one pipeline
            os.makedirs(untar_dir)
            start = time.perf_counter()
            subprocess.run(f"{curl} -sSf --noproxy 127.0.0.1 {archive_url} | {tar} xzf - -C {untar_dir}", shell=True,
                           check=True)
            untar_times.append(time.perf_counter() - start)
            shutil.rmtree(untar_dir)
    if kind == "nginx":
        server.terminate()  # type: ignore[attr-defined]
        server.wait(10)  # type: ignore[attr-defined]
    else:
        server.shutdown()  # type: ignore[attr-defined]
    size = manifest["size"] / 1e6
    baseline_name = "curl" if curl else "requests streaming"
    if verbose:
        for i, (hub, down, base) in enumerate(zip(hub_times, download_times, base_times)):
            print(f"  round {i}: hubkit {hub:.2f} s ({settled_times[i]:.2f} s with its background cleanup), "
                  f"download alone {down:.2f} s, {baseline_name} {base:.2f} s"
                  + (f", curl | tar xz {untar_times[i]:.2f} s" if untar_times else ""))
        rate, sha_ni = sha256_mb_per_s()
        print(f"hashlib sha256: {rate:.0f} MB/s in 1 MB pieces (CPU {'has' if sha_ni else 'lacks'} SHA-NI); "
              f"the download's {size:.0f} MB would take {size / rate:.2f} s of it")
    for label, pick in (("best", min), ("median", statistics.median)):
        hub, down, base = pick(hub_times), pick(download_times), pick(base_times)
        print(f"download+install ({kind}, {label} of {rounds}): hubkit {size / hub:.0f} MB/s ({hub:.2f} s) vs "
              f"{baseline_name} {size / base:.0f} MB/s ({base:.2f} s) -> {base / hub:.2f}x of {baseline_name} "
              f"(target >= 0.7x); hubkit download alone (hashing, no extraction) {size / down:.0f} MB/s")
        settled = pick(settled_times)
        untar = f"; vs curl | tar xz {pick(untar_times) / hub:.2f}x" if untar_times else ""
        print(f"    with the background cleanup awaited: {size / settled:.0f} MB/s, {base / settled:.2f}x of "
              f"{baseline_name}{untar}")
    # The host's speed drifts within a run (other jobs, the page cache, the disk's discards): each hubkit round
    # against the curl run right after it, then the median of those ratios, is steadier than best vs best.
    paired = sorted(base / hub for hub, base in zip(hub_times, base_times))
    print(f"paired by round ({baseline_name} / hubkit of the same round): median {statistics.median(paired):.2f}x "
          f"(from {paired[0]:.2f}x to {paired[-1]:.2f}x; target >= 0.7x)")
    print(f"CPU of the resolving process (all threads, cleanup included): best {min(cpu_times):.3f} s, median "
          f"{statistics.median(cpu_times):.3f} s for {size:.0f} MB")
    print(f"    median CPU by thread: {_thread_cpu_line(thread_cpus)}")
    print(f"load average {os.getloadavg()[0]:.1f}; peak RSS of the downloading process: {max(peaks):.0f} MB "
          f"(of which {max(peaks) - min(baselines):.0f} MB above the {min(baselines):.0f} MB after imports; "
          f"target < 100 MB)")


_LEVERS = ("background", "handoff", "download-writes", "hash-thread")


class _InlineHasher:
    """The download's sha256 computed in the download thread itself (lever ``hash-thread`` off)."""

    def __init__(self, start=None):
        self._hash = start if start is not None else hashlib.sha256()

    def update(self, data):
        self._hash.update(data)

    def hexdigest(self):
        return self._hash.hexdigest()

    def close(self):
        pass


def _file_following_extraction():
    """BackgroundExtraction without the in-memory handoff (lever ``handoff`` off): the download writes the
    file itself, into one reusable buffer, and the extraction thread reads the file back."""
    from hubkit.hub.extract import BackgroundExtraction

    class FileFollowingExtraction(BackgroundExtraction):
        take = None  # the download looks these up with getattr(follower, name, None)
        piece_buffer = None

    return FileFollowingExtraction


class _ExtractAfterDownload:
    """A follower that ignores the growing download and extracts the finished archive (lever ``background`` off)."""

    def __init__(self, archive_path, destination, *limits, **kwargs):
        self.archive_path, self.destination, self.limits = archive_path, destination, limits

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def advance(self, available):
        pass

    def restart(self):
        pass

    def finish(self):
        from hubkit.hub.extract import safe_extract

        return safe_extract(self.archive_path, self.destination, *self.limits)


from hubkit.hub.http import _PieceHasher as _PIECE_HASHER  # noqa: E402


def _set_levers(off: set[str]) -> None:
    """Switches the named levers off (and every other one on) for the next in-process resolve."""
    from hubkit.hub import extract, http, resolvers

    extract._DOWNLOAD_WRITES_AT = 1 << 30 if "download-writes" in off else 4
    http._PieceHasher = _InlineHasher if "hash-thread" in off else _PIECE_HASHER
    if "background" in off:
        resolvers.BackgroundExtraction = _ExtractAfterDownload
    elif "handoff" in off:
        resolvers.BackgroundExtraction = _file_following_extraction()
    else:
        resolvers.BackgroundExtraction = extract.BackgroundExtraction


def bench_levers(
    url: str, env: dict[str, str], size: float, rounds: int, curl: str | None, workdir: str, only: str | None = None
) -> None:
    """Times resolve with each lever off alone (and all off) against all on, each in a fresh process like the
    main measurement (resolves in one long-lived process were slower and noisier: 0.57-0.71 s against
    0.34-0.41 s in the same minute), interleaved round by round with curl."""
    variants = {"all on": set(), **{f"{lever} off": {lever} for lever in _LEVERS}, "all off": set(_LEVERS)}
    if only is not None:
        variants = {"all on": set(), f"{only} off": {only}}
    runs: dict[str, list[_Resolved]] = {name: [] for name in variants}
    curl_times: list[float] = []
    target = os.path.join(workdir, "curl.out")
    for _ in range(rounds):
        for name, off in variants.items():
            runs[name].append(_resolve_in_child(url, env, off))
        if curl:
            curl_times.append(_curl_seconds(curl, f"{url}.tar.gz", target))
    for name, samples in runs.items():
        times = [sample.seconds for sample in samples]
        line = f"  {name:18s} best {min(times):.3f} s ({size / min(times):.0f} MB/s), median {statistics.median(times):.3f} s"
        if curl_times:
            paired = statistics.median(base / hub for hub, base in zip(times, curl_times))
            line += f", {min(curl_times) / min(times):.2f}x of curl's best, paired by round {paired:.2f}x"
        cpu = [sample.cpu for sample in samples]
        print(f"{line}; CPU best {min(cpu):.3f} s, median {statistics.median(cpu):.3f} s")
        print(f"      median CPU by thread: {_thread_cpu_line([sample.thread_cpu for sample in samples])}")
    if curl_times:
        print(f"  {'curl':18s} best {min(curl_times):.3f} s ({size / min(curl_times):.0f} MB/s), "
              f"median {statistics.median(curl_times):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=500, help="size of the large module's variables")
    parser.add_argument("--repeats", type=int, default=200, help="cache-hit loads per handle")
    parser.add_argument("--server", choices=("auto", "nginx", "dev"), default="auto")
    parser.add_argument("--rounds", type=int, default=5, help="download rounds (each: hubkit, download alone, curl)")
    parser.add_argument("--skip-download", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print every download round")
    parser.add_argument("--levers", nargs="?", const=True, default=False, choices=(True, *_LEVERS),
                        help="A/B of the install's levers instead (in process); name one to compare only it")
    args = parser.parse_args()
    print(load_header())
    with tempfile.TemporaryDirectory(prefix="hubkit-bench-", dir=os.environ.get("HUBKIT_BENCH_DIR")) as workdir:
        os.environ["HUBKIT_CACHE_DIR"] = os.path.join(workdir, "cache-small")
        os.environ["HUBKIT_PROGRESS"] = "0"
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1"
        bench_cache_hit(workdir, args.repeats)
        if not args.skip_download:
            bench_download(workdir, args.size_mb, args.server, args.rounds, args.verbose, args.levers)


if __name__ == "__main__":
    main()
