"""Resolvers turn handles into local module directories; :func:`resolve` runs the chain.

Each resolver has ``is_supported(handle)`` and ``__call__(handle) -> str``. The chain asks resolvers
registered by the user first (newest first), then the built-in ones; when none supports a handle, the
error lists what each one accepts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat as _stat
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from hubkit.errors import DownloadError, IntegrityError, ResolveError
from hubkit.format import FORMAT_VERSION, MARKER_FILE
from hubkit.format.bounded_io import open_regular
from hubkit.hub.cache import Cache, InstallContext
from hubkit.hub.config import HubConfig
from hubkit.hub.extract import BackgroundExtraction, ExtractedFile, extract_stream, safe_extract
from hubkit.hub.handles import (
    cache_key,
    is_archive_name,
    is_byte_count,
    is_sha256_hex,
    is_url,
    local_path,
    normalize_handle,
    redact_url,
    registry_parts,
    split_sha256_pin,
)
from hubkit.hub.http import HttpClient, progress_bar
from hubkit.hub.manifest_schema import MAX_VERSION, manifest_problem, min_version_tuple
from hubkit.hub.onnx_file import OnnxFileResolver
from hubkit.hub.resolver_base import BuiltinResolver as _BuiltinResolver
from hubkit.importers import TF1_MARKER_FILE

_log = logging.getLogger("hubkit.hub")

__all__ = [
    "FileUrlResolver",
    "HttpArchiveResolver",
    "HttpRegistryResolver",
    "LocalArchiveResolver",
    "LocalPathResolver",
    "Resolver",
    "ResolverChain",
    "check_module_dir",
    "register_resolver",
    "registry_latest",
    "resolve",
    "unregister_resolver",
]

_user_resolvers: list[Any] = []


@runtime_checkable
class Resolver(Protocol):
    """What the chain needs from a resolver (the built-in ones also have a ``description``)."""

    def is_supported(self, handle: str) -> bool:
        """Returns whether this resolver can resolve ``handle``."""

    def __call__(self, handle: str) -> str:
        """Returns a local directory holding the complete module named by ``handle``."""


# A resolved directory is a module when it holds one of these (the loader detects the format itself).
MODULE_MARKERS = (MARKER_FILE, TF1_MARKER_FILE)


def check_module_dir(path: str, handle: str) -> str:
    """Returns ``path`` if it is a directory holding a module marker, else raises.

    Args:
        path: Local directory.
        handle: How the user named it (for the message).

    Raises:
        ResolveError: The directory does not exist or has no ``hubkit_module.pb``.
    """
    if os.path.isfile(path):
        raise ResolveError(f"{path!r} (from handle {handle!r}) is a file, not a module: hubkit loads module "
                           "directories, module archives (.tar.gz, .tgz, .tar) and ONNX models ('.onnx').")
    if not os.path.isdir(path):
        archive = f" Its archive {path + '.tar.gz'!r} exists: load that." if os.path.isfile(path + ".tar.gz") else ""
        raise ResolveError(f"Module directory {path!r} (from handle {handle!r}) does not exist.{archive}")
    if not any(os.path.isfile(os.path.join(path, m)) for m in MODULE_MARKERS):
        from hubkit.hub.remote_registry import local_dir_advice

        raise ResolveError(local_dir_advice(path) or (
            f"Directory {path!r} (from handle {handle!r}) is not a hubkit module: it has no {MARKER_FILE!r} "
            "(an export that did not finish, or not a module at all)."
        ))
    return path


def _is_version(value: Any) -> bool:
    """A registry version: a positive int64 (``true``, ``0``, ``-3`` or ``1.5`` are not versions)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_VERSION


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


class LocalPathResolver(_BuiltinResolver):
    """A path on this machine to a module directory: resolves to itself."""

    description = "a local module directory"

    def is_supported(self, handle: str) -> bool:
        return not is_url(handle) and not is_archive_name(handle)

    def __call__(self, handle: str) -> str:
        return check_module_dir(local_path(handle), handle)


class FileUrlResolver(_BuiltinResolver):
    """A ``file://`` URL of a module directory: resolves to that directory."""

    description = "file:// URL of a module directory"

    def is_supported(self, handle: str) -> bool:
        return handle.lower().startswith("file://") and not is_archive_name(split_sha256_pin(handle)[0])

    def __call__(self, handle: str) -> str:
        return check_module_dir(local_path(handle), handle)


