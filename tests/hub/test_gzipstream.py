"""Multi-member gzip archives: a level per file, readable by gzip/tar, checked on every member."""

import gzip
import io
import os
import subprocess
import tarfile
import zlib

import pytest

from hubkit.hub.extract import _Gunzip
from hubkit.hub.gzipstream import GzipMembersWriter, choose_level
from hubkit.hub.registry import pack_module
from tests.hub.helpers import make_fake_module


def _members(head, noise, text):
    buffer = io.BytesIO()
    writer = GzipMembersWriter(buffer, 6)
    writer.write(head)
    writer.set_level(0)
    writer.write(noise)
    writer.set_level(6)
    writer.write(text)
    writer.close()
    return buffer.getvalue()


def open_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _read_all(raw, chunk=1 << 16):
    reader, out = _Gunzip(io.BytesIO(raw), b"", chunk), []
    while piece := reader.read_piece(1 << 20):
        out.append(piece)
    return b"".join(out)


def test_round_trip_and_standard_gzip_compatibility():
    noise, text = os.urandom(300_000), b"the quick brown fox " * 50_000
    raw = _members(b"head", noise, text)
    assert gzip.decompress(raw) == b"head" + noise + text
    for chunk in (7, 4096, 1 << 20):
        assert _read_all(raw, chunk) == b"head" + noise + text
    assert len(raw) < len(noise) + len(text) // 20  # noise stored, text compressed
    assert _read_all(raw + b"\0" * 64) == b"head" + noise + text  # NUL padding after the last member


@pytest.mark.parametrize("damage", ["truncate-trailer", "truncate-middle", "flip", "junk-after"])
def test_damage_is_detected(damage):
    raw = _members(b"head", os.urandom(100_000), b"abc" * 10_000)
    if damage == "truncate-trailer":
        raw = raw[:-3]
    elif damage == "truncate-middle":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw = raw[:50_000] + bytes([raw[50_000] ^ 1]) + raw[50_001:]
    else:
        raw = raw + b"junk"
    with pytest.raises((EOFError, zlib.error)):
        _read_all(raw)


def test_choose_level():
    assert choose_level(os.urandom(50_000), 6) == 0
    assert choose_level(b"hello world " * 5000, 6) == 6
    assert choose_level(b"", 6) == 6


def test_packed_module_with_weights_is_stored_and_tar_readable(tmp_path):
    module = make_fake_module(str(tmp_path / "m"), payload=os.urandom(3 << 20))
    with open(os.path.join(module, "assets", "vocab.txt"), "w") as f:
        f.write("token\n" * 200_000)
    archive = tmp_path / "m.tar.gz"
    with open(archive, "wb") as f:
        pack_module(module, f)
    size = archive.stat().st_size
    assert 3 << 20 < size < (3 << 20) + 100_000  # weights stored, vocabulary deflated
    with tarfile.open(archive) as tar:  # the standard library reads multi-member archives
        assert tar.extractfile("assets/vocab.txt").read() == b"token\n" * 200_000
    if subprocess.run(["sh", "-c", "command -v tar"], capture_output=True).returncode == 0:
        out = tmp_path / "x"
        out.mkdir()
        subprocess.run(["tar", "xzf", str(archive), "-C", str(out)], check=True, timeout=60)
        original = os.path.join(module, "variables", "variables.safetensors")
        assert (out / "variables" / "variables.safetensors").read_bytes() == open_bytes(original)
