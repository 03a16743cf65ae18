"""The member layout of packs (one gzip member per large file), read back by the extractor's zlib reader.

Whatever the layout (hubkit's packs, an earlier layout whose members start at tar headers, members that
run on past a file), the extracted files and their recorded CRC-32s are right.
"""

import io
import os
import subprocess
import tarfile
import zlib

import pytest

from hubkit.hub.extract import safe_extract
from hubkit.hub.gzipstream import GzipMembersWriter
from hubkit.hub.registry import pack_module
from tests.hub.helpers import make_fake_module


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
def test_record_crcs_are_right_whichever_way_they_are_found(tmp_path, module, layout, check_crc):
    archive = str(tmp_path / "a.tar.gz")
    if layout != "pack_module":
        _other_layout(module, archive, weights_member_runs_on=layout == "runs-on")
    else:
        with open(archive, "wb") as f:
            pack_module(module, f)
    dest = tmp_path / "dest"
    dest.mkdir()
    files = safe_extract(archive, str(dest), 1 << 30, check_crc=check_crc)
    for file in files:
        with open(os.path.join(module, file.path), "rb") as f:
            assert file.crc32 == zlib.crc32(f.read()), file.path


class _CountingZlib:
    """``zlib`` for the extractor, counting the bytes it CRCs outside the decompressor."""

    def __init__(self):
        self.crc_bytes = 0

    def __getattr__(self, name):
        return getattr(zlib, name)

    def crc32(self, data, value=0):
        self.crc_bytes += len(data)
        return zlib.crc32(data, value)


def test_a_file_alone_in_its_member_takes_its_crc_from_the_checked_trailer(tmp_path, module, monkeypatch):
    from hubkit.hub import extract

    archive = tmp_path / "a.tar.gz"
    with open(archive, "wb") as f:
        pack_module(module, f)
    counting = _CountingZlib()
    monkeypatch.setattr(extract, "zlib", counting)
    monkeypatch.setattr(extract, "_crc_of", lambda fd, size: pytest.fail("a file alone in its member was read back"))
    dest = tmp_path / "dest"
    dest.mkdir()
    files = safe_extract(str(archive), str(dest), 1 << 30)
    assert counting.crc_bytes < 1 << 20  # only the small files were CRC'd while copying
    for file in files:
        with open(os.path.join(module, file.path), "rb") as f:
            assert file.crc32 == zlib.crc32(f.read()), file.path


def test_a_member_that_runs_on_past_its_file_is_read_back_for_the_crc(tmp_path, module, monkeypatch):
    from hubkit.hub import extract

    archive = str(tmp_path / "a.tar.gz")
    _other_layout(module, archive, weights_member_runs_on=True)
    read_back = []
    real = extract._crc_of
    monkeypatch.setattr(extract, "_crc_of", lambda fd, size: read_back.append(size) or real(fd, size))
    dest = tmp_path / "dest"
    dest.mkdir()
    files = {f.path: f for f in safe_extract(archive, str(dest), 1 << 30)}
    weights = "variables/variables.safetensors"
    assert read_back == [os.path.getsize(os.path.join(module, weights))]
    with open(os.path.join(module, weights), "rb") as f:
        assert files[weights].crc32 == zlib.crc32(f.read())


def test_a_lying_member_trailer_fails_the_extraction(tmp_path, module):
    from hubkit.errors import DownloadError

    out = io.BytesIO()
    pack_module(module, out)
    raw = bytearray(out.getvalue())
    # The weights member is the largest; flip a bit of its trailer's CRC-32 (the 8 bytes before the next member).
    members, offset = [], 0
    while offset < len(raw):
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        decompressor.decompress(bytes(raw[offset:]))
        end = len(raw) - len(decompressor.unused_data)
        members.append((end - offset, offset, end))
        offset = end
    _, _, end = max(members)
    raw[end - 8] ^= 1
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(bytes(raw))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DownloadError, match="corrupted"):
        safe_extract(str(archive), str(dest), 1 << 30)