def _install_archive(
    config: HubConfig,
    key: str,
    handle: str,
    fetch: Callable[[InstallContext], tuple[str, dict[str, Any]]],
) -> str:
    """Shared path of every archive resolver: cache lookup, then fetch + safe extract + atomic install."""
    cache = Cache(config)

    def produce(ctx: InstallContext) -> tuple[list[ExtractedFile], dict[str, Any]]:
        archive, extra = fetch(ctx)
        source = extra.get("source", handle)
        files = ctx.extracted  # set when the download extracted while downloading
        if files is None:
            files = safe_extract(archive, ctx.module_dir, config.max_extract_bytes, config.max_extract_members, source)
        if not any(os.path.isfile(os.path.join(ctx.module_dir, m)) for m in MODULE_MARKERS):
            raise DownloadError(f"Archive {source!r} does not hold a hubkit module: it has no {MARKER_FILE!r} at its root.")
        return files, extra

    return cache.get_or_install(key, redact_url(handle), produce)


class LocalArchiveResolver(_BuiltinResolver):
    """A local ``.tar.gz`` (path or ``file://`` URL, optionally ``#sha256=`` pinned): extracted into the cache."""

    description = "local path or file:// URL of a .tar.gz, .tgz or .tar, optionally with #sha256=<hex>"

    def is_supported(self, handle: str) -> bool:
        scheme_ok = handle.lower().startswith("file://") or not is_url(handle)
        return scheme_ok and is_archive_name(handle.partition("#")[0])

    def cache_handle(self, handle: str) -> str:
        """The archive's absolute path, plus ``#sha256=<hex>`` when pinned, however the handle spelled it."""
        base, pin = split_sha256_pin(handle)
        path = local_path(base)
        return path if pin is None else f"{path}#sha256={pin}"

    @staticmethod
    def _key(normalized: str, stat: os.stat_result) -> str:
        # Keyed by the file (however it was named) and, since it may be replaced in place, its size and mtime.
        return cache_key(f"{normalized}\n{stat.st_size}\n{stat.st_mtime_ns}")

    def is_stale(self, recorded_handle: str, key: str) -> bool:
        """Returns whether a cache entry of this resolver can no longer be hit: its archive changed or is gone.

        Args:
            recorded_handle: The entry's recorded handle (see :meth:`cache_handle`).
            key: The entry's key.
        """
        path = split_sha256_pin(recorded_handle)[0]
        try:
            return self._key(recorded_handle, os.stat(path)) != key
        except OSError:
            return True

    def __call__(self, handle: str) -> str:
        normalized = self.cache_handle(handle)
        path, pin = split_sha256_pin(normalized)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise ResolveError(f"Archive {path!r} (from handle {handle!r}) does not exist.") from None
        except (OSError, ValueError) as exc:
            raise ResolveError(f"Archive {path!r} (from handle {handle!r}) cannot be read: {exc}.") from None
        if not _stat.S_ISREG(stat.st_mode):
            kind = "a directory" if _stat.S_ISDIR(stat.st_mode) else "not a regular file (a FIFO, device or socket)"
            raise ResolveError(f"Archive {path!r} (from handle {handle!r}) is {kind}; an archive handle must name a file.")
        key = self._key(normalized, stat)

        def fetch(ctx: InstallContext) -> tuple[str, dict[str, Any]]:
            # Hashed and extracted in one pass over one descriptor: the bytes checked against the pin are the
            # bytes extracted, even if the file is replaced meanwhile (it may sit in a directory others write).
            with open_regular(path, "Archive", error=ResolveError) as f:
                reader = _HashingReader(f)
                limits = (self.config.max_extract_bytes, self.config.max_extract_members, path)
                try:
                    ctx.extracted = extract_stream(reader, ctx.module_dir, *limits)
                except DownloadError:
                    if pin is not None and reader.finish()[0] != pin:  # the real cause: other bytes than pinned
                        raise IntegrityError(f"Archive {path!r} does not have the sha256 the handle pins ({pin}).") from None
                    raise
                digest, size = reader.finish()
            if pin is not None and digest != pin:
                raise IntegrityError(f"Archive {path!r} has sha256 {digest}, but the handle pins {pin}.")
            return path, {"source": path, "archive_sha256": digest, "archive_size": size}

        return _install_archive(self.config, key, normalized, fetch)


