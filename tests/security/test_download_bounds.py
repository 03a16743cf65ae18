"""Class 3: every download is bounded and stops as soon as the archive is known to be bad.

A hostile server on 127.0.0.1 streams forever after a good or a bad start, announces huge lengths, or
sends more than the manifest declares; none of it may fill the disk or keep hubkit busy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hubkit import resolve
from hubkit.errors import DownloadError, IntegrityError, ResolveError
from tests.security.hostile import entry, gz, manifest_for, refused_port, sha256, stream_forever, tar_bytes

GOOD = gz(tar_bytes([entry("graph.pb", b"g" * 1000)]))


def _part_sizes(cache_dir: str) -> int:
    total = 0
    for directory, _, files in os.walk(cache_dir):
        for name in files:
            total += os.path.getsize(os.path.join(directory, name))
    return total


@pytest.mark.parametrize("head", [
    b"<html><body>hello</body></html>",  # an HTML page
    b"PK\x03\x04" + bytes(600),  # a zip
    b"\x1f\x8b\x08\x00" + os.urandom(2000),  # gzip magic, then garbage: the extractor fails
    gz(b"not a tar header at all" * 100)[:200],  # valid gzip start, the tar header inside is bad
])
@pytest.mark.parametrize("pinned", [False, True])
def test_a_bad_start_then_an_endless_stream_stops_early(hub_env, hostile, head, pinned):
    hostile.routes["/m.tar.gz"] = stream_forever(head, limit_seconds=20)
    handle = f"{hostile.url}/m.tar.gz" + (f"#sha256={'0' * 64}" if pinned else "")
    start = time.monotonic()
    with pytest.raises(DownloadError):
        resolve(handle)
    assert time.monotonic() - start < 10
    assert _part_sizes(hub_env.cache_dir) < 64 << 20


@pytest.mark.parametrize("limit", ["100000", "2000000"])
def test_the_configured_maximum_bounds_an_endless_good_looking_stream(hub_env, hostile, monkeypatch, limit):
    monkeypatch.setenv("HUBKIT_MAX_DOWNLOAD_BYTES", limit)
    head = gz(tar_bytes([entry("variables/v.bin", bytes(10 << 20))]))[:1000]  # a plausible start
    hostile.routes["/m.tar.gz"] = stream_forever(head)
    with pytest.raises(DownloadError, match=rf"larger than the limit of {limit} bytes.*HUBKIT_MAX_DOWNLOAD_BYTES"):
        resolve(f"{hostile.url}/m.tar.gz#sha256={'0' * 64}")


def test_a_content_length_beyond_the_maximum_is_refused_before_the_body(hub_env, hostile, monkeypatch):
    monkeypatch.setenv("HUBKIT_MAX_DOWNLOAD_BYTES", "1000000")
    hostile.routes["/m.tar.gz"] = stream_forever(GOOD, content_length=10 << 30)
    with pytest.raises(DownloadError, match=r"announces 10737418240 bytes"):
        resolve(f"{hostile.url}/m.tar.gz")


@pytest.mark.parametrize("lie", ["content-length", "stream"])
def test_more_than_the_manifest_declares_is_refused(hub_env, hostile, lie):
    hostile.serve_json("/acme/m/1.json", manifest_for(GOOD))
    if lie == "content-length":
        hostile.routes["/acme/m/1.tar.gz"] = stream_forever(GOOD, content_length=len(GOOD) + 10**9)
    else:
        hostile.routes["/acme/m/1.tar.gz"] = stream_forever(GOOD)
    with pytest.raises(IntegrityError, match=rf"larger than the {len(GOOD)} bytes its manifest declares"):
        resolve(f"{hostile.url}/acme/m/1")


def test_a_good_registry_download_still_works(hub_env, hostile):
    hostile.serve_json("/acme/m/1.json", manifest_for(GOOD))
    hostile.serve_bytes("/acme/m/1.tar.gz", GOOD)
    path = resolve(f"{hostile.url}/acme/m/1")
    with open(os.path.join(path, "graph.pb"), "rb") as f:
        assert f.read() == b"g" * 1000


@pytest.mark.parametrize("archive", [
    tar_bytes([entry("graph.pb", b"plain tar")]),  # .tar, detected by its header
    gz(tar_bytes([entry("graph.pb", b"plain tar")])),  # .tar.gz served under a .tar name
])
@pytest.mark.parametrize("suffix", [".tar", ".tgz", ".tar.gz"])
def test_tar_and_tgz_handles_are_told_apart_by_their_bytes(hub_env, hostile, tmp_path, archive, suffix):
    hostile.serve_bytes(f"/m{suffix}", archive)
    path = resolve(f"{hostile.url}/m{suffix}#sha256={sha256(archive)}")
    assert Path(os.path.join(path, "graph.pb")).read_bytes() == b"plain tar"
    local = tmp_path / f"local{suffix}"
    local.write_bytes(archive)
    assert Path(resolve(str(local)), "graph.pb").read_bytes() == b"plain tar"


def test_connection_refused_fails_at_once_naming_host_and_port(hub_env, monkeypatch):
    monkeypatch.setenv("HUBKIT_RETRIES", "6")
    monkeypatch.setenv("HUBKIT_BACKOFF", "1")
    port = refused_port()
    for handle in (f"http://127.0.0.1:{port}/acme/m/1", f"http://127.0.0.1:{port}/m.tar.gz"):
        start = time.monotonic()
        with pytest.raises(DownloadError, match=rf"could not connect to 127\.0\.0\.1:{port} \(connection refused\)"):
            resolve(handle)
        assert time.monotonic() - start < 0.9


def test_other_failures_keep_the_backoff(hub_env, hostile, monkeypatch):
    monkeypatch.setenv("HUBKIT_RETRIES", "2")

    def fail(h):
        h.send_response(503)
        h.send_header("Content-Length", "0")
        h.end_headers()

    hostile.routes["/acme/m/1.json"] = fail
    with pytest.raises(DownloadError, match="after 3 attempts: HTTP 503"):
        resolve(f"{hostile.url}/acme/m/1")
    assert hostile.count("/acme/m/1.json") == 3


@pytest.mark.parametrize("value", ["0", "0.0", "-1", "nan", "inf", "1e999", "9" * 5000, "abc"])
@pytest.mark.parametrize("name", ["HUBKIT_CONNECT_TIMEOUT", "HUBKIT_READ_TIMEOUT"])
def test_timeouts_from_the_environment_must_be_positive(hub_env, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ResolveError, match=name):
        resolve("http://127.0.0.1:9/acme/m/1")


def test_a_server_that_trickles_bytes_is_cut_off(hub_env, hostile):
    """A byte every 0.2 s never trips the socket's read timeout (1 s here): one piece must arrive in that time."""
    import time as _time

    from hubkit.hub.config import HubConfig
    from hubkit.hub.http import HttpClient

    body = gz(tar_bytes([entry("variables/v.bin", os.urandom(1 << 20))]))

    def trickle(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        deadline = _time.monotonic() + 20
        for byte in body:
            if _time.monotonic() > deadline or hostile.release.is_set():
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            _time.sleep(0.2)

    hostile.routes["/m.tar.gz"] = trickle
    client = HttpClient(HubConfig.from_env(read_timeout=1.0, retries=0, backoff=0.0))
    started = _time.monotonic()
    try:
        with pytest.raises(DownloadError, match=r"sent less than .* bytes in 1 s"):
            client.download(f"{hostile.url}/m.tar.gz", str(hub_env.cache_dir) + ".part")
    finally:
        hostile.release.set()
    assert _time.monotonic() - started < 10
