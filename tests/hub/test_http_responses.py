"""Exact HTTP failure cases with `responses`: retries, backoff, Retry-After, status messages, User-Agent."""

import hashlib

import pytest
import requests
import responses

import hubkit
from hubkit.errors import DownloadError, IntegrityError, ResolveError
from hubkit.hub import HubConfig
from hubkit.hub.http import HttpClient
from tests.hub.archives import build_archive

URL = "https://models.example.org/acme/echo/1.tar.gz"


@pytest.fixture
def client(tmp_path):
    config = HubConfig(cache_dir=str(tmp_path), retries=3, backoff=0.5, backoff_max=10.0)
    client = HttpClient(config)
    client.delays = []
    client.sleep = client.delays.append
    return client


@responses.activate
def test_backoff_doubles_and_retry_after_is_honoured(client, tmp_path):
    body = build_archive([])
    responses.get(URL, status=503)
    responses.get(URL, status=429, headers={"Retry-After": "7"})
    responses.get(URL, status=408)
    responses.get(URL, body=body, headers={"Content-Type": "application/gzip"})
    result = client.download(URL, str(tmp_path / "a.part"))
    assert result.size == len(body) and result.sha256 == hashlib.sha256(body).hexdigest()
    assert client.delays == [0.5, 7.0, 2.0]  # 0.5, max(1.0, Retry-After 7), 2.0


@responses.activate
def test_retry_after_is_capped(client, tmp_path):
    responses.get(URL, status=503, headers={"Retry-After": "86400"})
    responses.get(URL, body=build_archive([]))
    client.download(URL, str(tmp_path / "a.part"))
    assert client.delays == [10.0]


@responses.activate
def test_connection_errors_are_retried_then_reported(client, tmp_path):
    for _ in range(4):
        responses.get(URL, body=requests.ConnectionError("refused"))
    with pytest.raises(DownloadError, match=r"after 4 attempts: connection failed: refused"):
        client.download(URL, str(tmp_path / "a.part"))
    assert len(client.delays) == 3


@responses.activate
def test_404_is_final_and_explained(client):
    responses.get(URL.replace(".tar.gz", ".json"), status=404)
    with pytest.raises(DownloadError, match=r"does not exist \(HTTP 404\): no such module or version"):
        client.get_json(URL.replace(".tar.gz", ".json"))
    assert client.delays == []


@responses.activate
def test_403_is_final(client, tmp_path):
    responses.get(URL, status=403)
    with pytest.raises(DownloadError, match=r"refused .* with HTTP 403"):
        client.download(URL, str(tmp_path / "a.part"))
    assert client.delays == []


@responses.activate
@pytest.mark.parametrize(("body", "content_type"), [
    (b"<!doctype html><title>Sign in</title>", "text/html"),
    (b"<html>oops</html>", "application/octet-stream"),
    (b"PK\x03\x04 a zip file", "application/zip"),
])
def test_non_archive_is_not_a_module(client, tmp_path, body, content_type):
    responses.get(URL, body=body, headers={"Content-Type": content_type})
    with pytest.raises(DownloadError, match="does not serve a hubkit module"):
        client.download(URL, str(tmp_path / "a.part"))


@responses.activate
@pytest.mark.parametrize("body", [b"<html>login</html>", b"{not json", b"\xff\xfe"])
def test_manifest_must_be_json(client, body):
    responses.get("https://h/acme/echo/1.json", body=body)
    with pytest.raises(DownloadError, match="does not serve a hubkit registry document"):
        client.get_json("https://h/acme/echo/1.json")


@responses.activate
def test_oversized_download_is_cut_short(client, tmp_path):
    responses.get(URL, body=build_archive([]) + b"\0" * 4096)
    with pytest.raises(IntegrityError, match="larger than the 100 bytes"):
        client.download(URL, str(tmp_path / "a.part"), expected_size=100)


@responses.activate
def test_user_agent_and_identity_encoding(client, tmp_path):
    responses.get(URL, body=build_archive([]))
    client.download(URL, str(tmp_path / "a.part"))
    headers = responses.calls[0].request.headers
    assert headers["User-Agent"] == f"hubkit/{hubkit.__version__}"
    assert headers["Accept-Encoding"] == "identity"


def test_offline_client_makes_no_request(tmp_path):
    client = HttpClient(HubConfig(cache_dir=str(tmp_path), offline=True))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        with pytest.raises(ResolveError, match="HUBKIT_OFFLINE"):
            client.get_json("https://h/index.json")
        assert len(mock.calls) == 0


@responses.activate
def test_manifest_checks(tmp_path, monkeypatch):
    from hubkit.hub import resolve

    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HUBKIT_RETRIES", "0")
    base = "https://h.example/acme/echo"
    responses.get(f"{base}/1.json", json={"sha256": "zz", "size": 3})
    responses.get(f"{base}/2.json", json={"sha256": "a" * 64, "size": 3, "min_hubkit_version": "99.0"})
    responses.get(f"{base}/3.json", json={"sha256": "a" * 64, "size": 3, "format_version": 9})
    responses.get(f"{base}/4.json", json=[1, 2])
    with pytest.raises(DownloadError, match="lacks a valid 'sha256' and 'size'"):
        resolve(f"{base}/1")
    with pytest.raises(ResolveError, match=r"needs hubkit >= 99.0.*please upgrade"):
        resolve(f"{base}/2")
    with pytest.raises(ResolveError, match="format version 9"):
        resolve(f"{base}/3")
    with pytest.raises(DownloadError, match="not a JSON object"):
        resolve(f"{base}/4")


@responses.activate
def test_a_fresh_download_file_is_never_truncated(client, tmp_path, monkeypatch):
    """ftruncate(0) on ext4 makes the close write the whole file back (auto_da_alloc): only a non-empty file is emptied."""
    import os

    body = build_archive([])
    responses.get(URL, body=body)
    truncated = []
    real = os.ftruncate
    monkeypatch.setattr(os, "ftruncate", lambda fd, size: (truncated.append(size), real(fd, size))[1])
    client.download(URL, str(tmp_path / "fresh.part"))
    assert truncated == []
    stale = tmp_path / "stale.part"
    stale.write_bytes(b"old bytes of another download")
    os.chmod(stale, 0o600)
    assert client.download(URL, str(stale)).sha256 == hashlib.sha256(body).hexdigest()
    assert stale.read_bytes() == body and truncated == [0]
