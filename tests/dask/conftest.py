"""Fixtures of the hubkit.dask tests: example modules, a registry on 127.0.0.1, one LocalCluster per file.

The cluster has 2 worker processes with one thread each; the workers get their own hubkit cache (shared
by both, as on one machine) and short network timeouts through the environment they inherit at spawn.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("distributed")

import hubkit as hk
from tests.hub.helpers import REPO, FaultServer

WORDS = [f"w{i}" for i in range(40)] + ["the", "cat", "sat", "on", "mat"]
IMAGE_SIZE = 8

WORKER_ENV = {
    "HUBKIT_PROGRESS": "0",
    "HUBKIT_CONNECT_TIMEOUT": "2",
    "HUBKIT_READ_TIMEOUT": "5",
    "HUBKIT_RETRIES": "1",
    "HUBKIT_BACKOFF": "0.01",
    "HUBKIT_BACKOFF_MAX": "0.05",
    "HUBKIT_LOCK_POLL": "0.05",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sentences(count: int, seed: int = 0) -> list[str]:
    """Sentences of 0 to 6 words, some unknown to the vocabulary."""
    rng = np.random.default_rng(seed)
    vocab = WORDS + ["zebra", "unicorn"]
    return [" ".join(rng.choice(vocab, rng.integers(0, 7))) for _ in range(count)]


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(count, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def module_dirs(tmp_path_factory) -> dict[str, str]:
    """Exported text-embedding and image-feature modules (built by the example exporters)."""
    root = tmp_path_factory.mktemp("modules")
    rng = np.random.default_rng(0)
    text = str(root / "text")
    load_script("export_text_embedding").export_words(
        WORDS, rng.normal(size=(len(WORDS), 16)).astype(np.float32), text, num_oov_buckets=2
    )
    image = str(root / "image")
    load_script("export_image_features").export(image, image_size=IMAGE_SIZE)
    return {"text": text, "image": image}


class Registry:
    """A registry root served on 127.0.0.1 by a server that counts requests per path."""

    def __init__(self, root: str, module_dirs: dict[str, str]) -> None:
        self.root = root
        self.module_dirs = module_dirs
        self.server = FaultServer(root)
        self.url = self.server.url

    def publish(self, kind: str, name: str) -> str:
        """Publishes the ``kind`` module as ``acme/<name>`` (a fresh name per test) and returns its handle."""
        hk.publish(self.module_dirs[kind], self.root, name=f"acme/{name}", version=1)
        return f"{self.url}/acme/{name}/1"

    def archive_requests(self, name: str) -> int:
        return self.server.count(f"/acme/{name}/1.tar.gz")


@pytest.fixture(scope="module")
def registry(tmp_path_factory, module_dirs) -> Iterator[Registry]:
    reg = Registry(str(tmp_path_factory.mktemp("registry")), module_dirs)
    yield reg
    reg.server.close()


@pytest.fixture(scope="module")
def worker_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("worker-cache"))


@pytest.fixture(scope="module")
def client(worker_cache) -> Iterator:
    """A distributed Client on a LocalCluster of 2 worker processes (1 thread each, hubkit.dask's throughput
    settings), for the whole file."""
    import dask
    from distributed import Client, LocalCluster

    import hubkit.dask

    env = {**WORKER_ENV, "HUBKIT_CACHE_DIR": worker_cache}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # inherited by the worker processes the nannies spawn (and respawn)
    # In force for the cluster's whole life: a nanny reads Dask's configuration again when it respawns a worker.
    with dask.config.set(hubkit.dask.throughput_config()):
        try:
            cluster = LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                silence_logs=logging.CRITICAL, memory_limit=0,
            )
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        client = Client(cluster)
        try:
            client.wait_for_workers(2, timeout=60)
            yield client
        finally:
            client.close()
            cluster.close(timeout=20)


@pytest.fixture
def client_env(tmp_path, monkeypatch) -> str:
    """The test process (the Dask client) gets its own hubkit cache, apart from the workers'."""
    cache = str(tmp_path / "client-cache")
    monkeypatch.setenv("HUBKIT_CACHE_DIR", cache)
    for key, value in WORKER_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HUBKIT_OFFLINE", raising=False)
    return cache
