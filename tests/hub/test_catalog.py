"""The registry catalog pages: what a visitor reads (sizes, hashes, dates, signatures, links, the load line),
and that hostile manifest values can never become markup or script (stored XSS), with a strict CSP."""

from __future__ import annotations

import html.parser
import json
import os
import random
import re
import urllib.request

import pytest

from hubkit.errors import RegistryError
from hubkit.hub.catalog import content_security_policy, render_catalog, render_module_page
from hubkit.hub.registry import publish, rebuild_indexes
from tests.hub.helpers import REPO, fake_validate, make_fake_module

# Every element and attribute the templates themselves use; anything else on a page came from a manifest.
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "p", "a", "h1", "h2", "h3", "code", "pre",
                "section", "table", "tr", "th", "td", "span", "br", "script"}
ALLOWED_ATTRIBUTES = {"lang", "charset", "http-equiv", "content", "name", "data-root", "href", "class", "id",
                      "data-path"}

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "' onmouseover='alert(1)",
    "javascript:alert(1)",
    "</style><script>alert(1)</script>",
    "</code></pre><iframe src=//evil.example>",
    "<!--",
    "${body}$csp",
    "&lt;b&gt;",
]


class PageParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def assert_inert(page: str) -> PageParser:
    """The page holds only the template's own elements, attributes, links and single script."""
    parsed = parse(page)
    for tag, attrs in parsed.tags:
        assert tag in ALLOWED_TAGS, (tag, attrs)
        assert set(attrs) <= ALLOWED_ATTRIBUTES, (tag, attrs)
        href = attrs.get("href")
        if href is not None:
            assert re.fullmatch(r"(\.\./\.\./)?[A-Za-z0-9._%/-]*", href), href  # relative, no scheme, no query
    assert [t for t, _ in parsed.tags].count("script") == 1
    assert parsed.scripts[0].strip().startswith("// Without a published base URL")
    metas = [a for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert len(metas) == 1 and metas[0]["content"] == content_security_policy()
    return parsed


def hostile_validate(value: str):
    def validate(module_dir: str) -> dict:
        # publish validates manifests with the registry's schema, so shapes stay well-formed here; hostile
        # shape entries reach the page only through manifests edited on disk (the test below).
        io = {value: {"dtype": value, "shape": [None, 3]}, "x": {"dtype": "float32", "shape": [None, 3]}}
        return {"format_version": 1, "variants": [
            {"tags": [value, "train"], "signatures": {value: {"inputs": io, "outputs": io}}},
            {"tags": [], "signatures": {"default": {"inputs": {"x": {"dtype": "float32", "shape": [None, 3]}},
                                                    "outputs": {}}}},
        ]}
    return validate


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_manifest_values_are_text_only(tmp_path, fake_module, value):
    root = str(tmp_path / "reg")
    publish(fake_module, root, name="acme/echo", description=value, validate=hostile_validate(value))
    for page_path in (os.path.join(root, "index.html"), os.path.join(root, "acme", "echo", "index.html")):
        with open(page_path, encoding="utf-8") as f:
            page = f.read()
        parsed = assert_inert(page)
        assert value in "".join(parsed.text)  # shown, as the text it is
    with open(os.path.join(root, "acme", "echo", "index.html"), encoding="utf-8") as f:
        text = "".join(parse(f.read()).text)
    assert text.count(value) >= 4  # the tag, the signature, an input name and its dtype


def test_manifests_edited_on_disk_with_hostile_types_render_inertly(tmp_path, fake_module):
    """A manifest written by hand (not by publish): wrong types everywhere, never a crash nor markup."""
    root = str(tmp_path / "reg")
    publish(fake_module, root, name="acme/echo", validate=fake_validate)
    weird = {"version": 1, "size": "<b>big</b>", "sha256": "<script>x</script>", "published_at": "<i>now</i>",
             "description": ["<script>"],
             "variants": [7, {"tags": "<x>", "signatures": {"<s>": {"inputs": [1], "outputs": {"<o>": 5}}}},
                          {"tags": [None, {"a": "<y>"}], "signatures": ["<z>"]}]}
    page = render_module_page("acme/echo", [weird])
    parsed = assert_inert(page)
    text = "".join(parsed.text)
    assert "<script>x</script>" in text and "<s>" in text and "?" in text
    assert_inert(render_catalog({"acme/echo": [weird]}))


def test_page_shows_sizes_hashes_dates_signatures_and_manifest_links(tmp_path):
    fake_module = make_fake_module(str(tmp_path / "module"), payload=random.Random(0).randbytes(1800))
    root = str(tmp_path / "reg")
    first = publish(fake_module, root, name="acme/echo", description="Echoes.", validate=fake_validate)
    second = publish(fake_module, root, name="acme/echo", validate=fake_validate)
    assert second["description"] == "Echoes."  # kept without --description
    with open(os.path.join(root, "acme", "echo", "index.html"), encoding="utf-8") as f:
        page = f.read()
    text = " ".join(" ".join(assert_inert(page).text).split())
    for manifest in (first, second):
        assert manifest["sha256"] in text
        assert 1000 < manifest["size"] < 10_000
        assert f" {manifest['size'] / 1000:.1f} KB " in text  # ~2 KB, never "0.0 MB"
        assert manifest["published_at"][:10] in text
    assert "0.0 MB" not in text and "Echoes." in text
    joined = "".join(parse(page).text)
    assert "default: float32 [None, 3]" in joined and "default: float32 [None, 2]" in joined
    hrefs = [a["href"] for t, a in parse(page).tags if t == "a"]
    assert {"1.json", "2.json", "1.tar.gz", "2.tar.gz", "index.json", "../../index.html"} <= set(hrefs)
    with open(os.path.join(root, "index.html"), encoding="utf-8") as f:
        front = f.read()
    assert "acme/echo/index.html" in [a.get("href") for t, a in parse(front).tags if t == "a"]
    assert "1 module." in " ".join(parse(front).text)


def test_base_url_makes_the_load_line_complete_without_javascript(tmp_path, fake_module):
    root = str(tmp_path / "reg")
    publish(fake_module, root, name="acme/echo", validate=fake_validate, base_url="https://models.example.org/hub/")
    publish(fake_module, root, name="acme/other", validate=fake_validate)  # the recorded base URL is kept
    with open(os.path.join(root, "index.json")) as f:
        assert json.load(f)["base_url"] == "https://models.example.org/hub"
    for page_path in ("index.html", "acme/echo/index.html", "acme/other/index.html"):
        with open(os.path.join(root, page_path), encoding="utf-8") as f:
            page = f.read()
        assert_inert(page)
        assert not any("data-path" in a for _, a in parse(page).tags)  # nothing left for the script to do
    assert 'hubkit.Module("https://models.example.org/hub/acme/other/1")' in "".join(parse(page).text)


@pytest.mark.parametrize("url", ["ftp://x.org", "https://user:pw@x.org", "https://x.org/?q=1", "https://x.org/#a",
                                 "javascript:alert(1)", "https://x.org/<script>", "https://x .org", ""])
def test_bad_base_urls_are_refused(tmp_path, fake_module, url):
    with pytest.raises(RegistryError, match="Base URL"):
        publish(fake_module, str(tmp_path / "reg"), name="acme/echo", validate=fake_validate, base_url=url)
    assert not os.path.exists(tmp_path / "reg" / "acme" / "echo" / "1.tar.gz")


def test_a_hostile_recorded_base_url_is_ignored(tmp_path, fake_module):
    root = str(tmp_path / "reg")
    publish(fake_module, root, name="acme/echo", validate=fake_validate)
    with open(os.path.join(root, "index.json")) as f:
        index = json.load(f)
    index["base_url"] = '"><script>alert(1)</script>'
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f)
    rebuild_indexes(root)
    with open(os.path.join(root, "index.html"), encoding="utf-8") as f:
        assert "alert" not in f.read()


