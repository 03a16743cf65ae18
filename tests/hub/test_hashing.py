"""The shared streaming sha256 helper."""

import hashlib

from hubkit.hub.hashing import sha256_file


def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path):
    for size in (0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 7):
        data = bytes(i % 251 for i in range(size))
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        assert sha256_file(str(path)) == (hashlib.sha256(data).hexdigest(), size)
