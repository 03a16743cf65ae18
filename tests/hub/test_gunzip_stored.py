"""GunzipReader's own parsing of stored deflate blocks, the CRC policy, and the member layout of packs."""

import gzip
import io
import os
import struct
import subprocess
import tarfile
import zlib

import pytest

from hubkit.hub import extract
from hubkit.hub.extract import safe_extract
from hubkit.hub.gzipstream import GunzipReader, GzipMembersWriter
from hubkit.hub.registry import pack_module
from tests.hub.helpers import make_fake_module


def _gzip_member(deflate: bytes, data: bytes, flags: int = 0, extra: bytes = b"") -> bytes:
    header = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff" + extra
    return header + deflate + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def _stored(data: bytes, level: int = 0) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 9)
    return _gzip_member(compressor.compress(data) + compressor.flush(), data)


def _read(raw: bytes, chunk: int = 1 << 20, check_crc: bool = True) -> bytes:
    reader, out = GunzipReader(io.BytesIO(raw), chunk, check_crc), []
    while piece := reader.read_piece(1 << 20):
        out.append(bytes(piece))
    return b"".join(out)


@pytest.mark.parametrize("chunk", [1, 5, 4099, 1 << 20])
@pytest.mark.parametrize("check_crc", [True, False])
def test_stored_and_deflated_members_read_back(chunk, check_crc):
    noise, text = os.urandom(200_000), b"lorem ipsum " * 20_000
    raw = _stored(noise) + _stored(text, 6) + _stored(b"")
    assert gzip.decompress(raw) == noise + text
    assert _read(raw + b"\0" * 10, chunk, check_crc) == noise + text  # NUL padding after the last member


def test_stored_blocks_are_not_passed_to_zlib(monkeypatch):
    calls = []
    real = zlib.decompressobj
    monkeypatch.setattr(zlib, "decompressobj", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert _read(_stored(os.urandom(300_000))) and calls == []


def test_huffman_blocks_after_stored_ones_in_one_member_use_the_history():
    """A member may switch from stored to compressed blocks; back-references reach into the stored data."""
    head = os.urandom(100_000)
    stored = b"".join(  # non-final stored blocks, byte-aligned, written by hand
        b"\0" + struct.pack("<HH", len(part), len(part) ^ 0xFFFF) + part
        for part in (head[i : i + 40_000] for i in range(0, len(head), 40_000))
    )
    tail = head[-30_000:] * 3  # repeats of the history: compressed as references into it
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zdict=head[-32768:])
    raw = _gzip_member(stored + compressor.compress(tail) + compressor.flush(), head + tail)
    assert gzip.decompress(raw) == head + tail  # the hand-made member is valid gzip
    for chunk in (3, 65_536, 1 << 20):
        assert _read(raw, chunk) == head + tail


