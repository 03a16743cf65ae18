"""Fixtures for the hub tests: hand-made modules, registries, a fault-injecting HTTP server, nginx.

Everything runs on 127.0.0.1; every wait is bounded in count and time.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from hubkit.hub import HubConfig
from hubkit.hub.registry import publish
from tests.hub.helpers import REPO, FaultServer, fake_validate, free_port, make_fake_module


@pytest.fixture
def fake_module(tmp_path) -> str:
    return make_fake_module(str(tmp_path / "fake_module"))


@pytest.fixture
def hub_env(tmp_path, monkeypatch) -> HubConfig:
    """Points the hub at a private cache with small timeouts and backoffs, via the environment."""
    cache = tmp_path / "cache"
    settings = {
        "HUBKIT_CACHE_DIR": str(cache),
        "HUBKIT_CONNECT_TIMEOUT": "2",
        "HUBKIT_READ_TIMEOUT": "2",
        "HUBKIT_RETRIES": "2",
        "HUBKIT_BACKOFF": "0.01",
        "HUBKIT_BACKOFF_MAX": "0.05",
        "HUBKIT_LOCK_POLL": "0.05",
        "HUBKIT_PROGRESS": "0",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HUBKIT_OFFLINE", raising=False)
    monkeypatch.delenv("HUBKIT_LOCK_TIMEOUT", raising=False)
    return HubConfig.from_env()


@pytest.fixture
def registry_root(tmp_path, fake_module) -> str:
    root = str(tmp_path / "registry")
    publish(fake_module, root, name="acme/echo", description="An echo module.", validate=fake_validate)
    return root


@pytest.fixture
def server_factory() -> Iterator:
    servers: list[FaultServer] = []

    def start(root: str) -> FaultServer:
        server = FaultServer(root)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def registry_server(registry_root, server_factory) -> FaultServer:
    return server_factory(registry_root)


@pytest.fixture
def nginx_server(registry_root, tmp_path) -> Iterator[str]:
    """nginx serving the registry root with a config generated from registry/nginx.conf; skipped without nginx."""
    binary = shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx")
    if not binary:
        pytest.skip("nginx is not installed")
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    port = free_port()
    with open(os.path.join(REPO, "registry", "nginx.conf")) as f:
        site = f.read().replace("listen 8080;", f"listen 127.0.0.1:{port};").replace("/srv/hubkit-registry", registry_root)
    temp_paths = "\n".join(
        f"  {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    config = f"""
{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  include /etc/nginx/mime.types;
{temp_paths}
{site}
}}
"""
    (prefix / "nginx.conf").write_text(config)
    process = subprocess.Popen([binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited: {process.stderr.read().decode()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("nginx did not start within 10 s")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


