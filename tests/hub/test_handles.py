"""Handles: normalisation, registry URLs, pins and cache keys."""

import os

import pytest

from hubkit.errors import ResolveError
from hubkit.hub.handles import (
    cache_key,
    is_archive_name,
    is_registry_name_part,
    is_url,
    local_path,
    normalize_handle,
    registry_parts,
    split_module_name,
    split_sha256_pin,
    url_to_path,
)


def test_normalize_handle_spellings_share_one_cache_key():
    spellings = ["https://Models.Example.org/acme/text/2", "HTTPS://models.example.org/acme/text/2/",
                 "  https://models.example.org/acme/text/2 "]
    assert {cache_key(normalize_handle(h)) for h in spellings} == {cache_key("https://models.example.org/acme/text/2")}
    assert cache_key("https://h/acme/text/2") != cache_key("https://h/acme/text/3")


def test_normalize_local_path_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_handle("mod") == os.path.join(str(tmp_path), "mod")


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_normalize_rejects_non_strings(bad):
    with pytest.raises(ResolveError, match="non-empty string"):
        normalize_handle(bad)


def test_registry_parts():
    assert registry_parts("https://h/acme/text-embedding/2") == ("https://h", "acme", "text-embedding", 2)
    assert registry_parts("http://h:8080/a/b/c/pub/name/10") == ("http://h:8080/a/b/c", "pub", "name", 10)
    assert registry_parts("https://h/acme/text-embedding") is None  # no version: never "latest" implicitly
    assert registry_parts("https://h/acme/text-embedding/2.tar.gz") is None
    assert registry_parts("https://h/acme/text/2?x=1") is None
    assert registry_parts("file:///acme/text/2") is None
    # Versions are positive integers spelled without leading zeros: one version, one URL, one cache entry.
    for version in ("0", "01", "007", "-1"):
        assert registry_parts(f"https://h/acme/text/{version}") is None
    assert registry_parts("https://h/acme/index.json/1") is None  # not a name a registry can hold


def test_registry_name_rule_is_shared():
    good = ["acme", "text-embedding", "v1.2", "a_b", "9lives", "json"]
    bad = ["", ".hidden", "-x", "index.json", "index.html", "INDEX.JSON", "1.json", "2.tar.gz", "x.gz",
           "a.tmp-0123", "a/b", "a b", None, 7]
    assert [p for p in good if not is_registry_name_part(p)] == []
    assert [p for p in bad if is_registry_name_part(p)] == []
    assert split_module_name("acme/text") == ("acme", "text")
    for name in ("acme", "acme/text/x", "acme/index.json", "index.html/x", "acme/", None):
        assert split_module_name(name) is None


def test_sha256_pin():
    digest = "ab" * 32
    assert split_sha256_pin(f"https://h/m.tar.gz#sha256={digest.upper()}") == ("https://h/m.tar.gz", digest)
    assert split_sha256_pin("https://h/m.tar.gz") == ("https://h/m.tar.gz", None)
    with pytest.raises(ResolveError, match="not a pin"):
        split_sha256_pin("https://h/m.tar.gz#md5=abc")
    with pytest.raises(ResolveError, match="not a pin"):
        split_sha256_pin("https://h/m.tar.gz#sha256=abc")


def test_url_helpers():
    assert is_url("file:///x") and is_url("https://h/x")
    assert not is_url("C:\\models\\x") and not is_url("relative/dir")
    assert is_archive_name("https://h/a/B.TAR.GZ") and is_archive_name("m.tgz") and is_archive_name("m.tar")
    assert not is_archive_name("m.zip") and not is_archive_name("m.tar.bz2")
    assert url_to_path("file:///tmp/a%20b") == "/tmp/a b"
    with pytest.raises(ResolveError, match="only local files"):
        url_to_path("file://otherhost/tmp/x")


def test_local_path_is_one_spelling_of_paths_and_file_urls(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = str(tmp_path / "m.tar.gz")
    for spelling in ("m.tar.gz", "./m.tar.gz", "~/m.tar.gz", f"file://{expected}", f"file://localhost{expected}"):
        assert local_path(spelling) == expected, spelling
    with pytest.raises(ResolveError, match="names host 'otherhost'"):
        local_path("file://otherhost/m.tar.gz")
