"""Fixtures of the TF1 importer tests: the committed TF1 modules (made by scripts/make_tf1_fixtures.py with real
TensorFlow) and TF's recorded inputs and outputs, copied per test so nothing writes into tests/data."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import numpy as np
import pytest

from hubkit.hub import HubConfig
from tests.hub.helpers import FaultServer

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "tf1")
FIXTURES = ("bert_encoder", "cnn_batch_norm", "mobilenet_block", "ops_zoo", "partitioned_embedding", "ref_variables",
            "text_embedding", "two_signatures")


def fixture_path(name: str) -> str:
    return os.path.abspath(os.path.join(DATA, name))


def recorded(name: str) -> dict[str, np.ndarray]:
    """TF's inputs and outputs: keys ``[train__]in__<sig>__<key>``, ``out__...``, ``grad__<var>``, ``after__<var>``."""
    with np.load(fixture_path(name) + ".npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def as_feed(value: np.ndarray) -> np.ndarray:
    """Recorded strings are bytes; hubkit string tensors hold str."""
    if value.dtype.kind == "S":
        out = np.empty(value.shape, dtype=object)
        out.reshape(-1)[:] = [x.decode("utf-8") for x in value.reshape(-1)]
        return out
    return value


@pytest.fixture
def tf1_copy(tmp_path):
    """Copies a committed TF1 module into tmp_path (tests may corrupt it)."""

    def copy(name: str) -> str:
        target = str(tmp_path / name)
        shutil.copytree(fixture_path(name), target)
        return target

    return copy


@pytest.fixture
def hub_env(tmp_path, monkeypatch) -> HubConfig:
    for key, value in {"HUBKIT_CACHE_DIR": str(tmp_path / "cache"), "HUBKIT_CONNECT_TIMEOUT": "2",
                       "HUBKIT_READ_TIMEOUT": "2", "HUBKIT_RETRIES": "1", "HUBKIT_BACKOFF": "0.01",
                       "HUBKIT_BACKOFF_MAX": "0.05", "HUBKIT_PROGRESS": "0", "NO_PROXY": "127.0.0.1,localhost",
                       "no_proxy": "127.0.0.1,localhost"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HUBKIT_OFFLINE", raising=False)
    return HubConfig.from_env()


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


@pytest.fixture(autouse=True)
def _stamps_in_tmp(tmp_path, monkeypatch):
    """Verified-bundle stamps (importers/tf1/bundle.py) go to a per-test cache, never the user's."""
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "hubkit-cache"))
