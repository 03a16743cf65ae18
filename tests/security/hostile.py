"""Builders of hostile inputs: an HTTP server on 127.0.0.1 whose every answer the test scripts, and archives.

Every wait is bounded: handlers that stall wait on an event with a timeout, and the server is shut down
(with its connections) when the test ends.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handler = Callable[[BaseHTTPRequestHandler], None]
_RANGE = re.compile(r"bytes=(\d+)-$")


class HostileServer:
    """``routes[path]`` answers a GET; :meth:`serve_file` adds a well-behaved (resumable) route."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()  # stalled handlers continue when set (or after their timeout)
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers.items())))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    route(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def serve_bytes(self, path: str, body: bytes, etag: str | None = '"v1"', ranges: bool = True,
                    content_type: str = "application/gzip") -> None:
        """A correct server for ``body``: Content-Length, ETag, Range and If-Range."""

        def handle(h: BaseHTTPRequestHandler) -> None:
            start = 0
            match = _RANGE.match(h.headers.get("Range", ""))
            if_range = h.headers.get("If-Range")
            if ranges and match and (if_range is None or if_range == etag):
                start = int(match.group(1))
            part = body[start:]
            h.send_response(206 if start else 200)
            if start:
                h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            h.send_header("Content-Length", str(len(part)))
            h.send_header("Content-Type", content_type)
            if etag:
                h.send_header("ETag", etag)
            if ranges:
                h.send_header("Accept-Ranges", "bytes")
            h.end_headers()
            h.wfile.write(part)

        self.routes[path] = handle

    def serve_json(self, path: str, value: object) -> None:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()

        def handle(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Length", str(len(raw)))
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            h.wfile.write(raw)

        self.routes[path] = handle

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


def stream_forever(head: bytes, limit_seconds: float = 20.0, content_length: int | None = None) -> Handler:
    """A handler that sends ``head`` and then zeros until the client hangs up (bounded by time)."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        import time

        h.send_response(200)
        if content_length is not None:
            h.send_header("Content-Length", str(content_length))
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        h.wfile.write(head)
        deadline = time.monotonic() + limit_seconds
        block = bytes(64 << 10)
        h.server_sent = len(head)  # type: ignore[attr-defined]
        while time.monotonic() < deadline:
            h.wfile.write(block)

    return handle


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]], marker: bool = True, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A plain tar of (TarInfo, data) entries, with a hubkit marker first unless told otherwise."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        if marker:
            info = tarfile.TarInfo("hubkit_module.pb")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"\x08\x01"))
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_for(archive: bytes, name: str = "acme/m", version: int = 1, **extra: object) -> dict:
    return {"name": name, "version": version, "sha256": sha256(archive), "size": len(archive), "format_version": 1,
            **extra}


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET of ``url``; an HTTP error gives its status and an empty body."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


_CHILD_PROLOGUE = r'''
import json, sys, traceback
import numpy as np
import hubkit as hk
from hubkit.errors import HubkitError

def attempt(label, fn):
    print(json.dumps({"start": label}), flush=True)
    try:
        fn()
        record = {"label": label, "outcome": "ok"}
    except HubkitError as e:
        record = {"label": label, "outcome": "hubkit", "error": f"{type(e).__name__}: {e}"[:500]}
    except BaseException as e:
        record = {"label": label, "outcome": "other", "error": traceback.format_exc()[-1500:]}
    print(json.dumps(record), flush=True)
'''


def child_records(stdout: str, key: str) -> tuple[dict[str, dict], str | None]:
    """The JSON records a child printed, one a line, by their ``key``; and the case it started last: a child
    prints ``{"start": case}`` before each case, so when it dies, that is the case that killed it."""
    records: dict[str, dict] = {}
    last = None
    for line in stdout.splitlines():
        record = json.loads(line)
        if "start" in record:
            last = record["start"]
        else:
            records[record[key]] = record
    return records, last


def run_in_child(code: str, *args: str, timeout: float = 300.0, env: dict[str, str] | None = None) -> dict[str, dict]:
    """Runs ``code`` (which calls ``attempt(label, fn)``) in a fresh interpreter; the record of each label.

    A hostile input that crashes the interpreter (SIGSEGV) or hangs then fails the test instead of killing
    pytest: the child's exit status must be 0 and it must finish within ``timeout`` seconds.
    """
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = root + os.pathsep + child_env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _CHILD_PROLOGUE + code, *args], capture_output=True, text=True,
                       timeout=timeout, env=child_env, cwd=root)
    records, last = child_records(r.stdout, "label")
    assert r.returncode == 0, f"the child died with status {r.returncode} in {last!r}: {r.stderr[-2000:]}"
    return records


_TF_DTYPES = {"float32": 1, "int32": 3, "int64": 9}  # tensorflow DataType enum values


def add_tf_const(graph_def, name: str, arr) -> str:
    """Appends a TF ``Const`` node holding ``arr`` (float32, int32 or int64) to ``graph_def``; returns its name."""
    dtype = _TF_DTYPES[arr.dtype.name]
    node = graph_def.node.add(name=name, op="Const")
    node.attr["dtype"].type = dtype
    tensor = node.attr["value"].tensor
    tensor.dtype = dtype
    for size in arr.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = arr.tobytes()
    return name
