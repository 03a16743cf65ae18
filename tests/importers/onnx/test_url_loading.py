"""Loading an ``.onnx`` model by file:// and http(s):// URL (a real server on 127.0.0.1, and `responses`)."""

from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnx
import pytest
import responses

import hubkit as hk
from tests.importers.onnx.onnx_helpers import rel_err, run_ort
from tests.importers.onnx.test_import import small_cnn


@pytest.fixture
def env(tmp_path, monkeypatch):
    for key, value in {"HUBKIT_CACHE_DIR": str(tmp_path / "cache"), "HUBKIT_RETRIES": "0", "HUBKIT_PROGRESS": "0",
                       "HUBKIT_CONNECT_TIMEOUT": "2", "HUBKIT_READ_TIMEOUT": "2",
                       "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HUBKIT_OFFLINE", raising=False)


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    onnx.save(small_cnn("x", "y"), str(root / "cnn.onnx"))
    (root / "page.onnx").write_text("<html>not a model</html>")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _check(module, path):
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert rel_err(module(x, as_dict=True)["y"], run_ort(str(path), {"x": x})[0]) <= 1e-5


def test_http_url_downloads_into_the_cache_once(env, served, monkeypatch):
    root, base = served
    m = hk.Module(f"{base}/cnn.onnx")
    _check(m, root / "cnn.onnx")
    monkeypatch.setenv("HUBKIT_OFFLINE", "1")  # the second load is a cache hit, no request
    _check(hk.Module(f"{base}/cnn.onnx"), root / "cnn.onnx")


def test_sha256_pin_is_verified(env, served):
    root, base = served
    digest = hashlib.sha256((root / "cnn.onnx").read_bytes()).hexdigest()
    _check(hk.Module(f"{base}/cnn.onnx#sha256={digest}"), root / "cnn.onnx")
    with pytest.raises(hk.IntegrityError):
        hk.Module(f"{base}/cnn.onnx#sha256={'0' * 64}")


def test_a_page_that_is_no_model_is_refused(env, served):
    _, base = served
    with pytest.raises(hk.DownloadError, match="does not serve an ONNX model"):
        hk.Module(f"{base}/page.onnx")


@responses.activate
def test_size_bound(env, monkeypatch, tmp_path):
    onnx.save(small_cnn("x", "y"), str(tmp_path / "m.onnx"))
    body = (tmp_path / "m.onnx").read_bytes()
    responses.add(responses.GET, "https://models.example/m.onnx", body=body)
    monkeypatch.setenv("HUBKIT_MAX_EXTRACT_BYTES", "100")
    with pytest.raises(hk.DownloadError, match="larger than the 100-byte limit"):
        hk.Module("https://models.example/m.onnx")


def test_file_url(env, tmp_path):
    onnx.save(small_cnn("x", "y"), str(tmp_path / "a.onnx"))
    _check(hk.Module((tmp_path / "a.onnx").as_uri()), tmp_path / "a.onnx")
    onnx.save(small_cnn("x", "y"), str(tmp_path / "b.onnx"))  # two models in the directory: a cached copy
    _check(hk.Module((tmp_path / "b.onnx").as_uri()), tmp_path / "b.onnx")
