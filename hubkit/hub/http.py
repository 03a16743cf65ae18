"""HTTP for the hub: small JSON documents and streamed, hashed, resumable archive downloads.

``requests`` is imported lazily so ``import hubkit`` stays fast and a cache hit never loads it.
Every request has connect/read timeouts; connection errors, timeouts, 408, 429 and 5xx are retried with
exponential backoff (honouring ``Retry-After``); proxies come from the environment (``requests`` default).
A refused connection (nobody listens at that host and port) is not retried: it fails at once.

The server is untrusted: every body is bounded (a document by ``_MAX_DOCUMENT_BYTES``, an archive by the
size its manifest declares, its ``Content-Length`` and ``HubConfig.max_download_bytes``), a body that does
not start like an archive stops at its first bytes, and a follower (the background extraction) that finds
the archive bad stops the download at once. Credentials in a URL are never printed.

A download is resumable across processes: the validators the server sent (a strong ``ETag`` or
``Last-Modified``) are kept next to the partial file, and the next attempt asks for the rest with
``Range`` and ``If-Range``; a server that cannot resume, or whose content changed, answers with the
whole body, and the download starts over.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from hubkit.errors import DownloadError, FormatError, IntegrityError, ResolveError
from hubkit.format.bounded_io import parse_json, read_json_file
from hubkit.hub.config import HubConfig
from hubkit.hub.handles import redact_url

if TYPE_CHECKING:
    from _hashlib import HASH

__all__ = ["GZIP_MAGIC", "DownloadFollower", "DownloadResult", "HttpClient"]

_log = logging.getLogger("hubkit.hub")

GZIP_MAGIC = b"\x1f\x8b"
_RETRY_STATUS = frozenset({408, 429})
_MAX_DOCUMENT_BYTES = 64 << 20
_MIN_READ = 64 << 10  # first (and smallest) piece of a download body
_FAST_READ_SECONDS = 0.05  # a full piece read faster than this doubles the next one (up to chunk_size)
_SLOW_READ_SECONDS = 0.5  # a piece taking longer than this halves the next one
_TAR_BLOCK = 512
_MAX_INFO_BYTES = 4096
_STRONG_ETAG = re.compile(r'"[\x21\x23-\x7e]{0,200}"')  # weak ETags (W/"...") cannot validate a range
_HTTP_DATE = re.compile(r"[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT")


def _failure(message: str) -> DownloadError:
    """A download failure that leaves the partial file worth resuming (a network problem, not bad content)."""
    error = DownloadError(message)
    error.resumable = True  # type: ignore[attr-defined]
    return error


def _refused(exc: BaseException) -> bool:
    """Whether a requests/urllib3 connection error was caused by a refused TCP connection."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack and len(seen) < 50:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, ConnectionRefusedError) or (isinstance(error, OSError) and error.errno == errno.ECONNREFUSED):
            return True
        links = [error.__cause__, error.__context__, getattr(error, "reason", None)]
        links += [arg for arg in getattr(error, "args", ()) if isinstance(arg, BaseException)]
        stack.extend(link for link in links if isinstance(link, BaseException))
    return False


