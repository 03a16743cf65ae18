"""Builders of hand-made (and malicious) .tar.gz archives for the extraction and download tests."""

from __future__ import annotations

import gzip
import io
import tarfile


def file_entry(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special_entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def build_archive(entries, path=None, with_marker: bool = True) -> bytes:
    """A .tar.gz of (TarInfo, data) entries (plus a module marker first, unless told otherwise)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        if with_marker:
            info, data = file_entry("hubkit_module.pb", b"\x08\x01")
            tar.addfile(info, io.BytesIO(data))
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buffer.getvalue()
    if path is not None:
        with open(path, "wb") as f:
            f.write(raw)
    return raw


def bomb_archive(path: str, size: int) -> None:
    """A tiny .tar.gz holding one file of ``size`` zero bytes (compresses ~1000x)."""
    with gzip.open(path, "wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("variables/huge.bin")
        info.size = size

        class Zeros(io.RawIOBase):
            def __init__(self):
                self.left = size

            def readable(self):
                return True

            def readinto(self, b):
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        tar.addfile(info, io.BufferedReader(Zeros()))
