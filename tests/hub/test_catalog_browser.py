"""The catalog in a real browser: headless Chromium renders the pages served on 127.0.0.1.

Skipped when no Chromium is installed (`.ci/run` installs Debian's `chromium` when it can). Checks the text a
person sees, that the page's own style and script pass its Content-Security-Policy (and nothing else tries
to run), that hostile manifest values stay text, and saves a screenshot to ``$HUBKIT_TEST_ARTIFACTS``
(default ``build/test-artifacts``).
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from hubkit.hub.registry import publish
from hubkit.hub.serve import RegistryRequestHandler, make_server
from tests.hub.helpers import REPO, make_fake_module
from tests.hub.test_catalog import hostile_validate, parse

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOSTILE = '<img src=x onerror="document.body.setAttribute(\'data-pwned\', 1)">'
ARTIFACTS = Path(os.environ.get("HUBKIT_TEST_ARTIFACTS", os.path.join(REPO, "build", "test-artifacts")))


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


BROWSER = find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (.ci/run installs it with apt-get)")


def browse(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # a fresh profile every run
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, url]
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)


def visible_text(dom: str) -> str:
    """The text of the rendered DOM outside <style>, <script> and <head>, whitespace collapsed."""
    parser = parse(dom.split("</head>", 1)[-1])
    return " ".join(" ".join(parser.text).split())


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Content Security Policy" in line]


@pytest.fixture
def served_registry(tmp_path):
    root = tmp_path / "registry"
    module = make_fake_module(str(tmp_path / "module"), payload=random.Random(1).randbytes(1800))
    publish(module, str(root), name="acme/echo", description="Echoes its input.", validate=hostile_validate(HOSTILE))
    publish(module, str(root), name="acme/echo", validate=hostile_validate(HOSTILE))
    server = make_server(str(root), quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_catalog_renders_in_chromium(served_registry, tmp_path):
    _root, base = served_registry
    front = browse(tmp_path, f"{base}/", "--dump-dom")
    assert front.returncode == 0, front.stderr[-2000:]
    text = visible_text(front.stdout)
    assert "hubkit registry" in text and "1 module." in text and "Echoes its input." in text
    # The page's script ran under its own CSP (the hash matched) and filled in where the page is served.
    assert f'hubkit.Module("{base}/acme/echo/2")' in text, text
    assert "pip install hubkit-ml" in text
    assert console_errors(front.stderr) == [], console_errors(front.stderr)

    page = browse(tmp_path, f"{base}/acme/echo/index.html", "--dump-dom")
    assert page.returncode == 0, page.stderr[-2000:]
    text = visible_text(page.stdout)
    assert f'hubkit.Module("{base}/acme/echo/2")' in text
    assert HOSTILE in text  # shown as the text it is ...
    body = [attrs for tag, attrs in parse(page.stdout).tags if tag == "body"]
    assert body and "data-pwned" not in body[0]  # ... never run
    assert "<img" not in page.stdout.replace("&lt;img", "")
    for word in ("Versions", "sha256", "published", "archive", "manifest", "Signatures of version 2"):
        assert word in text
    assert "0.0 MB" not in text and " KB " in text
    assert console_errors(page.stderr) == [], console_errors(page.stderr)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "catalog-module-page.png"
    shot.unlink(missing_ok=True)
    result = browse(tmp_path, f"{base}/acme/echo/index.html", f"--screenshot={shot}", "--window-size=1200,1400",
                    "--hide-scrollbars")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000  # a rendered page, not a blank one
    assert struct.unpack(">II", data[16:24]) == (1200, 1400)


class NoScriptHandler(RegistryRequestHandler):
    """Adds a second policy forbidding every script: the browser enforces both, as if JavaScript were off."""

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", "script-src 'none'")
        super().end_headers()


@pytest.mark.parametrize("base_url", ["https://models.example.org", None])
def test_catalog_is_readable_without_javascript(tmp_path, base_url):
    root = tmp_path / "registry"
    module = make_fake_module(str(tmp_path / "module"))
    publish(module, str(root), name="acme/echo", description="Echoes.", base_url=base_url,
            validate=hostile_validate("x"))
    server = make_server(str(root), quiet=True, handler_class=NoScriptHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    served = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        result = browse(tmp_path, f"{served}/", "--dump-dom")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.returncode == 0, result.stderr[-2000:]
    text = visible_text(result.stdout)
    assert "Echoes." in text and "Signatures: default" in text
    expected = base_url or served  # without a recorded URL the development server fills in its own
    assert f'hubkit.Module("{expected}/acme/echo/1")' in text, text
    assert any("script-src 'none'" in line for line in console_errors(result.stderr))  # the script was blocked


def test_catalog_opened_from_disk_shows_a_loadable_archive_path(tmp_path, hub_env):
    import hubkit

    root = tmp_path / "registry"
    module = str(tmp_path / "module")

    def module_fn():
        x = hubkit.placeholder(hubkit.float32, [None, 2], name="x")
        hubkit.add_signature(inputs=x, outputs=x + 1.0)

    hubkit.Module(hubkit.create_module_spec(module_fn)).export(module)
    publish(module, str(root), name="acme/plus-one")
    result = browse(tmp_path, (root / "acme" / "plus-one" / "index.html").as_uri(), "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    text = visible_text(result.stdout)
    archive = root / "acme" / "plus-one" / "1.tar.gz"
    assert f'hubkit.Module("{archive.as_uri()}")' in text, text
    assert hubkit.Module(archive.as_uri())([[1.0, 2.0]]).tolist() == [[2.0, 3.0]]  # the line works as shown
