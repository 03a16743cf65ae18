"""Review 3 (issue 13), registry dates and HTTP: a bad manifest date never breaks publishing, no redirect hop
leaves HTTPS, and a server that trickles headers or a small body is cut off by an overall deadline."""

from __future__ import annotations

import itertools
import json

import pytest

from hubkit.hub import catalog
from hubkit.hub.manifest_schema import manifest_problem, published_at_utc
from hubkit.hub.registry import check_registry, publish
from tests.hub.helpers import fake_validate

BAD_DATES = ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59Z",
             "9999-12-31T23:00:00-23:59", "not a date", "2024-13-01", "2024-05-01T12:00:00+25:00",
             "2024-05-01T12:00:00" + "0" * 100, "\x00", " 2024-05-01"]


@pytest.mark.parametrize("date", BAD_DATES)
def test_a_bad_published_at_is_a_schema_problem(date):
    problem = manifest_problem({"sha256": "0" * 64, "size": 1, "published_at": date})
    assert problem is not None and "published_at" in problem
    assert published_at_utc(date) is None


@pytest.mark.parametrize("date", ["2024-05-01T12:00:00+00:00", "2024-05-01T12:00:00+02:00", "2024-05-01",
                                  "1970-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00"])
def test_a_good_published_at_passes(date):
    assert manifest_problem({"sha256": "0" * 64, "size": 1, "published_at": date}) is None
    assert published_at_utc(date) is not None


ODD_VALUES = BAD_DATES + [None, 7, 10**5000, [], {}, float("nan"), "", "x" * 100_000]


@pytest.mark.parametrize("value", ODD_VALUES, ids=[str(i) for i in range(len(ODD_VALUES))])
def test_the_catalog_date_never_raises(value):
    text = catalog._published(value)
    assert isinstance(text, str)


