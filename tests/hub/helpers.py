"""Helpers for the hub tests: hand-made modules, a fault-injecting HTTP server, subprocess runs."""

from __future__ import annotations

import collections
import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

from hubkit.hub.serve import RegistryRequestHandler, make_server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def module_layer_available() -> bool:
    import hubkit

    return all(hasattr(hubkit, n) for n in ("create_module_spec", "add_signature", "Module", "load_module_spec"))


needs_module_layer = pytest.mark.skipif(not module_layer_available(), reason="the module layer (issue 3) has not landed yet")


def make_fake_module(path: str, payload: bytes = b"weights", extra_files: int = 0) -> str:
    """A directory that looks like a module to the hub (the hub never parses it)."""
    os.makedirs(os.path.join(path, "variables"), exist_ok=True)
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, "graph.pb"), "wb") as f:
        f.write(b"graph-bytes")
    with open(os.path.join(path, "variables", "variables.safetensors"), "wb") as f:
        f.write(payload)
    with open(os.path.join(path, "assets", "vocab.txt"), "w") as f:
        f.write("a\nb\nc\n")
    for i in range(extra_files):
        with open(os.path.join(path, "assets", f"extra{i}.txt"), "w") as f:
            f.write(str(i))
    with open(os.path.join(path, "hubkit_module.pb"), "wb") as f:
        f.write(b"\x08\x01")
    return path


def fake_validate(module_dir: str) -> dict:
    return {"format_version": 1, "variants": [{"tags": [], "signatures": {"default": {
        "inputs": {"default": {"dtype": "float32", "shape": [None, 3]}},
        "outputs": {"default": {"dtype": "float32", "shape": [None, 2]}},
    }}}]}


class FaultServer:
    """A real HTTP server in a thread serving a directory, with faults injected per path.

    ``faults[path]`` is a list of fault names consumed one per request to that path:
    ``"404"``, ``"500"``, ``"503-retry-after"``, ``"html"``, ``"truncate"`` (close after half the body),
    ``"reset"`` (TCP reset after half the body), ``"slow"`` (headers, then silence beyond the read timeout),
    ``"wrong"`` (serve different bytes of the same length). ``drip`` slows every body to ``drip`` seconds
    per 4 KiB chunk. ``range_support`` toggles ``Range`` handling.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.faults: dict[str, list[str]] = collections.defaultdict(list)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.range_support = True
        self.drip = 0.0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        server_self = self

        class Handler(RegistryRequestHandler):
            def send_head(self):
                path = self.path.split("?")[0]
                with server_self.lock:
                    server_self.requests.append((path, dict(self.headers)))
                    fault = server_self.faults[path].pop(0) if server_self.faults[path] else None
                if not server_self.range_support and "Range" in self.headers:
                    del self.headers["Range"]
                if fault == "404":
                    self.send_error(404)
                    return None
                if fault == "500":
                    self.send_error(500)
                    return None
                if fault == "503-retry-after":
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if fault == "html":
                    body = b"<!DOCTYPE html><html><body>Welcome to our login page</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return None
                if fault == "slow":
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.flush()
                    server_self.stop.wait(10)
                    return None
                f = super().send_head()
                self._fault = fault
                return f

            def copyfile(self, source, outputfile):
                fault = getattr(self, "_fault", None)
                remaining = self._remaining
                if fault == "wrong":
                    data = source.read(remaining)
                    outputfile.write(data[:2] + bytes(b ^ 0xFF for b in data[2:]))
                    return
                if fault in ("truncate", "reset"):
                    outputfile.write(source.read(remaining // 2))
                    outputfile.flush()
                    if fault == "reset":
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                while remaining > 0 and not server_self.stop.is_set():
                    chunk = source.read(min(remaining, 4096 if server_self.drip else 1 << 20))
                    if not chunk:
                        break
                    outputfile.write(chunk)
                    remaining -= len(chunk)
                    if server_self.drip:
                        server_self.stop.wait(server_self.drip)

        self.server = make_server(root, quiet=True, handler_class=Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if p == path)

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_python(code: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=REPO)


def read_tree(root: str) -> dict[str, bytes]:
    """Every file under ``root``, by its path relative to ``root``, with its bytes."""
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files
