"""Decompression bombs hidden outside file data: huge extended headers and data after the archive."""

import gzip
import io
import tarfile

import pytest

from hubkit.hub.extract import UnsafeArchiveError, safe_extract


def _pax_header(size: int) -> bytes:
    inner = " comment=" + "x" * size + "\n"
    n = len(inner) + len(str(len(inner)))
    n = len(inner) + len(str(n))
    record = (str(n) + inner).encode()
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = len(record)
    return info.tobuf(format=tarfile.USTAR_FORMAT) + record + b"\0" * (-len(record) % 512)


def _marker_entry() -> bytes:
    info = tarfile.TarInfo("hubkit_module.pb")
    info.size = 0
    return info.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 1024


def test_a_huge_pax_header_is_refused_before_it_is_read_into_memory(tmp_path):
    archive = tmp_path / "pax.tar.gz"
    archive.write_bytes(gzip.compress(_pax_header(3 << 20) + _marker_entry(), compresslevel=9))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeArchiveError, match=r"entry header of \d+ bytes"):
        safe_extract(str(archive), str(out), max_bytes=1 << 20)
    assert list(out.iterdir()) == []


def test_data_after_the_last_entry_counts_against_the_limit(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hubkit_module.pb")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    archive = tmp_path / "trailing.tar.gz"
    # A second gzip member of zeros after the tar's end blocks: tar readers skip it, gzip expands it.
    archive.write_bytes(gzip.compress(buf.getvalue()) + gzip.compress(b"\0" * (8 << 20), compresslevel=9))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeArchiveError, match="after its last entry"):
        safe_extract(str(archive), str(out), max_bytes=1024, max_members=4)


def test_long_names_and_ordinary_pax_headers_still_extract(tmp_path):
    buf = io.BytesIO()
    long_name = "assets/" + "/".join(["d" * 60] * 4) + "/vocab.txt"  # > 100 chars: a PAX path record
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("hubkit_module.pb", b"m"), (long_name, b"vocab")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = {"comment": "y" * 1000}
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "ok.tar.gz"
    archive.write_bytes(gzip.compress(buf.getvalue()))
    out = tmp_path / "out"
    out.mkdir()
    files = safe_extract(str(archive), str(out), max_bytes=1024, max_members=4)
    assert sorted(f.size for f in files) == [1, 5]
    assert (out / long_name).read_bytes() == b"vocab"