class _HashingReader:
    """A binary file read front to back once, hashed (sha256) on the way."""

    def __init__(self, raw: Any) -> None:
        import hashlib

        self._raw = raw
        self._hasher = hashlib.sha256()
        self._size = 0

    def read(self, size: int) -> bytes:
        data = self._raw.read(size)
        self._hasher.update(data)
        self._size += len(data)
        return data

    def finish(self) -> tuple[str, int]:
        """Reads what the extraction left (e.g. padding after the tar end) and returns ``(sha256 hex, size)``."""
        try:
            while self.read(1 << 20):
                pass
        except OSError as exc:
            raise ResolveError(f"Archive cannot be read to its end: {exc.strerror or exc}.") from None
        return self._hasher.hexdigest(), self._size


def _download(config: HubConfig, ctx: InstallContext, url: str, size: int | None, sha256: str | None) -> dict[str, Any]:
    """Downloads and extracts an archive (resuming an interrupted download of it when possible)."""
    resuming = bool(ctx.info_path) and os.path.isfile(ctx.info_path) and os.path.isfile(ctx.part_path)
    try:
        return _download_once(config, ctx, url, size, sha256, resume=True)
    except DownloadError as exc:
        if not resuming or getattr(exc, "resumable", False):
            raise
        # The bytes kept from an interrupted download and the rest the server sent do not make a valid
        # archive with the pinned sha256 (the content changed without its validators): start over, once.
        _log.warning("Resumed download of %s failed its checks (%s); downloading it again from the start.",
                     redact_url(url), exc)
    from hubkit.hub.extract import empty_directory

    empty_directory(ctx.module_dir)
    return _download_once(config, ctx, url, size, sha256, resume=False)


def _download_once(
    config: HubConfig, ctx: InstallContext, url: str, size: int | None, sha256: str | None, resume: bool
) -> dict[str, Any]:
    client = HttpClient(config)
    shown = redact_url(url)
    bar = progress_bar(config, size, "/".join(shown.rsplit("/", 3)[-3:]))

    def on_progress(count: int) -> None:
        ctx.touch()
        if bar is not None:
            bar.update(count)

    if not resume:
        for path in (ctx.part_path, ctx.info_path):
            if path and os.path.lexists(path):
                with contextlib.suppress(OSError):  # whatever is left there, the download creates its own file
                    os.unlink(path)
    # A second thread extracts the archive while it downloads; its work only counts (ctx.extracted) once
    # the whole archive's size and sha256 are verified, and is discarded with the temp entry otherwise.
    # If it finds the archive bad, the download stops at once (the follower's advance raises).
    limits = (config.max_extract_bytes, config.max_extract_members, shown)
    # With a pinned sha256 (verified below, before anything extracted is used) zlib need not also check
    # each member's CRC-32: ~10% of an install's CPU.
    with BackgroundExtraction(ctx.part_path, ctx.module_dir, *limits, check_crc=sha256 is None) as extraction:
        try:
            result = client.download(
                url, ctx.part_path, expected_size=size, on_progress=on_progress, follower=extraction,
                info_path=ctx.info_path or None,
            )
        finally:
            client.close()
            if bar is not None:
                bar.close()
        if size is not None and result.size != size:
            raise IntegrityError(f"Download of {shown!r} has {result.size} bytes, but its manifest declares {size}.")
        if sha256 is not None and result.sha256 != sha256:
            raise IntegrityError(f"Download of {shown!r} has sha256 {result.sha256}, but {sha256} was expected.")
        ctx.extracted = extraction.finish()
    return {"source": shown, "archive_sha256": result.sha256, "archive_size": result.size}


class HttpArchiveResolver(_BuiltinResolver):
    """An ``http(s)://`` URL of a ``.tar.gz``, ``.tgz`` or ``.tar``, optionally pinned with ``#sha256=<hex>``."""

    description = "http(s):// URL of a .tar.gz, .tgz or .tar, optionally with #sha256=<hex>"

    def is_supported(self, handle: str) -> bool:
        return handle.lower().startswith(("http://", "https://")) and is_archive_name(handle.partition("#")[0])

    def __call__(self, handle: str) -> str:
        normalized = normalize_handle(handle)
        url, pin = split_sha256_pin(normalized)
        key = cache_key(normalized)
        hit = self._cached_download(key, handle)
        if hit is not None:
            return hit
        return _install_archive(
            self.config, key, normalized, lambda ctx: (ctx.part_path, _download(self.config, ctx, url, None, pin))
        )