def _host_port(url: str) -> str:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Retryable(Exception):
    """A failure worth another attempt; ``delay`` overrides the backoff (from ``Retry-After``)."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class DownloadFollower(Protocol):
    """What :meth:`HttpClient.download` tells about the file it writes (see ``follower`` there).

    A follower may also have ``take(offset, piece) -> bool``: it then receives each piece in memory and
    writes it to the file itself (in order, at ``offset``), unless it returns ``False``; and
    ``piece_buffer(size) -> bytearray``, which gives the buffer to receive the next piece into.
    """

    def advance(self, available: int) -> None:
        """The file now holds ``available`` bytes, all written to the OS."""

    def restart(self) -> None:
        """The download is about to truncate the file and start over from byte 0."""


class _Transfer(TypedDict):
    """What a download wrote so far, kept across its retries."""

    received: int
    hasher: HASH  # sha256 of the bytes received
    validator: str | None  # the server's strong ETag or Last-Modified, sent as If-Range when resuming
    head: bytes  # the first bytes of the body (up to one tar block), to check it is an archive


class DownloadResult:
    """What a finished download produced: the byte count, the hex sha256 of the bytes, and where it resumed.

    Attributes:
        size: Bytes in the file.
        sha256: Hex sha256 of the file.
        resumed_from: Bytes that were already on disk from an earlier, interrupted download (0 if none).
        file_id: ``(st_dev, st_ino)`` of the file written: whoever moves it on can check it is still that
            file (its directory may be writable by others).
    """

    __slots__ = ("file_id", "resumed_from", "sha256", "size")

    def __init__(self, size: int, sha256: str, resumed_from: int = 0, file_id: tuple[int, int] | None = None) -> None:
        self.size = size
        self.sha256 = sha256
        self.resumed_from = resumed_from
        self.file_id = file_id


def _refuse_downgrade(response: Any, *args: Any, **kwargs: Any) -> Any:
    """A ``requests`` response hook: refuses a redirect from HTTPS to plain HTTP at any hop of the chain.

    Checking only the final URL let ``https -> http://mitm -> https://evil`` through.
    """
    import urllib.parse

    source = str(response.url)
    if response.is_redirect and source.lower().startswith("https://"):
        target = urllib.parse.urljoin(source, str(response.headers.get("location", "")))
        if not target.lower().startswith("https://"):
            response.close()
            raise DownloadError(f"{redact_url(source)!r} redirected to plain HTTP ({redact_url(target)!r}); "
                                "refusing to downgrade from HTTPS.")
    return response


def _user_agent() -> str:
    from hubkit._version import __version__

    return f"hubkit/{__version__}"


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,10}", value):  # ASCII only: str.isdigit() accepts '²', which float() refuses
        return float(value)
    import email.utils  # lazy: only for the rare HTTP-date form of Retry-After

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _looks_like_html(content_type: str, head: bytes) -> bool:
    start = head.lstrip()[:15].lower()
    return "html" in content_type.lower() or start.startswith((b"<!doctype", b"<html"))


class HttpClient:
    """A ``requests`` session with hubkit's timeouts, retries, User-Agent and offline switch.

    Args:
        config: Hub settings (timeouts, retries, backoff, progress, offline).
    """

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self._session: Any = None
        self.sleep: Callable[[float], None] = time.sleep

    def _get_session(self) -> Any:
        if self.config.offline:
            raise ResolveError("HUBKIT_OFFLINE is set, so hubkit makes no network request.")
        if self._session is None:
            import requests  # lazy: a cache hit never pays for it

            session = requests.Session()
            session.headers["User-Agent"] = _user_agent()
            session.headers["Accept-Encoding"] = "identity"
            session.max_redirects = 10
            session.hooks["response"].append(_refuse_downgrade)  # every hop, before the next is requested
            _watch_response_headers(session)
            self._session = session
        return self._session

    def close(self) -> None:
        """Closes the underlying session, if one was opened."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def _with_retries(self, url: str, attempt: Callable[[], Any]) -> Any:
        """Runs ``attempt`` until it succeeds, retrying ``_Retryable`` failures with exponential backoff."""
        last: _Retryable | None = None
        for number in range(self.config.retries + 1):
            if number:
                delay = min(self.config.backoff * 2 ** (number - 1), self.config.backoff_max)
                if last is not None and last.delay is not None:
                    delay = min(max(delay, last.delay), self.config.backoff_max)
                _log.info("Retrying %s in %.2f s after: %s", redact_url(url), delay, last)
                self.sleep(delay)
            try:
                return attempt()
            except _Retryable as exc:
                last = exc
        raise _failure(f"Failed to fetch {redact_url(url)!r} after {self.config.retries + 1} attempts: {last}")

    def _request(self, url: str, headers: dict[str, str] | None = None, deadline: _Deadline | None = None) -> Any:
        """Sends one streamed GET and sorts the answer into success, retryable or final failure.

        Its response headers must arrive before ``deadline`` (by default ``config.request_deadline`` from now).
        """
        import requests

        session = self._get_session()
        own = deadline is None
        deadline = _Deadline(self.config.request_deadline) if deadline is None else deadline
        _current.deadline = deadline
        try:
            response = session.get(
                url,
                headers=headers or {},
                stream=True,
                timeout=(self.config.connect_timeout, self.config.read_timeout),
            )
        except requests.ConnectionError as exc:
            deadline.check(url)  # a connection shut down at the deadline is named as such
            if _refused(exc):  # nobody listens there: retrying would only make the user wait
                raise _failure(
                    f"Failed to fetch {redact_url(url)!r}: could not connect to {_host_port(url)} (connection refused)."
                ) from None
            raise _Retryable(f"connection failed: {exc}") from None
        except requests.Timeout as exc:
            deadline.check(url)
            raise _Retryable(f"connection failed: {exc}") from None
        except (requests.RequestException, ValueError) as exc:  # e.g. an invalid URL
            deadline.check(url)
            raise DownloadError(f"Request for {redact_url(url)!r} failed: {type(exc).__name__}.") from None
        finally:
            _current.deadline = None
            if own:
                deadline.close()
        if deadline.fired:  # headers cut short at the deadline may still parse
            response.close()
            deadline.check(url)
        status = response.status_code
        if url.lower().startswith("https://") and str(getattr(response, "url", url)).lower().startswith("http://"):
            response.close()
            raise DownloadError(
                f"{redact_url(url)!r} redirected to plain HTTP ({redact_url(str(response.url))!r}); refusing to "
                "downgrade from HTTPS."
            )
        if status in (200, 206):
            return response
        response.close()
        if status in _RETRY_STATUS or 500 <= status < 600:
            raise _Retryable(f"HTTP {status}", _retry_after_seconds(response.headers.get("Retry-After")))
        if status == 404:
            raise DownloadError(f"{redact_url(url)!r} does not exist (HTTP 404): no such module or version on that server.")
        if status == 416:
            return response  # handled by the resumable download
        reason = "".join(c for c in str(response.reason or "")[:100] if c.isprintable())  # server text: no escapes
        raise DownloadError(f"Server refused {redact_url(url)!r} with HTTP {status} {reason}".rstrip() + ".")

    def get_json(self, url: str) -> Any:
        """Fetches and parses a small JSON document (a manifest or an index).

        Args:
            url: The document URL.

        Returns:
            The parsed JSON value.

        Raises:
            DownloadError: HTTP failure after retries, 404, or a body that is not JSON (e.g. an HTML page).
            ResolveError: Offline mode is on.
        """

        def attempt() -> Any:
            import requests
            import urllib3

            deadline = _Deadline(self.config.request_deadline)  # headers and body: a document is small
            try:
                response = self._request(url, deadline=deadline)
                deadline.watch(_response_socket(response))
                shown = redact_url(url)
                try:
                    # Undecoded, then decoded here with a bound: a server may compress the body although hubkit
                    # asks for identity, and urllib3 before 2.6 inflated a whole read at once (a gzip bomb).
                    body = response.raw.read(_MAX_DOCUMENT_BYTES + 1, decode_content=False)
                    deadline.check(url)  # a read cut short at the deadline may end without an error
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                    deadline.check(url)
                    raise _Retryable(f"reading the response failed: {exc}") from None
                finally:
                    response.close()
            finally:
                deadline.close()
            body = _decoded(body, str(response.headers.get("Content-Encoding", "")), shown)
            if len(body) > _MAX_DOCUMENT_BYTES:
                raise DownloadError(f"{shown!r} does not serve a hubkit registry document: it is larger than "
                                    f"{_MAX_DOCUMENT_BYTES} bytes.")
            if _looks_like_html(response.headers.get("Content-Type", ""), body[:64]):
                raise DownloadError(f"{shown!r} does not serve a hubkit registry document (got an HTML page or other content).")
            try:
                return parse_json(body, shown)
            except FormatError as exc:
                raise DownloadError(f"{shown!r} does not serve a hubkit registry document: its body is not JSON ({exc})") from None

        return self._with_retries(url, attempt)

    def download(
        self,
        url: str,
        destination: str,
        expected_size: int | None = None,
        on_progress: Callable[[int], None] | None = None,
        follower: DownloadFollower | None = None,
        info_path: str | None = None,
    ) -> DownloadResult:
        """Streams ``url`` into the file ``destination`` while hashing it, resuming with ``Range`` on failures.

        Memory stays flat: the body is received into one reusable buffer of up to ``chunk_size`` bytes,
        then hashed and written to the file from there; or, with a follower that takes pieces, into a
        buffer per piece that the follower writes to the file (a bounded number wait for it; the
        follower's ``piece_buffer`` gives the buffers, else each is new).

        Args:
            url: The archive URL.
            destination: A private temp file path. It is created, or continued when ``info_path`` holds the
                validators of an interrupted download of this very URL (else it is truncated).
            expected_size: Byte count to expect; a larger ``Content-Length``, or more bytes than this, stop
                the download at once.
            on_progress: Called with the number of new bytes after each chunk.
            follower: Told how many bytes the file holds after each write (``advance``) and before the
                download starts over from byte 0 (``restart``): e.g. a
                :class:`~hubkit.hub.extract.BackgroundExtraction` reading the file as it grows. When its
                ``advance`` raises (the archive is bad), the download stops with that error. A follower
                with ``use_descriptor(fd)`` is given the file's descriptor first, to read the very file
                written rather than whatever a path names later. A follower with ``take(offset, piece)``
                that returns ``True`` owns that piece (a buffer never reused here): it writes it to the
                file at ``offset`` itself, before its own ``finish`` returns; it may block while earlier
                pieces wait, and raises (stopping the download) when the archive is bad. On a network
                failure the pieces it took are on disk once it is closed (then the download resumes).
            info_path: Where to keep the server's validators (``ETag``/``Last-Modified``) so that another
                process can resume the download; ``None`` keeps them in memory only.

        Returns:
            The size and sha256 of what was downloaded, and how many bytes were resumed from disk.

        Raises:
            DownloadError: HTTP failure after retries, a refused connection, 404, a response that is not a
                ``.tar.gz``/``.tar`` archive, or more than ``HubConfig.max_download_bytes``.
            IntegrityError: The server sent (or announced) more bytes than ``expected_size``.
        """
        import http.client  # lazy, like requests (which imports it anyway)

        shown = redact_url(url)
        limit = self.config.max_download_bytes if expected_size is None else min(expected_size, self.config.max_download_bytes)
        max_read = max(self.config.chunk_size, _MIN_READ)
        take = getattr(follower, "take", None)
        new_buffer = getattr(follower, "piece_buffer", bytearray)  # a buffer that is taken is never written again
        view = memoryview(bytearray(max_read if take is None else 0))  # the reusable buffer, unless pieces are taken
        fd = _open_download_file(destination)
        opened = os.fstat(fd)
        file_id = (opened.st_dev, opened.st_ino)
        if follower is not None and hasattr(follower, "use_descriptor"):
            follower.use_descriptor(fd)  # it reads this very file, whatever is renamed over the path meanwhile
        validator = _read_validator(info_path, url)
        state: _Transfer = {"received": 0, "hasher": hashlib.sha256(), "validator": validator, "head": b""}
        resumed_from = _continue_partial(fd, state, follower) if validator is not None else 0
        if not resumed_from:
            _truncate(fd)
            state["validator"] = None
            if info_path is not None:
                _remove_quietly(info_path)

        def restart() -> None:
            nonlocal resumed_from
            if follower is not None:
                follower.restart()
            _truncate(fd)
            state["received"] = 0
            state["hasher"] = hashlib.sha256()
            state["head"] = b""
            resumed_from = 0

        def attempt() -> DownloadResult:
            import requests
            import urllib3

            received = state["received"]
            headers = None
            if received:
                headers = {"Range": f"bytes={received}-"}
                if state["validator"] is not None:
                    headers["If-Range"] = state["validator"]
            response = self._request(url, headers)
            stall_watch = _StallWatch(response, self.config.read_timeout)
            try:
                if received and response.status_code == 416 and _complete_at(response, received):
                    return DownloadResult(received, state["hasher"].hexdigest(), resumed_from, file_id)
                if received and not self._accepts_resume(response, received):
                    _log.info("Server does not resume %s (or its content changed); starting over.", shown)
                    restart()
                    if response.status_code != 200:
                        raise _Retryable("range request refused")
                elif response.status_code == 416:
                    raise _Retryable("range request refused")
                if response.status_code == 200:
                    state["validator"] = _validator(response)
                    if info_path is not None:
                        _write_validator(info_path, url, state["validator"])
                expected_here = _content_length(response)
                if expected_here is not None and state["received"] + expected_here > limit:
                    raise self._too_large(shown, limit, expected_size, announced=state["received"] + expected_here)
                got_here = 0
                readinto = stall_watch.wrap(_body_readinto(response))
                hasher = state["hasher"]
                size, started = _MIN_READ, time.monotonic()
                while True:
                    # A follower that takes pieces writes them to the file itself (in the extraction thread,
                    # which then reads them from memory, not back from the file): each piece gets a buffer
                    # of its own, handed over for good, so none is overwritten while the follower holds it.
                    piece = memoryview(new_buffer(max_read)) if take is not None else view
                    count = readinto(piece[:size])
                    if not count:
                        break
                    # Fill large pieces on a fast link (fewer, bigger reads and writes), small ones on a slow
                    # link (so progress, the lock's liveness and the resumable file keep up).
                    now = time.monotonic()
                    if count == size and now - started < _FAST_READ_SECONDS:
                        size = min(size * 2, max_read)
                    elif now - started > _SLOW_READ_SECONDS:
                        size = max(size // 2, _MIN_READ)
                    started = now
                    chunk = piece[:count]
                    if len(state["head"]) < _TAR_BLOCK:
                        state["head"] += bytes(chunk[: _TAR_BLOCK - len(state["head"])])
                        self._check_archive_start(shown, response, state["head"], final=False)
                    if state["received"] + count > limit:
                        raise self._too_large(shown, limit, expected_size)
                    hasher.update(chunk)
                    offset = state["received"]
                    got_here += count
                    state["received"] += count
                    if take is None or not take(offset, chunk):
                        _write_all(fd, chunk, offset)
                        if follower is not None:
                            follower.advance(state["received"])
                    del piece, chunk  # a taken buffer is reused only once no view of it is left
                    if on_progress is not None:
                        on_progress(count)
                if expected_here is not None and got_here < expected_here:
                    raise _Retryable(f"connection closed after {state['received']} bytes")
                self._check_archive_start(shown, response, state["head"], final=True)
            except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
                raise _Retryable(f"connection broke after {state['received']} bytes: {type(exc).__name__}") from None
            finally:
                stall_watch.close()
                response.close()
            return DownloadResult(state["received"], state["hasher"].hexdigest(), resumed_from, file_id)

        try:
            return self._with_retries(url, attempt)
        finally:
            os.close(fd)

    @staticmethod
    def _too_large(shown: str, limit: int, expected_size: int | None, announced: int | None = None) -> DownloadError:
        what = f" (the server announces {announced} bytes)" if announced is not None else ""
        if expected_size is not None and limit == expected_size:
            return IntegrityError(f"Download of {shown!r} is larger than the {expected_size} bytes its manifest declares{what}.")
        return DownloadError(
            f"Download of {shown!r} is larger than the limit of {limit} bytes{what}; raise HUBKIT_MAX_DOWNLOAD_BYTES "
            "if the archive is genuine."
        )

    @staticmethod
    def _accepts_resume(response: Any, received: int) -> bool:
        if response.status_code != 206:
            return False
        content_range = response.headers.get("Content-Range", "")
        return content_range.startswith(f"bytes {received}-")

    @staticmethod
    def _check_archive_start(shown: str, response: Any, head: bytes, final: bool) -> None:
        """Refuses a body that does not start like a ``.tar.gz`` or ``.tar`` (as soon as its first bytes show it)."""
        from hubkit.hub.extract import archive_format

        html = _looks_like_html(response.headers.get("Content-Type", ""), head[:64])
        if not html:
            if head.startswith(GZIP_MAGIC) or (len(head) < 2 and not final):
                return
            if len(head) < _TAR_BLOCK and not final:
                return  # not gzip: wait for a whole tar header block
            if archive_format(head) is not None:
                return
        raise DownloadError(
            f"{shown!r} does not serve a hubkit module: expected a .tar.gz archive but got "
            f"{'an HTML page' if html else 'other content'}."
        )


def _decoded(body: bytes, encoding: str, shown: str) -> bytes:
    """``body`` decoded from its ``Content-Encoding`` (gzip or deflate), at most one byte over the document bound."""
    import zlib

    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise DownloadError(f"{shown!r} sent its body with Content-Encoding {encoding[:40]!r}, which hubkit cannot decode.")
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS)
    try:
        return decompressor.decompress(body, _MAX_DOCUMENT_BYTES + 1)
    except zlib.error as exc:
        raise DownloadError(f"{shown!r} sent a body that is not valid {encoding} ({exc}).") from None


