"""The development registry server: hidden files and publish leftovers are never served."""

import os
import threading
import urllib.error
import urllib.request

import pytest

from hubkit.hub.serve import make_server

HIDDEN = [
    "/.secret/index.json",
    "/.secret/index.html",
    "/acme/.git/index.json",
    "/.index.lock",
    "/acme/echo/.hidden",
    "/acme/echo/%2Ehidden",
    "/acme/echo/index.json.tmp-0123abcd",
    "/index.json.tmp-0123abcd",
    "/acme/x.tmp-1/1.json",
]


def plant_hidden(root):
    """Creates a file at every path of HIDDEN under a registry root."""
    for url_path in HIDDEN:
        path = os.path.join(root, *url_path.replace("%2E", ".").strip("/").split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("{}")


@pytest.fixture
def dev_server(registry_root):
    server = make_server(registry_root, quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_dev_server_never_serves_hidden_files_or_leftovers(dev_server, registry_root, method):
    plant_hidden(registry_root)
    for url_path in HIDDEN:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(f"{dev_server}{url_path}", method=method), timeout=5)
        assert info.value.code == 404, url_path
    with urllib.request.urlopen(f"{dev_server}/acme/echo/index.json", timeout=5) as response:
        assert response.status == 200