@pytest.mark.parametrize("date", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00"])
def test_a_bad_manifest_date_never_stops_other_publishes(tmp_path, fake_module, date):
    root = tmp_path / "reg"
    publish(fake_module, str(root), "acme/victim", validate=fake_validate)
    path = root / "acme" / "victim" / "1.json"
    manifest = json.loads(path.read_text())
    manifest["published_at"] = date
    path.write_text(json.dumps(manifest))
    publish(fake_module, str(root), "other/module", validate=fake_validate)
    publish(fake_module, str(root), "acme/victim", validate=fake_validate)
    index = json.loads((root / "index.json").read_text())
    assert sorted(index["modules"]) == ["acme/victim", "other/module"]
    assert index["modules"]["acme/victim"]["versions"] == [2]
    assert "other/module" in (root / "index.html").read_text()
    problems = check_registry(str(root))
    assert any("acme/victim/1" in p and "published_at" in p for p in problems), problems


def test_the_catalog_renders_a_bad_date_it_is_given_directly():
    page = catalog.render_catalog({"acme/m": [{"version": 1, "size": 1, "sha256": "0" * 64,
                                               "published_at": "0001-01-01T00:00:00+01:00"}]})
    assert "acme/m" in page


# --- class 10: no redirect hop may leave HTTPS --------------------------------------------------------------------

DOWNGRADES = {
    "https-http-https": ["https://models.example.org/acme/m/1.json", "http://mitm.example/x",
                         "https://evil.example/acme/m/1.json"],
    "https-http": ["https://models.example.org/acme/m/1.json", "http://mitm.example/acme/m/1.json"],
    "second-hop": ["https://models.example.org/acme/m/1.json", "https://cdn.example/a",
                   "http://mitm.example/b", "https://cdn.example/acme/m/1.json"],
    "credentials": ["https://models.example.org/acme/m/1.json", "http://user:s3cret@mitm.example/x",
                    "https://evil.example/acme/m/1.json"],
    "upper-case-scheme": ["https://models.example.org/acme/m/1.json", "HTTP://mitm.example/x",
                          "https://evil.example/acme/m/1.json"],
}


@pytest.mark.parametrize("chain", sorted(DOWNGRADES))
def test_no_redirect_hop_may_leave_https(hub_env, chain):
    import responses

    from hubkit.errors import DownloadError
    from hubkit.hub import resolve

    hops = DOWNGRADES[chain]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for here, there in itertools.pairwise(hops):
            mock.get(here, status=302, headers={"Location": there})
        mock.get(hops[-1], json={"sha256": "0" * 64, "size": 1, "name": "acme/m", "version": 1})
        with pytest.raises(DownloadError, match="plain HTTP") as caught:
            resolve("https://models.example.org/acme/m/1")
        requested = [call.request.url.lower() for call in mock.calls]
    assert not any(url.startswith("http://") for url in requested), requested  # refused before the plain request
    assert "s3cret" not in str(caught.value)
    assert "mitm.example" in str(caught.value)


def test_an_archive_download_redirected_to_http_is_refused(hub_env):
    import responses

    from hubkit.errors import DownloadError
    from hubkit.hub import resolve

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get("https://models.example.org/m.tar.gz", status=301, headers={"Location": "http://mitm.example/m.tar.gz"})
        mock.get("http://mitm.example/m.tar.gz", status=302, headers={"Location": "https://evil.example/m.tar.gz"})
        with pytest.raises(DownloadError, match="plain HTTP"):
            resolve("https://models.example.org/m.tar.gz")
        assert [call.request.url for call in mock.calls] == ["https://models.example.org/m.tar.gz"]


@pytest.mark.parametrize("location", ["/acme/m/1.json", "//cdn.example/acme/m/1.json", "https://cdn.example/acme/m/1.json"])
def test_redirects_that_stay_on_https_are_followed(hub_env, location):
    import responses

    from hubkit.hub.config import HubConfig
    from hubkit.hub.http import HttpClient

    body = {"sha256": "0" * 64, "size": 1}
    target = location if location.startswith("https:") else (
        "https:" + location if location.startswith("//") else "https://models.example.org" + location)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get("https://models.example.org/old/1.json", status=302, headers={"Location": location})
        mock.get(target, json=body)
        assert HttpClient(HubConfig.from_env()).get_json("https://models.example.org/old/1.json") == body


def test_a_redirect_from_http_to_https_is_followed(hub_env):
    import responses

    from hubkit.hub.config import HubConfig
    from hubkit.hub.http import HttpClient

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get("http://models.example.org/1.json", status=301, headers={"Location": "https://models.example.org/1.json"})
        mock.get("https://models.example.org/1.json", json={"ok": 1})
        assert HttpClient(HubConfig.from_env()).get_json("http://models.example.org/1.json") == {"ok": 1}


# --- class 11: an overall deadline for headers and registry documents ----------------------------------------------


class _Trickler:
    """A server on 127.0.0.1 sending one byte every 0.1 s (at most 300 bytes, stopped by close())."""

    def __init__(self, mode: str) -> None:
        import http.server
        import threading
        import time

        stop = self.stop = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def drip(self, data: bytes) -> None:
                for byte in data[:300]:
                    if stop.wait(0.1):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

            def do_GET(self):
                if mode == "headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    self.drip(b"X-Slow: " + b"a" * 400)
                elif mode == "json":
                    body = json.dumps({"sha256": "0" * 64, "size": 10, "description": "x" * 400}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.drip(body)
                else:  # an archive body without Content-Length, read until the server closes
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\n\r\n")
                    self.drip(b"\x1f\x8b" + b"\x00" * 400)
                time.sleep(0)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://user:s3cret@127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def slow_env(hub_env, monkeypatch):
    monkeypatch.setenv("HUBKIT_REQUEST_DEADLINE", "1")
    monkeypatch.setenv("HUBKIT_READ_TIMEOUT", "2")
    monkeypatch.setenv("HUBKIT_RETRIES", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return hub_env


@pytest.mark.parametrize(("mode", "path", "how"), [
    ("headers", "/acme/m/1.json", "get_json"),
    ("headers", "/m.tar.gz", "resolve"),
    ("headers", "/acme/m/1", "resolve"),
    ("json", "/acme/m/1.json", "get_json"),
    ("json", "/acme/m/1", "resolve"),
])
def test_a_server_trickling_headers_or_a_document_is_cut_off_at_the_deadline(slow_env, mode, path, how):
    import time

    from hubkit.errors import DownloadError
    from hubkit.hub import resolve
    from hubkit.hub.config import HubConfig
    from hubkit.hub.http import HttpClient

    server = _Trickler(mode)
    try:
        started = time.monotonic()
        with pytest.raises(DownloadError, match="HUBKIT_REQUEST_DEADLINE") as caught:
            if how == "get_json":
                HttpClient(HubConfig.from_env()).get_json(server.base + path)
            else:
                resolve(server.base + path)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert elapsed < 8, elapsed  # 1 s deadline; the server would drip for 30 s
    assert "127.0.0.1" in str(caught.value) and "s3cret" not in str(caught.value)


def test_an_archive_body_read_until_close_is_watched_for_stalls(slow_env):
    """A body without Content-Length left its connection: the stall watchdog found no socket and waited."""
    import time

    from hubkit.errors import DownloadError
    from hubkit.hub import resolve

    server = _Trickler("body")
    try:
        started = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            resolve(server.base + "/m.tar.gz")
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert elapsed < 12, elapsed
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "x"])
def test_the_request_deadline_must_be_positive(monkeypatch, tmp_path, value):
    from hubkit.errors import ResolveError
    from hubkit.hub.config import HubConfig

    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HUBKIT_REQUEST_DEADLINE", value)
    with pytest.raises(ResolveError):
        HubConfig.from_env()