def _complete_at(response: Any, received: int) -> bool:
    """Whether a 416 answer says the file has exactly ``received`` bytes (nothing is left to fetch)."""
    return str(response.headers.get("Content-Range", "")).strip() == f"bytes */{received}"


def _validator(response: Any) -> str | None:
    """The response's strong ``ETag``, else its ``Last-Modified`` (what ``If-Range`` may carry), else ``None``."""
    etag = str(response.headers.get("ETag", "")).strip()
    if _STRONG_ETAG.fullmatch(etag):
        return etag
    modified = str(response.headers.get("Last-Modified", "")).strip()
    return modified if _HTTP_DATE.fullmatch(modified) else None


def _read_validator(info_path: str | None, url: str) -> str | None:
    """The validator kept next to a partial download of ``url`` (untrusted: checked against strict patterns)."""
    if info_path is None:
        return None
    info = read_json_file(info_path, _MAX_INFO_BYTES, default=None)
    if not isinstance(info, dict) or info.get("url") != url:
        return None
    validator = info.get("validator")
    if isinstance(validator, str) and (_STRONG_ETAG.fullmatch(validator) or _HTTP_DATE.fullmatch(validator)):
        return validator
    return None


def _write_validator(info_path: str, url: str, validator: str | None) -> None:
    _remove_quietly(info_path)
    if validator is None:
        return
    import json

    # A new private file, never through a link or into a file planted at the path (a shared cache directory
    # is writable by others): O_EXCL fails on anything that is there, and the record is then not kept.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(info_path, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"url": url, "validator": validator}, f)
    except OSError as exc:
        _log.info("Could not record the validator of %s (%s); the download cannot be resumed.", redact_url(url), exc)


