"""A resolver for single ``.onnx`` files named by ``file://`` or ``http(s)://`` URLs.

An HTTP model is downloaded like an archive: streamed into a private temp file of the cache, bounded in
size (``HubConfig.max_extract_bytes``), checked to start like an ONNX ``ModelProto`` (not an HTML page),
verified against ``#sha256=<hex>`` when the handle pins one, then renamed into place as the only file of a
new cache entry. The resolved directory holds that one ``.onnx`` file, which the loader detects by its bytes
and imports. A ``file://`` URL resolves to the file's own directory when it holds no other ``.onnx`` model
(so external-data files beside it keep working), and to a cached copy otherwise.
"""

from __future__ import annotations

import os
import re
from typing import Any

from hubkit.errors import DownloadError, IntegrityError, ResolveError
from hubkit.format.bounded_io import open_regular
from hubkit.hub.cache import Cache, InstallContext
from hubkit.hub.extract import ExtractedFile
from hubkit.hub.handles import cache_key, local_path, normalize_handle, redact_url, split_sha256_pin
from hubkit.hub.http import HttpClient
from hubkit.hub.resolver_base import BuiltinResolver

__all__ = ["OnnxFileResolver"]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.onnx$")


def _is_onnx_url(handle: str) -> bool:
    base = handle.partition("#")[0].partition("?")[0]
    return base.lower().startswith(("file://", "http://", "https://")) and base.lower().endswith(".onnx")


def _file_name(url: str) -> str:
    name = url.partition("#")[0].partition("?")[0].rsplit("/", 1)[-1]
    return name if _SAFE_NAME.match(name) else "model.onnx"


class _OnnxHttpClient(HttpClient):
    """Accepts a body that starts like an ONNX ModelProto (field 1, ``ir_version``), nothing else."""

    @staticmethod
    def _check_archive_start(url: str, response: Any, head: bytes, final: bool) -> None:
        if len(head) < 2 and not final:
            return  # wait for the first two bytes
        if len(head) < 2 or head[0] != 0x08 or not 0 < head[1] < 0x80:
            raise DownloadError(f"{redact_url(url)!r} does not serve an ONNX model: its body does not start like one.")


def _copy_hashed(source: str, target: str, limit: int) -> tuple[str, int]:
    """Copies the regular file ``source`` to the new file ``target`` and returns the sha256 and size of the copy.

    One pass over one descriptor: the bytes checked against a pin are the bytes copied, even if the
    source is replaced or rewritten meanwhile.
    """
    import hashlib

    hasher, size = hashlib.sha256(), 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    with open_regular(source, "ONNX model", error=ResolveError) as f:
        try:
            with os.fdopen(os.open(target, flags, 0o644), "wb") as out:
                while chunk := f.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise ResolveError(f"ONNX model {source!r} is larger than the {limit}-byte limit "
                                           "(HUBKIT_MAX_EXTRACT_BYTES).")
                    hasher.update(chunk)
                    out.write(chunk)
        except OSError as exc:
            raise ResolveError(f"Cannot copy ONNX model {source!r} into the cache: {exc.strerror or exc}.") from None
    return hasher.hexdigest(), size


class OnnxFileResolver(BuiltinResolver):
    """``file://`` or ``http(s)://`` URL of one ``.onnx`` model, optionally pinned with ``#sha256=<hex>``."""

    description = "file:// or http(s):// URL of an .onnx model, optionally with #sha256=<hex>"
    what = "ONNX model"

    def is_supported(self, handle: str) -> bool:
        return _is_onnx_url(handle)

    def __call__(self, handle: str) -> str:
        normalized = normalize_handle(handle)
        url, pin = split_sha256_pin(normalized)
        if url.lower().startswith("file://"):
            return self._local(handle, local_path(url), pin)
        key = cache_key(normalized)
        hit = self._cached_download(key, handle)
        if hit is not None:
            return hit
        return Cache(self.config).get_or_install(key, redact_url(normalized), lambda ctx: self._download(ctx, url, pin))

    def _local(self, handle: str, path: str, pin: str | None) -> str:
        if not os.path.isfile(path):
            raise ResolveError(f"ONNX model {path!r} (from handle {handle!r}) does not exist.")
        directory = os.path.dirname(path)
        others = [n for n in os.listdir(directory) if n.endswith(".onnx")]
        if pin is None and others == [os.path.basename(path)]:
            return directory
        stat = os.stat(path)
        key = cache_key(f"{path}\n{stat.st_size}\n{stat.st_mtime_ns}\n{pin}")

        def copy(ctx: InstallContext) -> tuple[list[ExtractedFile], dict[str, Any]]:
            name = _file_name(path)
            digest, size = _copy_hashed(path, os.path.join(ctx.module_dir, name), self.config.max_extract_bytes)
            if pin is not None and digest != pin:
                raise IntegrityError(f"ONNX model {path!r} has sha256 {digest}, but the handle pins {pin}.")
            return [ExtractedFile(name, size, sha256=digest)], {"source": path, "archive_sha256": digest,
                                                                 "archive_size": size}

        return self.cached(key) or Cache(self.config).get_or_install(key, f"{path}#sha256={pin}" if pin else path, copy)

    def cache_handle(self, handle: str) -> str:
        """The handle as its cache entry records it: normalised, with any user name and password replaced."""
        return redact_url(normalize_handle(handle))

    def _download(self, ctx: InstallContext, url: str, pin: str | None) -> tuple[list[ExtractedFile], dict[str, Any]]:
        limit = self.config.max_extract_bytes
        shown = redact_url(url)
        received = [0]

        def on_progress(count: int) -> None:
            ctx.touch()
            received[0] += count
            if received[0] > limit:
                raise DownloadError(f"{shown!r} is larger than the {limit}-byte limit (HUBKIT_MAX_EXTRACT_BYTES).")

        client = _OnnxHttpClient(self.config)
        try:
            result = client.download(url, ctx.part_path, on_progress=on_progress)
        finally:
            client.close()
        if pin is not None and result.sha256 != pin:
            raise IntegrityError(f"Download of {shown!r} has sha256 {result.sha256}, but {pin} was expected.")
        name = _file_name(url)
        target = os.path.join(ctx.module_dir, name)
        os.replace(ctx.part_path, target)
        moved = os.lstat(target)  # in our private temp entry: nobody else can change it from here on
        if (moved.st_dev, moved.st_ino) != result.file_id:  # the part path is in a directory others may write
            raise IntegrityError(f"The download of {shown!r} was replaced by another file before it was installed.")
        os.chmod(target, 0o644)  # the download file is private (0600); the cache's files are readable (its dir is ours)
        return [ExtractedFile(name, result.size, sha256=result.sha256)], {
            "source": shown, "archive_sha256": result.sha256, "archive_size": result.size}