def test_nginx_config_sends_the_pages_policy():
    with open(os.path.join(REPO, "registry", "nginx.conf"), encoding="utf-8") as f:
        config = f.read()
    assert f'add_header Content-Security-Policy "{content_security_policy()}; frame-ancestors \'none\'" always;' in config
    assert 'add_header X-Content-Type-Options "nosniff" always;' in config


def test_development_server_sends_the_pages_policy(registry_server):
    for path in ("/", "/index.html", "/acme/echo/index.html"):
        with urllib.request.urlopen(registry_server.url + path, timeout=5) as response:
            assert response.headers["Content-Security-Policy"].startswith(content_security_policy())
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert b"acme/echo" in response.read()


def test_development_server_fills_in_its_own_url(tmp_path, fake_module, server_factory):
    root = str(tmp_path / "reg")
    publish(fake_module, root, name="acme/echo", validate=fake_validate)
    server = server_factory(root)
    for path in ("/", "/acme/echo/index.html"):
        with urllib.request.urlopen(server.url + path, timeout=5) as response:
            page = response.read().decode("utf-8")
            assert int(response.headers["Content-Length"]) == len(page.encode("utf-8"))
        assert f'hubkit.Module(&quot;{server.url}/acme/echo/1&quot;)' in page, page
        assert_inert(page)
    request = urllib.request.Request(server.url + "/", headers={"Host": '"><script>x</script>'})
    with urllib.request.urlopen(request, timeout=5) as response:
        page = response.read().decode("utf-8")
    assert "<script>x" not in page and server.url in page  # a hostile Host header is not echoed