def _truncate(fd: int) -> None:
    """Empties the download file, unless it is empty already.

    Truncating even an empty file to 0 makes ext4 (``auto_da_alloc``) write the whole file back when it is
    closed, as if an old file had been replaced: ~80 ms of waiting on the disk per 200 MB download.
    """
    with contextlib.suppress(OSError):  # not a regular file (e.g. /dev/null): nothing to truncate
        if os.fstat(fd).st_size:
            os.ftruncate(fd, 0)


def _remove_quietly(path: str) -> None:
    """Unlinks ``path`` if it is a regular file or a symbolic link (never a device, FIFO or directory)."""
    import stat

    with contextlib.suppress(OSError):
        mode = os.lstat(path).st_mode
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            os.unlink(path)


def _continue_partial(fd: int, state: _Transfer, follower: DownloadFollower | None) -> int:
    """Rehashes the bytes an interrupted download left in ``fd``; returns their count (0: start over)."""
    import stat

    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return 0
    hasher, offset = state["hasher"], 0
    while offset < info.st_size:
        chunk = os.pread(fd, min(1 << 20, info.st_size - offset), offset)
        if not chunk:
            break
        if offset < _TAR_BLOCK:
            state["head"] += chunk[: _TAR_BLOCK - offset]
        hasher.update(chunk)
        offset += len(chunk)
    state["received"] = offset
    if follower is not None:
        follower.advance(offset)
    return offset


