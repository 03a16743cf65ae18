"""Interrupted downloads resume across processes, validated by If-Range and the final sha256.

Against real servers on 127.0.0.1: the downloading process is killed mid-download (SIGKILL), or the
server process is; the next ``resolve`` continues from the bytes on disk with ``Range`` + ``If-Range``,
and starts over only when the server cannot resume or the content changed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubkit import resolve
from tests.security.hostile import entry, gz, manifest_for, refused_port, tar_bytes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAYLOAD = os.urandom(1 << 20)
ARCHIVE = gz(tar_bytes([entry("variables/v.bin", PAYLOAD)]))
OTHER = gz(tar_bytes([entry("variables/v.bin", PAYLOAD[::-1])]))


def _stalling(body: bytes, release, etag='"v1"'):
    """Serves ``body`` fully on Range requests; a plain GET sends half of it and then stalls."""
    import re

    def handle(h):
        match = re.match(r"bytes=(\d+)-$", h.headers.get("Range", ""))
        if match and h.headers.get("If-Range") == etag:
            start = int(match.group(1))
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            h.send_header("Content-Length", str(len(body) - start))
            h.send_header("ETag", etag)
            h.end_headers()
            h.wfile.write(body[start:])
            return
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("ETag", etag)
        h.end_headers()
        h.wfile.write(body[: len(body) // 2])
        h.wfile.flush()
        release.wait(timeout=30)

    return handle


def _partial_bytes(cache_dir: str) -> int:
    try:
        return max((os.path.getsize(os.path.join(cache_dir, n)) for n in os.listdir(cache_dir) if n.endswith(".part")),
                   default=0)
    except FileNotFoundError:
        return 0


def _kill_client_mid_download(hub_env, hostile, body, prelude="", on_disk=None):
    hostile.serve_json("/acme/m/1.json", manifest_for(body))
    hostile.routes["/acme/m/1.tar.gz"] = _stalling(body, hostile.release)
    client = subprocess.Popen([sys.executable, "-c", f"import sys, hubkit\n{prelude}\nhubkit.resolve(sys.argv[1])",
                               f"{hostile.url}/acme/m/1"], cwd=REPO, env={**os.environ, "HUBKIT_READ_TIMEOUT": "60"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    on_disk = len(body) // 4 if on_disk is None else on_disk
    try:
        deadline = time.monotonic() + 60
        while _partial_bytes(hub_env.cache_dir) < on_disk:  # the client reads in pieces of 64 KiB+
            assert client.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=30)
    return _partial_bytes(hub_env.cache_dir)


def test_a_killed_download_resumes_in_the_next_process(hub_env, hostile):
    sent = _kill_client_mid_download(hub_env, hostile, ARCHIVE)
    path = resolve(f"{hostile.url}/acme/m/1")
    assert Path(os.path.join(path, "variables", "v.bin")).read_bytes() == PAYLOAD
    last = [h for p, h in hostile.requests if p == "/acme/m/1.tar.gz"][-1]
    assert last.get("Range") == f"bytes={sent}-" and last.get("If-Range") == '"v1"'
    assert not [n for n in os.listdir(hub_env.cache_dir) if n.startswith(".")]


_SLOW_FILE_WRITES = """
import time
from hubkit.hub import extract
real = extract._write_piece
def slow(*args):
    time.sleep(0.3)
    real(*args)
