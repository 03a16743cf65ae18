"""The shared streaming sha256 helper."""

import hashlib

from hubkit.hub.hashing import sha256_file


def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path):
    for size in (0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 7):
        data = bytes(i % 251 for i in range(size))
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        assert sha256_file(str(path)) == (hashlib.sha256(data).hexdigest(), size)


def test_file_checksums_computes_only_what_is_asked(tmp_path):
    import zlib

    from hubkit.hub.hashing import file_checksums

    data = bytes(i % 253 for i in range((1 << 20) + 3))
    path = tmp_path / "f"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert file_checksums(str(path), crc32=True) == (digest, zlib.crc32(data), len(data))
    assert file_checksums(str(path), sha256=False, crc32=True) == (None, zlib.crc32(data), len(data))
    assert file_checksums(str(path)) == (digest, None, len(data))


def test_file_checksums_of_a_missing_file_raises_oserror(tmp_path):
    import pytest

    from hubkit.hub.hashing import file_checksums

    with pytest.raises(OSError, match="does not exist"):
        file_checksums(str(tmp_path / "missing"))


def test_file_checksums_never_reads_a_fifo_or_directory(tmp_path):
    import os

    import pytest

    from hubkit.hub.hashing import file_checksums

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="is a FIFO, not a regular file"):
        file_checksums(str(tmp_path / "fifo"))  # no writer: a blocking open would hang here
    with pytest.raises(OSError, match=r"(is a directory|cannot be read)"):
        file_checksums(str(tmp_path))
