"""What a handle is: parsing and normalising local paths, ``file://`` and ``http(s)://`` handles.

A normalised handle names one thing whatever way it was spelled (case of scheme and host, trailing
slashes), so it can key the cache: :func:`cache_key` is a hash of it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import urllib.parse
from typing import TypeGuard

from hubkit._fileio import TEMP_INFIX  # the temp-name rule of every writer: never a name part, never served
from hubkit.errors import ResolveError

__all__ = [
    "TEMP_INFIX",
    "cache_key",
    "is_archive_name",
    "is_registry_name_part",
    "is_sha256_hex",
    "is_url",
    "local_path",
    "normalize_handle",
    "redact_url",
    "registry_parts",
    "split_module_name",
    "split_sha256_pin",
    "url_to_path",
]

# Every pattern is used with fullmatch: "$" would also match before a trailing newline.
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_PIN = re.compile(r"sha256=([0-9a-fA-F]{64})")
_NAME_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME_PART_RE = re.compile(_NAME_PART)
# Suffixes of the files a registry writes (index.json, index.html, <N>.json, <N>.tar.gz): a publisher or
# module directory named like one would shadow or be mistaken for a registry file.
_RESERVED_SUFFIXES = (".json", ".html", ".gz")
_REGISTRY_PATH = re.compile(
    rf"(?P<prefix>.*)/(?P<publisher>{_NAME_PART})/(?P<name>{_NAME_PART})/(?P<version>[1-9][0-9]{{0,17}})"
)


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def is_url(handle: str) -> bool:
    """Returns whether ``handle`` has a URL scheme (``file``, ``http``, ``https``, ...)."""
    # The scheme is read without urlsplit, which raises ValueError on a malformed host ("http://[::1");
    # such a handle is a URL whose normalisation then fails as a ResolveError naming it.
    match = _SCHEME.match(handle)
    scheme = match.group(1) if match else ""
    # A one-letter scheme is a Windows drive letter ("C:\\models"), not a URL.
    return len(scheme) > 1 and "://" in handle


def is_archive_name(path: str) -> bool:
    """Returns whether a path or URL path names a tar archive (``.tar.gz``, ``.tgz`` or ``.tar``).

    The name only picks the resolver; whether the archive is gzipped is told from its bytes.

    >>> [is_archive_name(p) for p in ("m.tar.gz", "m.TGZ", "m.tar", "m.zip")]
    [True, True, True, False]
    """
    lowered = path.lower()
    return lowered.endswith((".tar.gz", ".tgz", ".tar"))


def redact_url(url: str) -> str:
    """Returns ``url`` with any user name and password replaced by ``***`` (for messages and logs).

    >>> redact_url("https://Bob:S3cret@Models.example.org/acme/m/1")
    'https://***@Models.example.org/acme/m/1'
    >>> redact_url("https://h/acme/m/1")
    'https://h/acme/m/1'
    """
    if not isinstance(url, str) or "@" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def is_registry_name_part(part: object) -> bool:
    """Returns whether ``part`` may be a publisher or module name in a registry.

    A name part starts with a letter or digit and holds only letters, digits, ``.``, ``_`` and ``-``; it
    must not look like a file the registry writes (ending in ``.json``, ``.html`` or ``.gz``) or a publish
    temp file (containing ``.tmp-``). Publishing and checking a registry and parsing registry URLs all use
    this one rule.

    >>> [is_registry_name_part(p) for p in ("text-embedding", "index.json", "1.tar.gz", ".hidden", "v1.2")]
    [True, False, False, False, True]
    """
    if not isinstance(part, str) or _NAME_PART_RE.fullmatch(part) is None:
        return False
    lowered = part.lower()
    return not lowered.endswith(_RESERVED_SUFFIXES) and TEMP_INFIX not in lowered


def split_module_name(name: object) -> tuple[str, str] | None:
    """Splits a registry module name ``"publisher/name"``; ``None`` unless both parts are valid.

    >>> split_module_name("acme/text-embedding"), split_module_name("acme/index.json")
    (('acme', 'text-embedding'), None)
    """
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) != 2 or not all(is_registry_name_part(p) for p in parts):
        return None
    return parts[0], parts[1]


def normalize_handle(handle: str) -> str:
    """Returns the canonical spelling of a handle.

    URLs get a lowercase scheme and host and lose trailing slashes (a user name and password keep their
    case); local paths become absolute.

    >>> normalize_handle("HTTPS://Models.Example.org/acme/text/2/")
    'https://models.example.org/acme/text/2'

    Args:
        handle: A local path or a URL.

    Returns:
        The normalised handle.

    Raises:
        ResolveError: The handle is not a non-empty string.
    """
    if not isinstance(handle, str) or not handle.strip():
        raise ResolveError(f"A module handle must be a non-empty string, got {handle!r}.")
    handle = handle.strip()
    if not is_url(handle):
        return local_path(handle)  # depends on the working directory: not memoized
    return _normalize_url(handle)


@functools.lru_cache(maxsize=256)
def _normalize_url(handle: str) -> str:
    try:
        parts = urllib.parse.urlsplit(handle)
    except ValueError as exc:  # e.g. an unbalanced "[" in the host
        raise ResolveError(f"Handle {redact_url(handle)!r} is not a valid URL ({exc}).") from None
    path = parts.path.rstrip("/") if parts.path not in ("", "/") else parts.path
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{host.lower()}"
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, path, parts.query, parts.fragment))


def split_sha256_pin(url: str) -> tuple[str, str | None]:
    """Splits an optional ``#sha256=<hex>`` pin off a URL.

    >>> split_sha256_pin("https://h/m.tar.gz#sha256=" + "AB" * 32)[1] == "ab" * 32
    True

    Args:
        url: A URL, maybe with a fragment.

    Returns:
        ``(url_without_fragment, lowercase_hex_or_None)``.

    Raises:
        ResolveError: The URL has a fragment that is not a sha256 pin.
    """
    base, _, fragment = url.partition("#")
    if not fragment:
        return base, None
    match = _PIN.fullmatch(fragment)
    if match is None:
        raise ResolveError(
            f"URL fragment {fragment[:80]!r} of {redact_url(base)!r} is not a pin; expected '#sha256=<64 hex digits>'."
        )
    return base, match.group(1).lower()


@functools.lru_cache(maxsize=256)
def registry_parts(url: str) -> tuple[str, str, str, int] | None:
    """Splits a registry version URL ``<root>/<publisher>/<name>/<N>``.

    >>> registry_parts("https://h/hub/acme/text-embedding/2")
    ('https://h/hub', 'acme', 'text-embedding', 2)

    Args:
        url: An ``http(s)://`` URL without query or fragment.

    Returns:
        ``(root_url, publisher, name, version)``, or ``None`` if the URL has another shape.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.query or parts.fragment:
        return None
    match = _REGISTRY_PATH.fullmatch(parts.path.rstrip("/"))
    if match is None or split_module_name(f"{match['publisher']}/{match['name']}") is None:
        return None
    root = urllib.parse.urlunsplit((parts.scheme, parts.netloc, match["prefix"], "", ""))
    return root, match["publisher"], match["name"], int(match["version"])