extract._write_piece = slow
extract._DOWNLOAD_WRITES_AT = 1 << 30  # the pieces wait in memory for the extraction thread
"""


def test_a_download_killed_while_received_pieces_wait_in_memory_resumes_from_the_file(hub_env, hostile):
    """The extraction thread writes the download file behind the download (pieces wait in memory, here
    slowed down): the file on disk is still an exact start of the body, and the next process resumes from it."""
    sent = _kill_client_mid_download(hub_env, hostile, ARCHIVE, prelude=_SLOW_FILE_WRITES, on_disk=1)
    [part] = [n for n in os.listdir(hub_env.cache_dir) if n.endswith(".part")]
    assert 0 < sent < len(ARCHIVE) // 2  # the server had sent half: the rest of it was in memory, and is lost
    assert Path(hub_env.cache_dir, part).read_bytes() == ARCHIVE[:sent]  # in order, no hole
    path = resolve(f"{hostile.url}/acme/m/1")
    assert Path(os.path.join(path, "variables", "v.bin")).read_bytes() == PAYLOAD
    last = [h for p, h in hostile.requests if p == "/acme/m/1.tar.gz"][-1]
    assert last.get("Range") == f"bytes={sent}-" and last.get("If-Range") == '"v1"'


def test_changed_content_starts_over(hub_env, hostile):
    """The ETag changed: If-Range makes the server send the whole new body, and the download starts over."""
    _kill_client_mid_download(hub_env, hostile, ARCHIVE)
    hostile.serve_json("/acme/m/1.json", manifest_for(OTHER))
    hostile.serve_bytes("/acme/m/1.tar.gz", OTHER, etag='"v2"')
    path = resolve(f"{hostile.url}/acme/m/1")
    assert Path(os.path.join(path, "variables", "v.bin")).read_bytes() == PAYLOAD[::-1]


def test_a_server_that_cannot_resume_starts_over(hub_env, hostile):
    _kill_client_mid_download(hub_env, hostile, ARCHIVE)
    hostile.serve_bytes("/acme/m/1.tar.gz", ARCHIVE, ranges=False)
    path = resolve(f"{hostile.url}/acme/m/1")
    assert Path(os.path.join(path, "variables", "v.bin")).read_bytes() == PAYLOAD
    last = [h for p, h in hostile.requests if p == "/acme/m/1.tar.gz"][-1]
    assert "Range" in last  # asked, refused with a 200, restarted from byte 0


def test_a_lying_server_is_caught_by_the_final_sha256_and_restarted(hub_env, hostile):
    """Same ETag, different bytes: the resumed file fails the sha256; hubkit starts over once."""
    sent = _kill_client_mid_download(hub_env, hostile, OTHER)  # the first part came from other content
    hostile.serve_json("/acme/m/1.json", manifest_for(ARCHIVE))
    hostile.serve_bytes("/acme/m/1.tar.gz", ARCHIVE, etag='"v1"')
    path = resolve(f"{hostile.url}/acme/m/1")
    assert Path(os.path.join(path, "variables", "v.bin")).read_bytes() == PAYLOAD
    ranges = [h.get("Range") for p, h in hostile.requests if p == "/acme/m/1.tar.gz"]
    assert ranges[-2:] == [f"bytes={sent}-", None]


_SERVER = r"""
import sys, re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, path, cut = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = open(path, "rb").read()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        start = int(m.group(1)) if m and self.headers.get("If-Range") == '"v1"' else 0
        print("GET", self.path, self.headers.get("Range"), self.headers.get("If-Range"), flush=True)
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        end = cut if cut and not start else len(body)
        self.wfile.write(body[start:end]); self.wfile.flush()
        if end < len(body):
            print("STALLED", flush=True)
            import time; time.sleep(60)
ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def _start_server(port: int, archive: str, cut: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), archive, str(cut)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_a_killed_server_then_a_resume(hub_env, tmp_path, monkeypatch):
    """The server process dies mid-body; the next resolve (new server, same URL) continues with Range."""
    monkeypatch.setenv("HUBKIT_READ_TIMEOUT", "1")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(ARCHIVE)
    port = refused_port()
    url = f"http://127.0.0.1:{port}/m.tar.gz"
    server = _start_server(port, str(archive), cut=len(ARCHIVE) // 3)
    try:
        from threading import Thread

        errors = []
        thread = Thread(target=lambda: _expect_failure(url, errors))
        thread.start()
        deadline = time.monotonic() + 30
        while _partial_bytes(hub_env.cache_dir) < len(ARCHIVE) // 6:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.kill()
        server.wait(timeout=10)
        thread.join(timeout=60)
        assert errors and "Failed to fetch" in errors[0], errors
        sent = _partial_bytes(hub_env.cache_dir) or os.path.getsize(_resume_part(hub_env.cache_dir))
        server = _start_server(port, str(archive), cut=0)
        path = resolve(url)
        assert Path(os.path.join(path, "variables", "v.bin")).read_bytes() == PAYLOAD
    finally:
        server.kill()
        out = server.communicate(timeout=10)[0]
    assert f"GET /m.tar.gz bytes={sent}- \"v1\"" in out, out


def _resume_part(cache_dir: str) -> str:
    [name] = [n for n in os.listdir(cache_dir) if n.endswith(".resume.part")]
    return os.path.join(cache_dir, name)


def _expect_failure(url: str, errors: list) -> None:
    try:
        resolve(url)
    except Exception as exc:
        errors.append(str(exc))


@pytest.mark.parametrize("info", [b"[" * 100_000, b'{"url": "http://elsewhere/m.tar.gz", "validator": "\\"v1\\""}',
                                  b'{"url": 1}', b"\xff", b'{"validator": "W/\\"weak\\""}'])
def test_untrusted_resume_records_are_ignored(hub_env, hostile, info):
    """A planted or foreign resume record never makes hubkit trust the partial bytes: it starts over."""
    from hubkit.hub.handles import cache_key

    key = cache_key(f"{hostile.url}/acme/m/1")
    os.makedirs(hub_env.cache_dir, exist_ok=True)
    with open(os.path.join(hub_env.cache_dir, f".{key}.resume.part"), "wb") as f:
        f.write(b"\x1f\x8b" + b"garbage" * 1000)
    with open(os.path.join(hub_env.cache_dir, f".{key}.resume.info"), "wb") as f:
        f.write(info)
    hostile.serve_json("/acme/m/1.json", manifest_for(ARCHIVE))
    hostile.serve_bytes("/acme/m/1.tar.gz", ARCHIVE)
    path = resolve(f"{hostile.url}/acme/m/1")
    assert Path(os.path.join(path, "variables", "v.bin")).read_bytes() == PAYLOAD
    assert all("Range" not in h for p, h in hostile.requests if p == "/acme/m/1.tar.gz")