def test_header_fields_are_skipped_and_header_crc_checked():
    data = os.urandom(70_000)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="weights.bin", fileobj=buffer, mode="wb", mtime=0, compresslevel=0) as f:
        f.write(data)
    assert _read(buffer.getvalue()) == data  # FNAME set
    extra = struct.pack("<H", 4) + b"abcd"
    compressor = zlib.compressobj(0, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflate = compressor.compress(data) + compressor.flush()
    head = b"\x1f\x8b\x08\x06\0\0\0\0\0\xff" + extra  # FEXTRA and FHCRC
    good = head + struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    trailer = struct.pack("<II", zlib.crc32(data), len(data))
    assert gzip.decompress(good + deflate + trailer) == data
    assert _read(good + deflate + trailer) == data
    with pytest.raises(zlib.error, match="header crc"):
        _read(head + b"\0\0" + deflate + trailer)


def _flip_in_payload(raw: bytes) -> bytes:
    data = bytearray(raw)
    data[len(data) // 2] ^= 0x01  # inside the stored payload, far from any block header
    return bytes(data)


def test_corrupt_stored_payload_is_caught_by_the_crc():
    raw = _flip_in_payload(_stored(os.urandom(500_000)))
    with pytest.raises(zlib.error, match="incorrect data check"):
        _read(raw)
    # Without the CRC check (the caller verifies a pinned sha256 instead) the damage passes this layer.
    assert len(_read(raw, check_crc=False)) == 500_000


@pytest.mark.parametrize("check_crc", [True, False])
@pytest.mark.parametrize("damage", ["length-trailer", "block-length", "truncated", "bad-block-type"])
def test_structural_damage_is_caught_with_or_without_crc(check_crc, damage):
    raw = bytearray(_stored(os.urandom(100_000)))
    if damage == "length-trailer":
        raw[-1] ^= 0x01
    elif damage == "block-length":
        raw[10 + 3] ^= 0x01  # NLEN of the first stored block no longer complements LEN
    elif damage == "truncated":
        raw = raw[: len(raw) // 2]
    else:
        raw[10] = 0x06  # block type 3 (reserved)
    with pytest.raises((zlib.error, EOFError)):
        _read(bytes(raw), check_crc=check_crc)


@pytest.fixture
def module(tmp_path):
    path = make_fake_module(str(tmp_path / "m"), payload=os.urandom(3 << 20) + b"tail")
    with open(os.path.join(path, "assets", "big.txt"), "w") as f:
        f.write("".join(f"word{i}\n" for i in range(300_000)))  # large and compressible: deflated, isolated
    return path


def _members(raw: bytes) -> list[bytes]:
    members = []
    while raw:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        members.append(decompressor.decompress(raw))
        assert decompressor.eof
        raw = decompressor.unused_data
    return members


def test_pack_gives_every_large_file_its_own_member_deterministically(tmp_path, module):
    first, second = io.BytesIO(), io.BytesIO()
    pack_module(module, first)
    pack_module(module, second)
    assert first.getvalue() == second.getvalue()
    members = _members(first.getvalue())
    for relative in ("variables/variables.safetensors", "assets/big.txt"):
        with open(os.path.join(module, relative), "rb") as f:
            assert f.read() in members  # exactly one member holds exactly the file's data
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(first.getvalue())
    with tarfile.open(archive) as tar:
        assert tar.extractfile("variables/variables.safetensors").read()[-4:] == b"tail"
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "xzf", str(archive), "-C", str(out)], check=True, timeout=60)
    with open(os.path.join(module, "assets", "big.txt"), "rb") as f:
        assert (out / "assets" / "big.txt").read_bytes() == f.read()


def _other_layout(module: str, path: str, weights_member_runs_on: bool) -> None:
    """Packs whose files are not alone in their members.

    Either the weights' stored member starts at their tar header (hubkit's earlier layout), or it starts
    at their data but runs on past it (into the tar padding and the next entries).
    """
    weights = "variables/variables.safetensors"
    with open(path, "wb") as out:
        gz = GzipMembersWriter(out, 6)
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in [weights, "assets/big.txt", "hubkit_module.pb"]:
                info = tar.gettarinfo(os.path.join(module, name), arcname=name)
                if name == weights and weights_member_runs_on:
                    gz.isolate(len(info.tobuf(tar.format, tar.encoding, tar.errors)), info.size + 4096, 0)
                else:
                    gz.set_level(0 if name == weights else 6)
                with open(os.path.join(module, name), "rb") as f:
                    tar.addfile(info, f)
        gz.close()


@pytest.mark.parametrize("layout", ["pack_module", "old", "runs-on"])
@pytest.mark.parametrize("check_crc", [True, False])
def test_record_crcs_are_right_whichever_way_they_are_found(tmp_path, module, monkeypatch, layout, check_crc):
    archive = str(tmp_path / "a.tar.gz")
    if layout != "pack_module":
        _other_layout(module, archive, weights_member_runs_on=layout == "runs-on")
    else:
        with open(archive, "wb") as f:
            pack_module(module, f)
    reads_back = []
    real = extract._file_crc32
    monkeypatch.setattr(extract, "_file_crc32", lambda fd, size: reads_back.append(size) or real(fd, size))
    dest = tmp_path / "dest"
    dest.mkdir()
    files = safe_extract(archive, str(dest), 1 << 30, check_crc=check_crc)
    for file in files:
        with open(os.path.join(module, file.path), "rb") as f:
            assert file.crc32 == zlib.crc32(f.read()), file.path
    # Only a file that starts a stored member running on past it, with CRC checks off, is read back.
    assert reads_back == ([(3 << 20) + 4] if layout == "runs-on" and not check_crc else [])