class HttpRegistryResolver(_BuiltinResolver):
    """A registry version URL ``http(s)://host/prefix/<publisher>/<name>/<N>``: manifest, then verified archive."""

    description = "http(s):// registry URL .../<publisher>/<name>/<version>"

    def is_supported(self, handle: str) -> bool:
        return handle[:8].lower().startswith(("http://", "https://")) and registry_parts(normalize_handle(handle)) is not None

    def __call__(self, handle: str) -> str:
        normalized = normalize_handle(handle)
        key = cache_key(normalized)
        hit = self._cached_download(key, handle)
        if hit is not None:
            return hit

        def fetch(ctx: InstallContext) -> tuple[str, dict[str, Any]]:
            client = HttpClient(self.config)
            try:
                manifest = client.get_json(f"{normalized}.json")
            finally:
                client.close()
            sha256, size = _check_manifest(manifest, f"{normalized}.json")
            _check_manifest_identity(manifest, f"{normalized}.json", normalized)
            extra = _download(self.config, ctx, f"{normalized}.tar.gz", size, sha256)
            extra["manifest"] = manifest
            return ctx.part_path, extra

        return _install_archive(self.config, key, normalized, fetch)


def _check_manifest_identity(manifest: dict[str, Any], url: str, handle: str) -> None:
    """Refuses a manifest that describes another module or version than the registry URL names.

    Manifests written by :func:`hubkit.publish` always hold ``name`` and ``version``; a manifest from
    another tool may omit them, but one that states them must agree with the URL.
    """
    parts = registry_parts(handle)
    if parts is None:  # pragma: no cover - the resolver only handles registry URLs
        return
    _, publisher, name, version = parts
    expected = (f"{publisher}/{name}", version)
    stated = (manifest.get("name", expected[0]), manifest.get("version", expected[1]))
    if stated != expected or isinstance(stated[1], bool):
        raise DownloadError(
            f"Manifest {redact_url(url)!r} describes module {_clip(stated[0])} version {_clip(stated[1], quote=False)}, "
            f"but the handle {redact_url(handle)!r} names module {expected[0]!r} version {expected[1]}; the registry "
            "is inconsistent."
        )