def _open_download_file(path: str) -> int:
    """Opens the download file ``path`` read-write: this user's own earlier partial file, else a new one.

    A partial file that another user of a shared cache could have written (owned by someone else, or
    writable by others), a link, or anything else at ``path`` is removed and never resumed from: a pinned
    download's final sha256 would catch foreign bytes only after the whole download, and an unpinned
    one's nothing would.
    """
    import stat

    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        pass
    except OSError:  # a link, or a file this user may not write: not a download to continue
        _remove_quietly(path)
    else:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and _private_to_this_user(info):
            os.set_blocking(fd, True)
            return fd
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):  # a device or FIFO is never written to, and never removed
            raise DownloadError(f"Cannot use {path!r} as the download file: it is not a regular file.")
        _log.info("Not resuming %r: it is not this user's private file; starting over.", path)
        _remove_quietly(path)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise DownloadError(f"Cannot create the download file {path!r}: {exc.strerror or exc}.") from None
    os.set_blocking(fd, True)
    return fd


def _private_to_this_user(info: os.stat_result) -> bool:
    """Whether a file is owned by this process's user and writable by nobody else (as a download creates it)."""
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None:  # pragma: no cover - not POSIX
        return True
    return info.st_uid == geteuid() and not info.st_mode & 0o022