def url_to_path(url: str) -> str:
    """Returns the local path of a ``file://`` URL.

    Args:
        url: A ``file://`` URL such as ``file:///data/m.tar.gz``.

    Returns:
        The absolute local path.

    Raises:
        ResolveError: The URL names a remote host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ResolveError(
            f"File URL {redact_url(url)!r} names host {redact_url('x://' + parts.netloc)[4:]!r}; only local files are supported."
        )
    return os.path.abspath(urllib.parse.unquote(parts.path))


def local_path(handle: str) -> str:
    """Returns the absolute local path a local handle names: a path (``~`` expanded) or a ``file://`` URL.

    >>> local_path("file:///data/m.tar.gz"), local_path("/data/./m")
    ('/data/m.tar.gz', '/data/m')

    Raises:
        ResolveError: A ``file://`` URL names a remote host.
    """
    return url_to_path(handle) if is_url(handle) else os.path.abspath(os.path.expanduser(handle))


@functools.lru_cache(maxsize=256)
def cache_key(normalized_handle: str) -> str:
    """Returns the cache directory name of a normalised handle: a hex hash of it.

    >>> len(cache_key("https://h/acme/text/1"))
    40

    Args:
        normalized_handle: Output of :func:`normalize_handle` (plus anything else that identifies the content).

    Returns:
        A 40-character lowercase hex string.
    """
    # surrogatepass: a path that is not UTF-8 (os.fsdecode gives lone surrogates) still has one key
    return hashlib.sha1(normalized_handle.encode("utf-8", "surrogatepass")).hexdigest()


def is_sha256_hex(value: object) -> TypeGuard[str]:
    """Returns whether ``value`` is 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def is_byte_count(value: object) -> TypeGuard[int]:
    """Returns whether ``value`` is a non-negative int (``True``/``False`` are not sizes), as manifests need."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