def _clip(value: Any, quote: bool = True) -> str:
    text = repr(value) if quote or not isinstance(value, int) else str(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _check_manifest(manifest: Any, url: str) -> tuple[str, int]:
    shown = redact_url(url)
    if not isinstance(manifest, dict):
        raise DownloadError(f"Manifest {shown!r} is not a JSON object; the URL does not serve a hubkit module.")
    sha256, size = manifest.get("sha256"), manifest.get("size")
    if not is_sha256_hex(sha256) or not is_byte_count(size):
        raise DownloadError(f"Manifest {shown!r} lacks a valid 'sha256' and 'size'; the URL does not serve a hubkit module.")
    fmt = manifest.get("format_version", FORMAT_VERSION)
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt != FORMAT_VERSION:
        raise ResolveError(f"Module {shown!r} uses format version {fmt!r}; this hubkit reads version {FORMAT_VERSION}.")
    problem = manifest_problem(manifest)  # the one schema publish writes and `hubkit registry check` applies
    if problem is not None:
        raise DownloadError(f"Manifest {shown!r} is malformed: {problem}.")
    from hubkit._version import __version__

    minimum = manifest.get("min_hubkit_version")
    if minimum and min_version_tuple(minimum) > _version_tuple(__version__):
        raise ResolveError(f"Module {shown!r} needs hubkit >= {minimum}, but this is hubkit {__version__}; please upgrade.")
    return sha256, size


class ResolverChain:
    """An ordered list of resolvers; the first that supports a handle resolves it.

    Args:
        resolvers: The resolvers, asked in order.
    """

    def __init__(self, resolvers: list[Any]) -> None:
        self.resolvers = list(resolvers)

    def __call__(self, handle: str | os.PathLike[str]) -> str:
        """Resolves ``handle`` with the first resolver that supports it.

        Raises:
            ResolveError: The handle is empty, or no resolver supports it (the message lists every one tried).
        """
        if not isinstance(handle, (str, os.PathLike)):
            raise ResolveError(f"A module handle must be a string or path, got {type(handle).__name__}: {handle!r}.")
        handle = os.fspath(handle)
        if not isinstance(handle, str) or not handle.strip():  # "" would resolve to the working directory
            raise ResolveError(f"A module handle must be a non-empty path or URL, got {handle!r}.")
        for resolver in self.resolvers:
            if resolver.is_supported(handle):
                return resolver(handle)
        from hubkit.hub.remote_registry import handle_advice  # what the handle should look like, leading

        configs = [r.config for r in self.resolvers if isinstance(r, _BuiltinResolver)]
        advice = handle_advice(handle, configs[0] if configs else None)
        tried = "; ".join(repr(r) for r in self.resolvers)
        shown = redact_url(handle)
        raise ResolveError(f"{advice} No resolver takes it as written; tried: {tried}." if advice
                           else f"No resolver supports handle {shown!r}; tried: {tried}.")


def default_resolvers(config: HubConfig | None = None) -> list[Any]:
    """Returns the chain :func:`resolve` uses: user resolvers (newest first), then the built-in ones."""
    builtins = [
        LocalArchiveResolver(config),
        LocalPathResolver(config),
        OnnxFileResolver(config),
        FileUrlResolver(config),
        HttpArchiveResolver(config),
        HttpRegistryResolver(config),
    ]
    return [*reversed(_user_resolvers), *builtins]


def resolve(handle: str | os.PathLike[str], config: HubConfig | None = None) -> str:
    """Returns a local directory holding the complete module named by ``handle``.

    Local module directories resolve to themselves; archives and URLs are fetched into the cache once and
    served from it afterwards with no network request.

    >>> resolve("/no/such/dir")
    Traceback (most recent call last):
    ...
    hubkit.errors.ResolveError: Module directory '/no/such/dir' (from handle '/no/such/dir') does not exist.

    Args:
        handle: A local path, ``file://`` URL, registry version URL or ``.tar.gz`` URL.
        config: Hub settings; defaults to :meth:`HubConfig.from_env`.

    Returns:
        An absolute path to the module directory.

    Raises:
        ResolveError: No resolver supports the handle, or the module is not cached while offline.
        DownloadError: The download failed or did not hold a module.
        IntegrityError: Downloaded bytes do not match the manifest or the pin.
    """
    return ResolverChain(default_resolvers(config))(handle)  # the chain checks the handle's type


def register_resolver(resolver: Any) -> None:
    """Adds a resolver that is asked before the built-in ones (the last registered is asked first).

    Args:
        resolver: An object with ``is_supported(handle) -> bool`` and ``__call__(handle) -> str``.

    Raises:
        ResolveError: The object lacks either method.
    """
    if not callable(getattr(resolver, "is_supported", None)) or not callable(resolver):
        raise ResolveError(f"Resolver {resolver!r} needs an is_supported(handle) method and a __call__(handle).")
    _user_resolvers.append(resolver)


def unregister_resolver(resolver: Any) -> None:
    """Removes a resolver added by :func:`register_resolver`.

    Raises:
        ResolveError: It was not registered.
    """
    try:
        _user_resolvers.remove(resolver)
    except ValueError:
        raise ResolveError(f"Resolver {resolver!r} is not registered.") from None


def registry_latest(url: str, config: HubConfig | None = None) -> str:
    """Returns the newest pinned version handle of a registry module ``.../<publisher>/<name>``.

    Loading never picks "latest" on its own; call this explicitly and load (or record) the handle it returns.

    Args:
        url: ``http(s)://host/prefix/<publisher>/<name>`` or ``file://`` / local path of the same layout.
        config: Hub settings; defaults to :meth:`HubConfig.from_env`.

    Returns:
        ``url + "/<N>"`` for the highest published version ``N``.

    Raises:
        ResolveError: The module has no published versions, or offline mode is on.
        DownloadError: The index could not be fetched.
    """
    config = config or HubConfig.from_env()
    base = normalize_handle(url)
    index_url = f"{base}/index.json"
    if base.lower().startswith(("http://", "https://")):
        client = HttpClient(config)
        try:
            index = client.get_json(index_url)
        finally:
            client.close()
    else:
        from hubkit.errors import FormatError
        from hubkit.format.bounded_io import read_json_file

        path = local_path(index_url)
        try:
            index = read_json_file(path, 64 << 20, "Module index", follow_links=True)
        except FormatError as exc:
            raise ResolveError(f"Could not read module index {path!r}: {exc}") from None
    versions = index.get("versions") if isinstance(index, dict) else None
    numbers = sorted(
        v["version"] for v in (versions if isinstance(versions, list) else [])
        if isinstance(v, dict) and _is_version(v.get("version"))
    )
    if not numbers:
        raise ResolveError(f"Module index {redact_url(index_url)!r} lists no valid versions (positive integers).")
    return f"{base}/{numbers[-1]}"
