"""The registry served by nginx with the config in registry/nginx.conf (skipped when nginx is absent)."""

import os
import urllib.error
import urllib.request

import pytest

from hubkit.errors import DownloadError
from hubkit.hub import registry_latest, resolve
from tests.hub.test_serve import HIDDEN, plant_hidden

pytestmark = pytest.mark.nginx


def _get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.headers, response.read()


def test_nginx_serves_registry_with_types_caching_and_ranges(nginx_server, registry_root):
    status, headers, body = _get(f"{nginx_server}/acme/echo/1.tar.gz")
    assert status == 200 and headers["Content-Type"] == "application/gzip"
    assert "immutable" in headers["Cache-Control"] and "Content-Encoding" not in headers
    with open(os.path.join(registry_root, "acme", "echo", "1.tar.gz"), "rb") as f:
        assert body == f.read()
    status, headers, part = _get(f"{nginx_server}/acme/echo/1.tar.gz", {"Range": "bytes=10-19"})
    assert status == 206 and part == body[10:20] and headers["Content-Range"].startswith("bytes 10-19/")
    status, headers, _ = _get(f"{nginx_server}/acme/echo/1.json")
    assert headers["Content-Type"].startswith("application/json") and "immutable" in headers["Cache-Control"]
    status, headers, _ = _get(f"{nginx_server}/index.json")
    assert headers["Cache-Control"] == "no-cache"
    status, headers, page = _get(f"{nginx_server}/")
    assert headers["Content-Type"].startswith("text/html") and b"acme/echo" in page
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(f"{nginx_server}/acme/echo/9.json")
    assert info.value.code == 404


def test_resolve_through_nginx(hub_env, nginx_server, fake_module):
    handle = registry_latest(f"{nginx_server}/acme/echo")
    assert handle == f"{nginx_server}/acme/echo/1"
    path = resolve(handle)
    with open(os.path.join(path, "assets", "vocab.txt")) as f, open(os.path.join(fake_module, "assets", "vocab.txt")) as g:
        assert f.read() == g.read()
    with pytest.raises(DownloadError, match="HTTP 404"):
        resolve(f"{nginx_server}/acme/echo/2")


def test_nginx_hides_publish_leftovers(nginx_server, registry_root):
    leftover = os.path.join(registry_root, "acme", "echo", "2.tar.gz.tmp-0123abcd")
    with open(leftover, "wb") as f:
        f.write(b"partial")
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(f"{nginx_server}/acme/echo/2.tar.gz.tmp-0123abcd")
    assert info.value.code == 404



@pytest.mark.parametrize("url_path", HIDDEN)
def test_nginx_never_serves_hidden_files_or_leftovers(nginx_server, registry_root, url_path):
    plant_hidden(registry_root)
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(f"{nginx_server}{url_path}")
    assert info.value.code == 404
    assert _get(f"{nginx_server}/acme/echo/index.json")[0] == 200  # the real index is still served


def test_nginx_never_follows_a_link_planted_in_the_registry(nginx_server, registry_root, tmp_path):
    secret = tmp_path / "outside.json"
    secret.write_text('{"secret": true}')
    os.symlink(secret, os.path.join(registry_root, "acme", "echo", "7.json"))  # same owner: if_not_owner would serve it
    os.symlink(os.path.join(registry_root, "acme", "echo", "1.json"), os.path.join(registry_root, "acme", "echo", "8.json"))
    for name in ("7.json", "8.json"):  # out of the root, and inside it
        with pytest.raises(urllib.error.HTTPError) as info:
            _get(f"{nginx_server}/acme/echo/{name}")
        assert info.value.code in (403, 404)
    assert _get(f"{nginx_server}/acme/echo/1.json")[0] == 200


def test_nginx_sends_the_catalog_policy(nginx_server):
    from hubkit.hub.catalog import content_security_policy

    for path in ("/", "/index.html", "/acme/echo/index.html"):
        status, headers, page = _get(f"{nginx_server}{path}")
        assert status == 200 and b"acme/echo" in page
        assert headers["Content-Security-Policy"] == content_security_policy() + "; frame-ancestors 'none'"
        assert headers["X-Content-Type-Options"] == "nosniff"
