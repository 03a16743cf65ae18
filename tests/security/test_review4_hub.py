"""Review 4, classes 5 to 7: odd numbers from a server, the environment and a Range header end as HubkitErrors.

- ``Retry-After: ²`` passed ``str.isdigit()`` and failed ``float()``: a bare ValueError from every resolve.
- ``HUBKIT_READ_TIMEOUT=1e300`` passed the environment checks and overflowed ``socket.settimeout``.
- ``hubkit registry serve`` answered a Range header of 5,000 digits with no response at all (ValueError in
  ``int()``); it now answers 416.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

from hubkit.errors import DownloadError, ResolveError
from hubkit.hub.config import MAX_SECONDS, HubConfig
from hubkit.hub.http import _retry_after_seconds
from hubkit.hub.resolvers import resolve


# -- class 5: Retry-After ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["²", "¹²", "١٢", "٣", "12345678901", "9" * 5000, "-1", "1e3", "inf", "nan",
                                   "0x10", "1.5", "", "  ", "Mon, 99 Foo 2024 00:00:00 GMT", "\x00", "3\n4"])
def test_odd_retry_after_values_are_ignored(value):
    assert _retry_after_seconds(value) is None


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("7", 7.0), (" 12 ", 12.0), ("9999999999", 9999999999.0)])
def test_retry_after_seconds_in_ascii_digits(value, seconds):
    assert _retry_after_seconds(value) == seconds


def test_retry_after_dates_still_work():
    assert _retry_after_seconds("Mon, 01 Jan 0001 00:00:00 GMT") == 0.0
    assert _retry_after_seconds("Fri, 31 Dec 9999 23:59:59 GMT") > 1e9


@pytest.mark.parametrize("value", ["²", "³¹", "12345678901"])  # latin-1, as headers are sent
def test_a_server_sending_an_odd_retry_after_gives_a_hubkit_error(hub_env, hostile, monkeypatch, value):
    monkeypatch.setenv("HUBKIT_RETRIES", "1")

    def busy(h):
        h.send_response(503)
        h.send_header("Retry-After", value)
        h.send_header("Content-Length", "0")
        h.end_headers()

    hostile.routes["/acme/m/1.json"] = busy
    with pytest.raises(DownloadError, match="HTTP 503"):
        resolve(f"{hostile.url}/acme/m/1")
    assert hostile.count("/acme/m/1.json") == 2


# -- class 6: numbers from the environment -------------------------------------------------------------------
_DURATIONS = ["HUBKIT_CONNECT_TIMEOUT", "HUBKIT_READ_TIMEOUT", "HUBKIT_REQUEST_DEADLINE", "HUBKIT_BACKOFF",
              "HUBKIT_BACKOFF_MAX", "HUBKIT_LOCK_TIMEOUT", "HUBKIT_LOCK_POLL"]


@pytest.mark.parametrize("value", ["1e300", "1e7", "1000001", "9" * 99])
@pytest.mark.parametrize("name", _DURATIONS)
def test_huge_durations_from_the_environment_are_refused_by_name(name, value):
    with pytest.raises(ResolveError, match=f"{name}=.*must be at most"):
        HubConfig.from_env({name: value, "HUBKIT_CACHE_DIR": "/nonexistent"})


@pytest.mark.parametrize(("name", "value"), [("HUBKIT_RETRIES", "1001"), ("HUBKIT_RETRIES", "9" * 99),
                                             ("HUBKIT_MAX_EXTRACT_BYTES", str(2**63)),
                                             ("HUBKIT_MAX_DOWNLOAD_BYTES", "9" * 99)])
def test_huge_counts_from_the_environment_are_refused_by_name(name, value):
    with pytest.raises(ResolveError, match=f"{name}=.*must be at most"):
        HubConfig.from_env({name: value, "HUBKIT_CACHE_DIR": "/nonexistent"})


def test_large_but_sane_numbers_are_accepted():
    config = HubConfig.from_env({"HUBKIT_READ_TIMEOUT": str(MAX_SECONDS), "HUBKIT_LOCK_TIMEOUT": "86400",
                                 "HUBKIT_RETRIES": "1000", "HUBKIT_MAX_DOWNLOAD_BYTES": str(2**63 - 1),
                                 "HUBKIT_CACHE_DIR": "/nonexistent"})
    assert config.read_timeout == MAX_SECONDS and config.retries == 1000
    with pytest.raises(ResolveError, match="read_timeout"):
        HubConfig(cache_dir="/nonexistent", read_timeout=1e300)


def test_a_huge_timeout_in_the_environment_fails_resolve_as_a_hubkit_error(hub_env, monkeypatch):
    monkeypatch.setenv("HUBKIT_READ_TIMEOUT", "1e300")
    with pytest.raises(ResolveError, match="HUBKIT_READ_TIMEOUT"):
        resolve("http://127.0.0.1:9/acme/m/1")


# -- class 7: Range headers of registry serve -----------------------------------------------------------------
def _status(port: int, range_header: str | None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        extra = f"Range: {range_header}\r\n" if range_header is not None else ""
        s.sendall(f"GET /index.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n".encode(
            "latin-1"))
        data = b""
        while len(data) < 1 << 16:  # bounded: the answer is short, and the socket times out
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


def test_registry_serve_answers_416_to_ranges_with_too_many_digits(tmp_path):
    from hubkit.hub.serve import make_server

    (tmp_path / "index.json").write_text("{}")
    server = make_server(str(tmp_path), 0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        assert _status(port, None).split(b" ")[1] == b"200"
        assert _status(port, "bytes=0-0").split(b" ")[1] == b"206"
        assert _status(port, "bytes=1-").split(b" ")[1] == b"206"
        for header in ["bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=" + "1" * 20 + "-",
                       "bytes=0-" + "0" * 20 + "1", "bytes=" + "9" * 19 + "-", "bytes=5-"]:
            assert _status(port, header).split(b" ")[1] == b"416", header
        for header in ["bytes=\u00b2-", "bytes=0-\u00b2", "bytes=-5", "bytes=0-1,2-3"]:  # not a plain range
            assert _status(port, header).split(b" ")[1] == b"200", header
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not os.path.exists(tmp_path / ".index.json")
