"""The static HTML catalog of a registry root: ``index.html`` and one ``<publisher>/<name>/index.html`` per module.

The page template is ``catalog.html`` next to this file. Every value taken from a manifest is untrusted
(anyone who can publish, or write to the registry directory, controls it): it is HTML-escaped and only
ever rendered as text, never as markup, an attribute name, a URL scheme or script. The pages carry a
strict Content-Security-Policy (``default-src 'none'``; the page's own style and script are allowed by
their sha256 only), which a server should also send as a header (``registry/nginx.conf`` does). The pages
read fine without JavaScript; the one small script only fills in the registry's URL when the publisher did
not record it (``hubkit publish --base-url``).
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import html
import os
import re
import string
import urllib.parse
from collections.abc import Mapping
from typing import Any

from hubkit.hub.sizes import format_size

__all__ = ["content_security_policy", "render_catalog", "render_module_page"]

_TEMPLATE = os.path.join(os.path.dirname(__file__), "catalog.html")
_PLACEHOLDER_BASE = "<registry URL>"


@functools.lru_cache(maxsize=1)
def _template() -> str:
    with open(_TEMPLATE, encoding="utf-8") as f:
        return f.read()


def _inline_hash(tag: str) -> str:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", _template(), flags=re.S)
    if match is None:  # pragma: no cover  (the template ships with both)
        raise ValueError(f"catalog.html has no <{tag}> element")
    digest = hashlib.sha256(match[1].encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_security_policy() -> str:
    """The Content-Security-Policy of the catalog pages: nothing loads or runs but their own style and script.

    Servers send the same policy as a header (``registry/nginx.conf``; the development server does too).

    >>> content_security_policy().startswith("default-src 'none'; style-src 'sha256-")
    True
    """
    return (f"default-src 'none'; style-src {_inline_hash('style')}; script-src {_inline_hash('script')}; "
            "img-src 'none'; base-uri 'none'; form-action 'none'")


def _text(value: Any) -> str:
    """Any value as escaped text (quotes too, so it is safe inside attribute values as well)."""
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _href(*parts: Any) -> str:
    """A relative link from path parts (each percent-encoded, so no part can become a scheme or a new path)."""
    return _text("/".join(urllib.parse.quote(str(p), safe="") for p in parts))


def _shape(shape: Any) -> str:
    if not isinstance(shape, list):
        return "[unknown rank]"
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def _tensors(infos: Any) -> str:
    infos = _mapping(infos)
    if not infos:
        return "<span class=muted>none</span>"
    items = []
    for key in sorted(infos, key=str):
        info = _mapping(infos[key])
        items.append(f"<code>{_text(key)}</code>: {_text(info.get('dtype', '?'))} {_text(_shape(info.get('shape')))}")
    return "<br>".join(items)


def _signatures(manifest: Mapping[str, Any]) -> str:
    rows = []
    for variant in _list(manifest.get("variants")):
        variant = _mapping(variant)
        tags = ", ".join(str(t) for t in _list(variant.get("tags"))) or "default"
        signatures = _mapping(variant.get("signatures"))
        for name in sorted(signatures, key=str):
            sig = _mapping(signatures[name])
            rows.append(f"<tr><td>{_text(tags)}</td><td><code>{_text(name)}</code></td>"
                        f"<td>{_tensors(sig.get('inputs'))}</td><td>{_tensors(sig.get('outputs'))}</td></tr>")
    if not rows:
        return "<p class=muted>No signatures recorded.</p>"
    head = "<tr><th>tags</th><th>signature</th><th>inputs</th><th>outputs</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _signature_names(manifest: Mapping[str, Any]) -> str:
    names = sorted({str(name) for variant in _list(manifest.get("variants"))
                    for name in _mapping(_mapping(variant).get("signatures"))})
    return ", ".join(f"<code>{_text(n)}</code>" for n in names) or "<span class=muted>none recorded</span>"


def _published(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return "?"
    try:  # never raises on any string: a manifest's date is untrusted (a year-1 time with a zone overflowed)
        moment = datetime.datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.timezone.utc)
            return moment.strftime("%Y-%m-%d %H:%M UTC")
        return moment.strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, TypeError):
        return _text(value)


def _load_line(name: str, version: Any, base_url: str | None) -> str:
    path = f"{name}/{version}"
    if base_url:
        return f"<pre><code>hubkit.Module(&quot;{_text(base_url.rstrip('/') + '/' + path)}&quot;)</code></pre>"
    return (f'<pre><code data-path="{_text(path)}">hubkit.Module(&quot;{_text(_PLACEHOLDER_BASE)}/{_text(path)}'
            "&quot;)</code></pre>")


def _page(title: str, body: str, root: str) -> str:
    return string.Template(_template()).substitute(
        csp=_text(content_security_policy()), title=_text(title), root=_text(root), body=body)


def render_catalog(manifests: dict[str, list[dict[str, Any]]], base_url: str | None = None) -> str:
    """Renders the registry's front page: every module, its description, latest version and load line.

    >>> page = render_catalog({"acme/echo": [{"version": 1, "description": "<b>", "size": 1843}]})
    >>> "acme/echo" in page and "&lt;b&gt;" in page and "1.8 KB" in page
    True

    Args:
        manifests: Module name -> its manifests, oldest version first.
        base_url: The registry's public URL, if the publisher recorded it (shown in the load lines).

    Returns:
        The HTML document.
    """
    sections = []
    for name in sorted(manifests):
        versions = manifests[name]
        if not versions:
            continue
        latest = versions[-1]
        description = latest.get("description") or ""
        sections.append(
            f'<section id="{_text(name)}"><h2><a href="{_href(*name.split("/"), "index.html")}">{_text(name)}</a></h2>'
            f"<p>{_text(description)}</p>"
            f"{_load_line(name, latest.get('version'), base_url)}"
            f"<p>Signatures: {_signature_names(latest)}</p>"
            f"<p class=muted>Latest version {_text(latest.get('version'))} of {len(versions)} "
            f"({format_size(latest.get('size'))}, published {_published(latest.get('published_at'))}) &middot; "
            f'<a href="{_href(*name.split("/"), "index.html")}">signatures, versions and checksums</a></p>'
            "</section>")
    count = len(sections)
    body = (f"<h1>hubkit registry</h1><p>{count} module{'' if count == 1 else 's'}.</p>"
            + ("\n".join(sections) or "<p>No modules published yet.</p>"))
    return _page("hubkit registry", body, "")


def render_module_page(name: str, manifests: list[dict[str, Any]], base_url: str | None = None) -> str:
    """Renders ``<publisher>/<name>/index.html``: versions with size, sha256, date and links, and the signatures.

    >>> page = render_module_page("acme/echo", [{"version": 2, "size": 10, "sha256": "ab" * 32}])
    >>> "acme/echo" in page and "2.json" in page and "10 B" in page
    True

    Args:
        name: ``publisher/name``.
        manifests: The module's manifests, oldest version first (not empty).
        base_url: The registry's public URL, if recorded.
    """
    latest = manifests[-1]
    rows = []
    for manifest in reversed(manifests):
        version = manifest.get("version")
        rows.append(
            f"<tr><td>{_text(version)}</td><td>{_published(manifest.get('published_at'))}</td>"
            f"<td>{format_size(manifest.get('size'))}</td><td class=hash>{_text(manifest.get('sha256', '?'))}</td>"
            f'<td><a href="{_href(f"{version}.tar.gz")}">archive</a> &middot; '
            f'<a href="{_href(f"{version}.json")}">manifest</a></td></tr>')
    body = (
        f"<h1>{_text(name)}</h1><p>{_text(latest.get('description') or '')}</p>"
        f"<h2>Load the latest version</h2>{_load_line(name, latest.get('version'), base_url)}"
        f"<h2>Signatures of version {_text(latest.get('version'))}</h2>{_signatures(latest)}"
        "<h2>Versions</h2><table><tr><th>version</th><th>published</th><th>size</th><th>sha256</th>"
        f"<th>files</th></tr>{''.join(rows)}</table>"
        f'<p class=muted>Versions as JSON: <a href="index.json">index.json</a>.</p>'
    )
    return _page(f"{name} - hubkit registry", body, "../../")
