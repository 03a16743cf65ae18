"""The Python examples of README.md, docs/hub.md and docs/common_signatures.md run as written.

The docs load modules from ``https://models.example.org``, a registry the reader hosts. Here that base
URL is replaced by a registry served on 127.0.0.1 holding the modules the examples name (built with the
example exporters of scripts/), each doc's blocks run in order in a fresh directory, and every
``print(...)  # comment`` line must print its comment.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import threading
from pathlib import Path

import numpy as np
import pytest

import hubkit as hk
from hubkit.hub import resolvers
from hubkit.hub.serve import make_server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_BASE = "https://models.example.org"
DIM = 128  # hub.md publishes "Sentence embeddings, 128-d."
WORDS = ["the", "quick", "brown", "fox", "hello", "world", "a", "second", "sentence", "hi"]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example_registry(tmp_path_factory):
    """The base URL of a registry on 127.0.0.1 with acme/text-embedding 1 and 2 and acme/image-features 1."""
    work = tmp_path_factory.mktemp("example_registry")
    root = work / "registry"
    text, image = load_script("export_text_embedding"), load_script("export_image_features")
    rng = np.random.default_rng(0)
    for version in (1, 2):
        module_dir = str(work / f"text-embedding-{version}")
        text.export_words(WORDS, rng.standard_normal((len(WORDS), DIM)).astype(np.float32), module_dir, num_oov_buckets=1)
        hk.publish(module_dir, str(root), name="acme/text-embedding", description=f"Sentence embeddings, {DIM}-d.")
    image.export(str(work / "image-features"), image_size=64)
    hk.publish(str(work / "image-features"), str(root), name="acme/image-features", description="Image features.")
    server = make_server(str(root), quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def doc_env(tmp_path, monkeypatch):
    """A fresh working directory and cache, no proxy for 127.0.0.1, no resolver left behind."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HUBKIT_PROGRESS", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv("HUBKIT_OFFLINE", raising=False)
    monkeypatch.setattr(resolvers, "_user_resolvers", [])
    return tmp_path


def expected_prints(block: str) -> list[str]:
    """The comment after each ``print(...)`` line: what that line prints."""
    return [m.group(1).strip() for line in block.splitlines() if line.lstrip().startswith("print(")
            for m in [re.search(r"#\s*(.*)$", line)] if m]


def run_doc(name: str, base_url: str, namespace: dict | None = None) -> dict:
    """Runs the ``python`` blocks of ``name`` in order in one namespace, example.org pointing at ``base_url``."""
    path = ROOT / name
    blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)
    assert blocks, name
    namespace = {"__name__": f"docs_{path.stem}", **(namespace or {})}
    for block in blocks:
        assert "/tmp/" not in block and "/srv/" not in block, f"{name}: examples write to relative paths"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block.replace(EXAMPLE_BASE, base_url), str(path), "exec"), namespace)  # our docs: the test
        expected = expected_prints(block)
        if expected:
            assert out.getvalue().splitlines() == expected, block
    return namespace


def test_readme_examples_run(example_registry, doc_env):
    ns = run_doc("README.md", example_registry)
    assert ns["vectors"].shape == (2, DIM) and ns["vectors"].dtype == np.float32
    assert sorted(ns["outs"]) == ["default", "num_rows", "row_ids"]
    assert ns["train_op"].graph is ns["g"]
    assert (doc_env / "my-module" / "hubkit_module.pb").is_file()
    assert (doc_env / "registry" / "acme" / "my-module" / "1.tar.gz").is_file()


def test_hub_doc_examples_run(example_registry, doc_env):
    def my_bucket_download(handle: str) -> str:
        return hk.resolve(f"{example_registry}/acme/text-embedding/1")

    ns = run_doc("docs/hub.md", example_registry, {"my_bucket_download": my_bucket_download})
    assert ns["url"] == f"{example_registry}/acme/text-embedding/2"
    assert hk.resolve("gs://bucket/text-embedding") == hk.resolve(f"{example_registry}/acme/text-embedding/1")
    manifest = (doc_env / "registry" / "acme" / "text-embedding" / "1.json").read_text()
    assert "Sentence embeddings, 128-d." in manifest


def test_common_signatures_examples_run(example_registry, doc_env):
    ns = run_doc("docs/common_signatures.md", example_registry)
    vectors = ns["vectors"]
    assert vectors.shape == (8, ns["features"].get_output_info_dict()["default"].shape[1])
    assert ns["height"] == ns["width"] == 64
    np.testing.assert_array_equal(ns["embed"](["The quick brown fox.", "Hello world", ""])[2], np.zeros(DIM))