def _content_length(response: Any) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


class _StallWatch:
    """Ends a body read that trickles: one piece (64 KiB or more) must arrive within ``seconds``.

    The socket's read timeout only bounds each ``recv``: a server sending a byte every few seconds would
    keep one piece's read, and the download, going for ever. A watchdog thread (waking a few times per
    ``seconds``) shuts the connection down when a read has run longer than ``seconds``; the read then
    fails and the download retries (resuming) like after any broken connection. The slowest link that
    always passes is 64 KiB per ``seconds`` (about 1 KB/s with the default 60 s): after a slow piece the
    next ones are 64 KiB.
    """

    def __init__(self, response: Any, seconds: float) -> None:
        self._socket = _response_socket(response)
        self._seconds = seconds
        self._deadline: float | None = None
        self.fired = False
        import threading

        self._done = threading.Event()

    def wrap(self, readinto: Callable[[memoryview], int]) -> Callable[[memoryview], int]:
        if self._socket is None:  # e.g. a mocked response: nothing to watch
            return readinto
        import socket
        import threading

        sock, done = self._socket, self._done

        def watch() -> None:
            while not done.wait(min(1.0, self._seconds / 4)):
                deadline = self._deadline
                if deadline is not None and time.monotonic() > deadline:
                    self.fired = True
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    return

        threading.Thread(target=watch, name="hubkit-stall-watch", daemon=True).start()

        def watched(view: memoryview) -> int:
            self._deadline = time.monotonic() + self._seconds
            try:
                count = readinto(view)
            except Exception:
                if not self.fired:
                    raise
                count = 0  # the shutdown made the read fail (a reset) rather than return short: the same stall
            finally:
                self._deadline = None
            if self.fired:
                raise _Retryable(f"the server sent less than {len(view)} bytes in {self._seconds:g} s")
            return count

        return watched

    def close(self) -> None:
        """Stops the watchdog (call when the body is read or abandoned)."""
        self._done.set()


