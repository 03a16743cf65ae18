"""Reading untrusted files: regular files only, bounded sizes, bounded JSON depth.

Module directories, cache entries and registries are written by others, so a file hubkit reads may be
a FIFO (opening it for reading would block forever), a device (``/dev/zero`` never ends), a directory,
or a JSON document nested deeply enough to exhaust the parser's recursion. Every reader of such files
goes through here: the file is opened without blocking, checked to be a regular file *after* opening
(so a swap between a check and the open cannot fool it), read up to a byte limit, and JSON is parsed
with a nesting limit. Every failure is a :class:`~hubkit.errors.FormatError` naming the path, or the
error a caller asks for (:func:`open_regular_fd` is the one place that opens such files: the hub's archive
extraction and file hashing use it too).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Literal

from hubkit.errors import FormatError

__all__ = [
    "MAX_JSON_DEPTH",
    "json_depth",
    "map_regular",
    "open_regular",
    "open_regular_fd",
    "parse_json",
    "read_json_file",
    "read_regular_file",
]

MAX_JSON_DEPTH = 64  # hubkit's own documents nest at most ~6 levels
_MISSING = object()


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device file"),
                       (stat.S_ISBLK, "a device file"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "a special file"


def open_regular_fd(
    path: str,
    what: str = "File",
    follow_links: bool = True,
    error: Callable[[str], BaseException] = FormatError,
    shown: str | None = None,
) -> int:
    """Opens ``path`` read-only and returns a blocking file descriptor, if (after opening) it is a regular file.

    The open does not block (``O_NONBLOCK``: a FIFO must not wait for a writer), and the check is made
    on the open descriptor (``fstat``), so a swap of the path between a check and the open cannot fool it.

    Args:
        path: The file.
        what: How to name the file in messages ("Module graph", "Archive", ...).
        follow_links: When false, a symbolic link is refused instead of followed.
        error: What to raise, called with the message: e.g. ``FormatError`` (the default),
            ``DownloadError``, or ``OSError`` for callers that treat an unreadable file like a missing one.
        shown: How to name the path in messages (e.g. the URL an archive came from); defaults to ``path``.

    Returns:
        The descriptor (blocking, close-on-exec); the caller closes it.

    Raises:
        The ``error`` given: the file is missing, unreadable, or not a regular file (FIFO, device, directory...).
    """
    name = path if shown is None else shown
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{what} {name!r} cannot be read: No such file or directory (it does not exist).") from None
    except (OSError, ValueError) as exc:
        kind = None
        with contextlib.suppress(OSError, ValueError):
            mode = os.lstat(path).st_mode
            kind = None if stat.S_ISREG(mode) else _kind(mode)
        reason = f"it is {kind}" if kind else (getattr(exc, "strerror", None) or str(exc))
        raise error(f"{what} {name!r} cannot be read: {reason}.") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{what} {name!r} is {_kind(mode)}, not a regular file; refusing to read it.")
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def open_regular(
    path: str, what: str = "File", follow_links: bool = True, error: Callable[[str], BaseException] = FormatError,
    shown: str | None = None,
) -> Iterator[BinaryIO]:
    """Opens ``path`` for binary reading if (after opening) it is a regular file (see :func:`open_regular_fd`).

    Yields:
        An unbuffered binary file object.

    Raises:
        The ``error`` given (``FormatError`` by default): the file is missing, unreadable, or not a regular file.
    """
    fd = open_regular_fd(path, what, follow_links, error, shown)
    try:
        f = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f  # type: ignore[misc]


def map_regular(path: str, what: str = "File", mode: Literal["r", "c"] = "r") -> Any:
    """Memory-maps a regular file's bytes (``np.memmap`` of uint8) from the descriptor :func:`open_regular` checked.

    Args:
        path: The file.
        what: How error messages name it.
        mode: ``"r"`` (read-only) or ``"c"`` (copy-on-write).

    Raises:
        FormatError: The file is missing, not a regular file, or cannot be mapped (e.g. it is empty).
    """
    import numpy as np

    try:
        with open_regular(path, what) as f:
            return np.memmap(f, dtype=np.uint8, mode=mode)
    except (OSError, ValueError) as exc:
        raise FormatError(f"{what} {path!r} cannot be mapped: {getattr(exc, 'strerror', None) or exc}.") from None


def read_regular_file(path: str, max_bytes: int, what: str = "File", follow_links: bool = True) -> bytes:
    """Returns the content of the regular file ``path``, refusing one larger than ``max_bytes``.

    Raises:
        FormatError: As for :func:`open_regular`, or the file is larger than ``max_bytes``.
    """
    fd = open_regular_fd(path, what, follow_links)
    try:
        want = min(os.fstat(fd).st_size, max_bytes) + 1  # one byte more, to notice a file larger than allowed
        parts, got = [], 0
        while got < want:
            chunk = os.read(fd, want - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise FormatError(f"{what} {path!r} cannot be read: {exc.strerror or exc}.") from None
    finally:
        os.close(fd)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if len(data) > max_bytes:
        raise FormatError(f"{what} {path!r} is larger than {max_bytes} bytes; refusing to read it.")
    return data


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Returns how deeply ``value`` nests lists and dicts, counting up to ``limit + 1`` (iteratively).

    >>> json_depth({"a": [1, [2]]}), json_depth(3)
    (3, 0)
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))
    return deepest


def parse_json(data: bytes | str, source: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parses a JSON document from outside, with bounded nesting.

    >>> parse_json(b'{"a": [1]}', "x.json")
    {'a': [1]}
    >>> parse_json(b"[" * 5000 + b"]" * 5000, "x.json")
    Traceback (most recent call last):
    ...
    hubkit.errors.FormatError: 'x.json' is not valid JSON: it nests more than 64 levels deep.

    Args:
        data: The document (UTF-8 bytes or text).
        source: How to name it in messages (a path or URL).
        max_depth: Deepest nesting of lists and objects accepted.

    Raises:
        FormatError: The document is not UTF-8 JSON, or nests more than ``max_depth`` levels.
    """
    value, reason = _parse(data, max_depth)
    if reason is not None:
        raise FormatError(f"{source!r} is not valid JSON: {reason}.")
    return value


def _parse(data: bytes | str, max_depth: int) -> tuple[Any, str | None]:
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
        value = json.loads(text)
    except RecursionError:
        return None, f"it nests more than {max_depth} levels deep"
    except (UnicodeDecodeError, ValueError) as exc:  # includes an over-long integer literal
        return None, str(exc)
    if max_depth and json_depth(value, max_depth) > max_depth:
        return None, f"it nests more than {max_depth} levels deep"
    return value, None


def read_json_file(
    path: str, max_bytes: int, what: str = "File", default: Any = _MISSING, follow_links: bool = False,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Reads and parses a JSON file with :func:`read_regular_file` and :func:`parse_json`.

    Args:
        path: The file.
        max_bytes: Largest size accepted.
        what: How to name the file in messages.
        default: Returned instead of raising when the file is missing or invalid in any way.
        follow_links: Follow a symbolic link at ``path`` (not by default: these files are written by hubkit).
        max_depth: Deepest nesting accepted; 0 skips the walk (for a caller that checks the exact structure
            itself; the parser's own recursion limit still applies).

    Raises:
        FormatError: The file is missing, not a regular file, too large, or not valid JSON (unless ``default``).
    """
    try:
        value, reason = _parse(read_regular_file(path, max_bytes, what, follow_links), max_depth)
        if reason is not None:
            raise FormatError(f"{what} {path!r} cannot be read: {reason} (not valid JSON).")
        return value
    except FormatError:
        if default is _MISSING:
            raise
        return default
