"""A development server for a registry root: static files on 127.0.0.1, with Range requests.

``python -m http.server`` works too (hubkit restarts a download it cannot resume), but this one also
answers ``Range`` requests, sets the right ``Content-Type`` for ``.json`` and ``.tar.gz`` and marks
archives immutable, like the nginx config in ``registry/``. Like that config, it never serves hidden
files or directories (``.index.lock``, ``.git``) nor the ``*.tmp-*`` leftovers of an interrupted publish.
It is for development, not production.
"""

from __future__ import annotations

import html
import http.server
import io
import os
import re
import shutil
import urllib.parse
from typing import Any

from hubkit.format.bounded_io import open_regular_fd
from hubkit.hub.catalog import content_security_policy
from hubkit.hub.handles import TEMP_INFIX

__all__ = ["RegistryRequestHandler", "is_hidden_path", "make_server"]

_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]*)")  # ASCII digits; more than _MAX_RANGE_DIGITS of them: 416
_MAX_RANGE_DIGITS = 19  # int() of a 4,300-digit value raised ValueError in the handler (no answer at all)
_HOST = re.compile(r"(localhost|127\.0\.0\.1|\[::1\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?")
_PLACEHOLDER = b"&lt;registry URL&gt;"  # hubkit.hub.catalog's stand-in for an unrecorded base URL
_MAX_PAGE = 16 << 20


def is_hidden_path(url_path: str) -> bool:
    """Returns whether a request path names a hidden file or directory or a publish leftover (never served).

    >>> [is_hidden_path(p) for p in ("/acme/echo/1.json", "/.git/config", "/a/%2Eindex.lock", "/a/b/1.json.tmp-ab")]
    [False, True, True, True]
    """
    path = urllib.parse.unquote(url_path.split("?", 1)[0].split("#", 1)[0])
    return any(part.startswith(".") or TEMP_INFIX in part for part in path.split("/"))


class RegistryRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory read-only (GET/HEAD) with single-range support."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".json": "application/json",
        ".gz": "application/gzip",
        ".html": "text/html; charset=utf-8",
    }
    server_version = "hubkit-registry"

    def log_message(self, format: str, *args: Any) -> None:
        if getattr(self.server, "quiet", False):
            return
        super().log_message(format, *args)

    def send_head(self) -> Any:
        if is_hidden_path(self.path):
            self.send_error(404, "File not found")
            return None
        path = self.translate_path(self.path)
        if not self._inside_root(path):  # a link out of the root (a publisher may have planted one)
            self.send_error(404, "File not found")
            return None
        if os.path.isdir(path) and self.path.split("?", 1)[0].endswith("/"):
            path = os.path.join(path, "index.html")  # served below, with the catalog's headers
        if os.path.isdir(path) or not os.path.lexists(path):
            return super().send_head()  # a redirect to "dir/", or 404 (directories are never listed)
        try:  # a regular file only: a FIFO would block this thread, a device never end
            f: Any = os.fdopen(open_regular_fd(path, follow_links=False, error=OSError), "rb")
        except OSError:
            self.send_error(404, "File not found")
            return None
        size = os.fstat(f.fileno()).st_size
        if path.endswith(".html") and size <= _MAX_PAGE:
            f = self._with_own_url(f)
            size = len(f.getvalue())
        start, end = 0, size - 1
        match = _RANGE.fullmatch(self.headers.get("Range", ""))
        if match:
            huge = max(len(match[1]), len(match[2])) > _MAX_RANGE_DIGITS
            start = size if huge else int(match[1])
            end = min(int(match[2]), size - 1) if match[2] and not huge else size - 1
            if start >= size or start > end:
                f.close()
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Content-Type-Options", "nosniff")
        if path.endswith(".html"):  # the catalog shows untrusted manifest values: nothing may run but its own
            self.send_header("Content-Security-Policy", content_security_policy() + "; frame-ancestors 'none'")
            self.send_header("Referrer-Policy", "no-referrer")
        if path.endswith(".tar.gz"):
            self.send_header("Cache-Control", "public, max-age=31536000, immutable")
        else:
            self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        f.seek(start)
        self._remaining = end - start + 1
        return f

    def list_directory(self, path: Any) -> None:
        """Never lists a directory: only the registry's own pages and files are served (404 otherwise)."""
        self.send_error(404, "File not found")
        return None

    def _inside_root(self, path: str) -> bool:
        root = os.path.realpath(self.directory)
        return os.path.commonpath([root, os.path.realpath(path)]) == root

    def _with_own_url(self, f: Any) -> io.BytesIO:
        """A catalog page with its URL placeholder replaced by where this server is reached, so the load
        lines are complete without JavaScript (a published registry records it: ``publish --base-url``)."""
        with f:
            page = f.read(_MAX_PAGE + 1)
        host = self.headers.get("Host", "")
        if not _HOST.fullmatch(host):
            address: Any = self.server.server_address
            host = f"{address[0]}:{address[1]}"
        return io.BytesIO(page.replace(_PLACEHOLDER, html.escape(f"http://{host}").encode("ascii")))

    def copyfile(self, source: Any, outputfile: Any) -> None:
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            shutil.copyfileobj(source, outputfile)
            return
        while remaining > 0:
            chunk = source.read(min(remaining, 1 << 20))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)


def make_server(
    root: str,
    port: int = 0,
    host: str = "127.0.0.1",
    quiet: bool = False,
    handler_class: type[RegistryRequestHandler] = RegistryRequestHandler,
) -> http.server.ThreadingHTTPServer:
    """Returns a threading HTTP server for ``root`` bound to ``host:port`` (port 0: any free port).

    Args:
        root: The registry root directory.
        port: TCP port; 0 picks a free one (read it back from ``server.server_address``).
        host: Interface to bind; keep the default 127.0.0.1 for a development server.
        quiet: Do not log each request to stderr.
        handler_class: The request handler (a subclass adds behaviour, e.g. fault injection in tests).
    """

    def handler(*args: Any, **kwargs: Any) -> RegistryRequestHandler:
        return handler_class(*args, directory=root, **kwargs)

    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.quiet = quiet  # type: ignore[attr-defined]
    return server