_current = threading.local()  # the _Deadline of the request this thread is sending, if any


class _Deadline:
    """Shuts a request's connection down once ``seconds`` have passed since it was made.

    The socket's read timeout bounds each ``recv`` only: a server sending a byte every half second kept a
    registry document's request, or any request's headers, going for ever. The socket to shut down is the
    one whose response headers are read (set by the connection classes of :func:`_watch_response_headers`)
    or whose body is read (:meth:`watch`). A watchdog thread is started only when a socket is watched.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[Any] = []
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, sock: Any) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self._thread is None and not self._done.is_set():
                self._thread = threading.Thread(target=self._run, name="hubkit-deadline", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(max(0.0, min(0.25, self.at - time.monotonic()))):
            if time.monotonic() >= self.at:
                with self._lock:
                    self.fired = True
                    for sock in self._sockets:
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                return

    def check(self, url: str) -> None:
        """Raises the deadline's error if it has passed (call when a read failed or ended)."""
        if self.fired or time.monotonic() >= self.at:
            self.fired = True
            raise DownloadError(f"{redact_url(url)!r} did not answer within {self.seconds:g} s "
                                "(HUBKIT_REQUEST_DEADLINE): the server sends too slowly.")

    def close(self) -> None:
        self._done.set()


def _response_socket(response: Any) -> Any:
    """The socket a response's body is read from, or ``None`` (e.g. a mocked response).

    A body read until the server closes has left its connection (``http.client`` hands the socket over to
    the response and sets the connection's ``sock`` to ``None``): it is then found in the response's file.
    """
    connection = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        buffered = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(buffered, "raw", None), "_sock", None)
    return sock


