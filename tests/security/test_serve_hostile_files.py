"""The development registry server serves regular files inside its root only.

A publisher of a writable registry may plant a link to a file outside the root (``/etc/passwd``, another
user's key) or a FIFO that would block the serving thread forever.
"""

from __future__ import annotations

import os
import threading

import pytest

from hubkit.hub.serve import make_server
from tests.security.hostile import http_get


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "registry"
    (root / "acme" / "m").mkdir(parents=True)
    (root / "acme" / "m" / "1.json").write_text('{"name": "acme/m"}')
    secret = tmp_path / "secret"
    secret.write_text("outside the root")
    os.symlink(secret, root / "acme" / "m" / "2.json")
    os.symlink(tmp_path, root / "acme" / "out")
    os.mkfifo(root / "acme" / "m" / "3.json")
    server = make_server(str(root), quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("path", ["/acme/m/2.json", "/acme/out/secret", "/acme/m/3.json"])
def test_links_out_of_the_root_and_fifos_are_not_served(served, path):
    assert http_get(served + path) == (404, b"")  # a FIFO answers at once: no thread blocks on it


def test_regular_files_are_still_served(served):
    assert http_get(served + "/acme/m/1.json") == (200, b'{"name": "acme/m"}')
