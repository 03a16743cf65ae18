"""Fixtures of the adversarial tests: the hub's private-cache environment, hostile servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hub.conftest import fake_module, hub_env, registry_root, registry_server, server_factory  # noqa: F401
from tests.security.hostile import HostileServer


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    try:
        yield server
    finally:
        server.close()