def _watch_response_headers(session: Any) -> None:
    """Makes the session's HTTP(S) connections hand their socket to the current :class:`_Deadline` while
    they read response headers (``getresponse``), whether the connection is new or reused."""
    import urllib3.connection
    import urllib3.connectionpool
    from requests.adapters import HTTPAdapter

    def watched(base: type) -> type:
        class Watched(base):  # type: ignore[valid-type,misc]
            def getresponse(self, *args: Any, **kwargs: Any) -> Any:
                deadline = getattr(_current, "deadline", None)
                if deadline is not None:
                    deadline.watch(self.sock)
                return super().getresponse(*args, **kwargs)

        return Watched

    pools = {}
    for scheme, pool in (("http", urllib3.connectionpool.HTTPConnectionPool),
                         ("https", urllib3.connectionpool.HTTPSConnectionPool)):
        pools[scheme] = type(f"Watched{pool.__name__}", (pool,), {"ConnectionCls": watched(pool.ConnectionCls)})
    for adapter in session.adapters.values():
        if isinstance(adapter, HTTPAdapter):
            adapter.poolmanager.pool_classes_by_scheme = pools


def _body_readinto(response: Any) -> Callable[[memoryview], int]:
    """Returns ``readinto(view) -> count`` reading the raw (undecoded) body; 0 at its end.

    Through urllib3 a body arrives as new ``bytes`` of ~100 KB (one ``recv`` each); the underlying
    ``http.client`` response fills a reusable buffer with no extra copy and handles ``Content-Length``
    and chunked encoding itself (an early close raises ``IncompleteRead``). That one is used when it is
    there and nothing was read through urllib3 yet; otherwise (e.g. a mocked response) urllib3 is.
    """
    import http.client

    raw = response.raw
    fp = getattr(raw, "_fp", None)
    if isinstance(fp, http.client.HTTPResponse) and not getattr(raw, "_fp_bytes_read", 0):
        return fp.readinto
    read1 = getattr(raw, "read1", None)

    def readinto(view: memoryview) -> int:
        chunk = read1(len(view), decode_content=False) if read1 is not None else raw.read(len(view), decode_content=False)
        view[: len(chunk)] = chunk
        return len(chunk)

    return readinto


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    """Writes all of ``data`` at ``offset`` (``pwrite``: the position never depends on earlier short writes)."""
    while data:
        written = os.pwrite(fd, data, offset)
        data = data[written:]
        offset += written


def progress_bar(config: HubConfig, total: int | None, description: str) -> Any:
    """Returns a tqdm bar on stderr when progress is wanted, else ``None``.

    Args:
        config: ``config.progress`` forces the bar on or off; ``None`` means "when stderr is a terminal".
        total: Expected byte count, if known.
        description: Label shown left of the bar.
    """
    wanted = config.progress if config.progress is not None else sys.stderr.isatty()
    if not wanted:
        return None
    import tqdm  # lazy

    return tqdm.tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, desc=description, leave=False)
