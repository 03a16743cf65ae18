"""Corrupt gzip input to the extractor's gzip reader raises the same errors as Python's gzip module.

The reader (zlib's own gzip decoder, member after member) is the hub's streaming decompressor; it mirrors ``gzip``'s exception classes
(``zlib.error``/``EOFError``, turned into hubkit errors by the archive extractor), so each
corruption is also fed to ``gzip.decompress`` as an independent reference. Every test runs twice: with
zlib checking each member's CRC-32, and with ``check_crc=False`` (what a sha256-pinned download uses:
plainly-headed members are inflated raw, their length trailer checked here), where every corruption but
a wrong CRC-32 must fail the same way.
"""

import gzip
import io
import struct
import zlib

import pytest

from hubkit.hub.extract import _Gunzip

PAYLOAD = b"hubkit module bytes " * 50
_CHECK_CRC = [True]


@pytest.fixture(autouse=True, params=[True, False], ids=["crc-checked", "pinned"])
def check_crc(request):
    _CHECK_CRC[0] = request.param
    yield request.param
    _CHECK_CRC[0] = True


def _read(raw: bytes) -> bytes:
    reader, out = _Gunzip(io.BytesIO(raw), b"", 7, check_crc=_CHECK_CRC[0]), []
    for _ in range(100_000):  # bounded: the payloads here are a few KB
        piece = reader.read_piece(5)
        if not piece:
            return b"".join(out)
        out.append(piece)
    raise AssertionError("the reader did not end")


def _stored_member(data: bytes, *, flags: int = 0, extra: bytes = b"") -> bytes:
    """A gzip member whose single deflate block is stored (BFINAL=1, BTYPE=00)."""
    header = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff" + extra
    block = b"\x01" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data
    return header + block + struct.pack("<II", zlib.crc32(data), len(data))


def _both_raise(raw: bytes, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        gzip.decompress(raw)
    with pytest.raises(exc, match=match):
        _read(raw)


def test_stored_member_reference_reads():
    raw = _stored_member(PAYLOAD)
    assert gzip.decompress(raw) == _read(raw) == PAYLOAD


def test_empty_input():
    with pytest.raises(EOFError, match="ended before the end-of-stream marker"):
        _read(b"")


@pytest.mark.parametrize("reserved", [0x20, 0x40, 0x80])
def test_reserved_header_flags(reserved):
    """RFC 1952 reserved bits must be zero (the gzip module ignores them; zlib's inflate refuses them)."""
    raw = bytearray(gzip.compress(PAYLOAD))
    raw[3] |= reserved
    with pytest.raises(zlib.error, match="unknown header flags set"):
        _read(bytes(raw))


def test_wrong_magic():
    raw = b"\x1f\x8c" + gzip.compress(PAYLOAD)[2:]
    with pytest.raises(zlib.error, match="incorrect header check"):
        _read(raw)


def test_header_crc_mismatch():
    good = _stored_member(PAYLOAD)
    header = bytearray(good[:10])
    header[3] |= 0x02  # FHCRC: two bytes of the header's CRC-32 follow
    raw = bytes(header) + b"\x00\x00" + good[10:]
    assert struct.pack("<I", zlib.crc32(bytes(header)))[:2] != b"\x00\x00"
    with pytest.raises(zlib.error, match="header crc mismatch"):
        _read(raw)  # stricter than the gzip module, which skips the header CRC unchecked


@pytest.mark.parametrize("flag", [0x08, 0x10])
def test_unterminated_name_or_comment(flag):
    raw = b"\x1f\x8b\x08" + bytes([flag]) + b"\0\0\0\0\0\xff" + b"no terminating NUL"
    _both_raise(raw, EOFError, "ended before the end-of-stream marker")


def test_extra_field_longer_than_the_input():
    raw = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff" + struct.pack("<H", 500) + b"short"
    _both_raise(raw, EOFError, "ended before the end-of-stream marker")


def test_extra_field_is_skipped():
    raw = _stored_member(PAYLOAD, flags=0x04, extra=struct.pack("<H", 3) + b"abc")
    assert gzip.decompress(raw) == _read(raw) == PAYLOAD


def test_input_ending_after_the_header():
    _both_raise(_stored_member(PAYLOAD)[:10], EOFError, "ended before the end-of-stream marker")


def test_stored_block_with_bad_length_complement():
    raw = bytearray(_stored_member(PAYLOAD))
    raw[13] ^= 0x01  # NLEN no longer complements LEN
    _both_raise(bytes(raw), zlib.error, "invalid stored block lengths")


@pytest.mark.parametrize("cut", [1, 8, 100])
def test_truncated_stored_member(cut):
    _both_raise(_stored_member(PAYLOAD)[:-cut], EOFError, "ended before the end-of-stream marker")


@pytest.mark.parametrize("where", [-1, -4])
def test_trailer_with_wrong_length(where):
    raw = bytearray(_stored_member(PAYLOAD))
    raw[where] ^= 0x01
    with pytest.raises(zlib.error, match="incorrect length check"):
        _read(bytes(raw))


@pytest.mark.parametrize("flags", [0, 0x08])
def test_trailer_with_wrong_crc(check_crc, flags):
    """Unchecked only for a plain member of a pinned download (the sha256 covers it); a member with a
    name field (FNAME) still goes through zlib's gzip decoder, which checks it."""
    raw = bytearray(_stored_member(PAYLOAD, flags=flags, extra=b"name\0" if flags else b""))
    raw[-8] ^= 0x01
    if check_crc or flags:
        with pytest.raises(zlib.error, match="incorrect data check"):
            _read(bytes(raw))
    else:
        assert _read(bytes(raw)) == PAYLOAD


def test_members_of_both_kinds_in_one_file():
    plain = [_stored_member(PAYLOAD[:i]) for i in (0, 1, 7, 500)]
    named = _stored_member(PAYLOAD, flags=0x08, extra=b"x\0")
    raw = plain[0] + named + gzip.compress(PAYLOAD, mtime=0) + plain[1] + bytes(3) + plain[2] + named + plain[3]
    assert _read(raw) == gzip.decompress(raw)


@pytest.mark.parametrize("keep", [1, 3, 9])
def test_second_member_cut_inside_its_header(keep):
    raw = _stored_member(PAYLOAD) + _stored_member(PAYLOAD)[:keep]
    with pytest.raises((EOFError, OSError)):  # gzip.BadGzipFile for a lone magic byte
        gzip.decompress(raw)
    with pytest.raises((EOFError, zlib.error)):
        _read(raw)


def test_nul_padding_after_the_last_member_is_allowed():
    raw = gzip.compress(PAYLOAD) + bytes(20)
    assert _read(raw) == gzip.decompress(raw) == PAYLOAD


def test_garbage_after_nul_padding():
    raw = gzip.compress(PAYLOAD) + bytes(20) + b"junk"
    with pytest.raises(zlib.error, match="incorrect header check"):
        _read(raw)
