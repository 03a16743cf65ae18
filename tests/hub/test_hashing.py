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

    with pytest.raises(FileNotFoundError):
        file_checksums(str(tmp_path / "missing"))
