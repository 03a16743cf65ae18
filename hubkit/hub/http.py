"""HTTP for the hub: small JSON documents and streamed, hashed, resumable archive downloads.

``requests`` is imported lazily so ``import hubkit`` stays fast and a cache hit never loads it.
Every request has connect/read timeouts; connection errors, timeouts, 408, 429 and 5xx are retried with
exponential backoff (honouring ``Retry-After``); proxies come from the environment (``requests`` default).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from hubkit.errors import DownloadError, IntegrityError, ResolveError
from hubkit.hub.config import HubConfig

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


class _Retryable(Exception):
    """A failure worth another attempt; ``delay`` overrides the backoff (from ``Retry-After``)."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class DownloadFollower(Protocol):
    """What :meth:`HttpClient.download` tells about the file it writes (see ``follower`` there)."""

    def advance(self, available: int) -> None:
        """The file now holds ``available`` bytes, all written to the OS."""

    def restart(self) -> None:
        """The download is about to truncate the file and start over from byte 0."""


class _Transfer(TypedDict):
    """What a download wrote so far, kept across its retries."""

    received: int
    hasher: HASH  # sha256 of the bytes received


class DownloadResult:
    """What a finished download produced: the byte count and the hex sha256 of the bytes."""

    __slots__ = ("sha256", "size")

    def __init__(self, size: int, sha256: str) -> None:
        self.size = size
        self.sha256 = sha256


