"""The static ``index.html`` catalog of a registry root: every module, version, description and signature.

The page template is ``catalog.html`` next to this file (``$count`` and ``$modules`` are filled in);
everything taken from manifests is HTML-escaped.
"""

from __future__ import annotations

import html
import os
import string
from typing import Any

__all__ = ["render_catalog"]

_TEMPLATE = os.path.join(os.path.dirname(__file__), "catalog.html")


def _format_shape(shape: Any) -> str:
    if shape is None:
        return "&lt;unknown&gt;"
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def _tensors(infos: dict[str, Any]) -> str:
    if not infos:
        return "<span class=muted>none</span>"
    return ", ".join(
        f"<code>{html.escape(k)}</code>: {html.escape(str(v.get('dtype')))} {_format_shape(v.get('shape'))}"
        for k, v in sorted(infos.items())
    )


def _signatures(manifest: dict[str, Any]) -> str:
    rows = []
    for variant in manifest.get("variants", []):
        tags = ", ".join(variant.get("tags", [])) or "default"
        for name, sig in sorted(variant.get("signatures", {}).items()):
            rows.append(
                f"<tr><td>{html.escape(tags)}</td><td><code>{html.escape(name)}</code></td>"
                f"<td>{_tensors(sig.get('inputs', {}))}</td><td>{_tensors(sig.get('outputs', {}))}</td></tr>"
            )
    if not rows:
        return ""
    head = "<tr><th>tags</th><th>signature</th><th>inputs</th><th>outputs</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _module_section(name: str, manifests: list[dict[str, Any]]) -> str:
    latest = manifests[-1]
    path = f"{name}/{latest['version']}"
    versions = ", ".join(
        f'<a href="{html.escape(name)}/{m["version"]}.tar.gz">{m["version"]}</a>'
        f' <span class=muted>({m.get("size", 0) / 1e6:.1f} MB)</span>'
        for m in reversed(manifests)
    )
    description = html.escape(latest.get("description") or "")
    return (
        f'<section id="{html.escape(name)}"><h2>{html.escape(name)}</h2>'
        f"<p>{description}</p>"
        f'<pre><code data-path="{html.escape(path)}">hubkit.Module(".../{html.escape(path)}")</code></pre>'
        f"<p>Versions: {versions}</p>"
        f"{_signatures(latest)}</section>"
    )


def render_catalog(manifests: dict[str, list[dict[str, Any]]]) -> str:
    """Renders the catalog page.

    >>> "acme/echo" in render_catalog({"acme/echo": [{"version": 1, "description": "d", "size": 10}]})
    True

    Args:
        manifests: Module name -> its manifests, oldest version first.

    Returns:
        The HTML document.
    """
    with open(_TEMPLATE, encoding="utf-8") as f:
        template = string.Template(f.read())
    sections = "\n".join(_module_section(name, manifests[name]) for name in sorted(manifests))
    count = len(manifests)
    return template.substitute(
        count=f"{count} module{'s' if count != 1 else ''}",
        modules=sections or "<p>No modules published yet.</p>",
    )