def _user_agent() -> str:
    from hubkit._version import __version__

    return f"hubkit/{__version__}"


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # lazy: only for the rare HTTP-date form of Retry-After

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
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
                _log.info("Retrying %s in %.2f s after: %s", url, delay, last)
                self.sleep(delay)
            try:
                return attempt()
            except _Retryable as exc:
                last = exc
        raise DownloadError(f"Failed to fetch {url!r} after {self.config.retries + 1} attempts: {last}")

    def _request(self, url: str, headers: dict[str, str] | None = None) -> Any:
        """Sends one streamed GET and sorts the answer into success, retryable or final failure."""
        import requests

        session = self._get_session()
        try:
            response = session.get(
                url,
                headers=headers or {},
                stream=True,
                timeout=(self.config.connect_timeout, self.config.read_timeout),
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(f"connection failed: {exc}") from None
        except requests.RequestException as exc:
            raise DownloadError(f"Request for {url!r} failed: {exc}") from None
        status = response.status_code
        if status in (200, 206):
            return response
        response.close()
        if status in _RETRY_STATUS or 500 <= status < 600:
            raise _Retryable(f"HTTP {status}", _retry_after_seconds(response.headers.get("Retry-After")))
        if status == 404:
            raise DownloadError(f"{url!r} does not exist (HTTP 404): no such module or version on that server.")
        if status == 416:
            return response  # handled by the resumable download
        raise DownloadError(f"Server refused {url!r} with HTTP {status} {response.reason or ''}".rstrip() + ".")

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

            response = self._request(url)
            try:
                body = response.raw.read(_MAX_DOCUMENT_BYTES + 1, decode_content=True)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise _Retryable(f"reading the response failed: {exc}") from None
            finally:
                response.close()
            if len(body) > _MAX_DOCUMENT_BYTES or _looks_like_html(response.headers.get("Content-Type", ""), body[:64]):
                raise DownloadError(f"{url!r} does not serve a hubkit registry document (got an HTML page or other content).")
            try:
                return json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise DownloadError(f"{url!r} does not serve a hubkit registry document: its body is not JSON.") from None

        return self._with_retries(url, attempt)

    def download(
        self,
        url: str,
        destination: str,
        expected_size: int | None = None,
        on_progress: Callable[[int], None] | None = None,
        follower: DownloadFollower | None = None,
    ) -> DownloadResult:
        """Streams ``url`` into the file ``destination`` while hashing it, resuming with ``Range`` on failures.

        Memory stays flat: the body is received into one reusable buffer of up to ``chunk_size`` bytes,
        written to the file and hashed from there.

        Args:
            url: The archive URL.
            destination: A private temp file path; it is created or truncated.
            expected_size: Byte count to expect; more bytes than this abort the download early.
            on_progress: Called with the number of new bytes after each chunk.
            follower: Told how many bytes the file holds after each write (``advance``) and before the
                download starts over from byte 0 (``restart``): e.g. a
                :class:`~hubkit.hub.extract.BackgroundExtraction` reading the file as it grows.

        Returns:
            The size and sha256 of what was downloaded.

        Raises:
            DownloadError: HTTP failure after retries, 404, or a response that is not a gzip archive.
            IntegrityError: The server sent more bytes than ``expected_size``.
        """
        import http.client  # lazy, like requests (which imports it anyway)

        buffer = bytearray(max(self.config.chunk_size, _MIN_READ))
        view = memoryview(buffer)
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        state: _Transfer = {"received": 0, "hasher": hashlib.sha256()}

        def restart() -> None:
            if follower is not None:
                follower.restart()
            os.ftruncate(fd, 0)
            state["received"] = 0
            state["hasher"] = hashlib.sha256()

        def attempt() -> DownloadResult:
            import requests
            import urllib3

            received = state["received"]
            headers = {"Range": f"bytes={received}-"} if received else None
            response = self._request(url, headers)
            try:
                if received and not self._accepts_resume(response, received):
                    _log.info("Server does not resume %s; starting over.", url)
                    restart()
                    if response.status_code != 200:
                        raise _Retryable("range request refused")
                elif response.status_code == 416:
                    raise _Retryable("range request refused")
                first = state["received"] == 0
                expected_here = _content_length(response)
                got_here = 0
                readinto = _body_readinto(response)
                hasher = state["hasher"]
                size, started = _MIN_READ, time.monotonic()
                while count := readinto(view[:size]):
                    # Fill large pieces on a fast link (fewer, bigger reads and writes), small ones on a slow
                    # link (so progress, the lock's liveness and the resumable file keep up).
                    now = time.monotonic()
                    if count == size and now - started < _FAST_READ_SECONDS:
                        size = min(size * 2, len(view))
                    elif now - started > _SLOW_READ_SECONDS:
                        size = max(size // 2, _MIN_READ)
                    started = now
                    chunk = view[:count]
                    if first:
                        self._check_archive_start(url, response, bytes(chunk[:64]))
                        first = False
                    _write_all(fd, chunk, state["received"])
                    hasher.update(chunk)
                    got_here += count
                    state["received"] += count
                    if follower is not None:
                        follower.advance(state["received"])
                    if expected_size is not None and state["received"] > expected_size:
                        raise IntegrityError(
                            f"Download of {url!r} is larger than the {expected_size} bytes its manifest declares."
                        )
                    if on_progress is not None:
                        on_progress(count)
                if first:
                    self._check_archive_start(url, response, b"")
                if expected_here is not None and got_here < expected_here:
                    raise _Retryable(f"connection closed after {state['received']} bytes")
            except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
                raise _Retryable(f"connection broke after {state['received']} bytes: {exc}") from None
            finally:
                response.close()
            return DownloadResult(state["received"], state["hasher"].hexdigest())

        try:
            return self._with_retries(url, attempt)
        finally:
            os.close(fd)

    @staticmethod
    def _accepts_resume(response: Any, received: int) -> bool:
        if response.status_code != 206:
            return False
        content_range = response.headers.get("Content-Range", "")
        return content_range.startswith(f"bytes {received}-")

    @staticmethod
    def _check_archive_start(url: str, response: Any, head: bytes) -> None:
        if _looks_like_html(response.headers.get("Content-Type", ""), head[:64]) or not head.startswith(GZIP_MAGIC):
            raise DownloadError(
                f"{url!r} does not serve a hubkit module: expected a .tar.gz archive but got "
                f"{'an HTML page' if _looks_like_html(response.headers.get('Content-Type', ''), head[:64]) else 'other content'}."
            )


def _content_length(response: Any) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


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
