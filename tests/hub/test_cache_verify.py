"""`Cache.verify` against both kinds of completion record: CRC-32 (written now) and sha256 (older entries)."""

import hashlib
import os
import zlib

import pytest

from hubkit.hub import Cache, HubConfig
from hubkit.hub.extract import ExtractedFile

CONTENT = b"module marker bytes"


def _install(tmp_path, file: ExtractedFile) -> tuple[Cache, str]:
    cache = Cache(HubConfig.from_env({}, cache_dir=str(tmp_path / "cache")))

    def produce(ctx):
        with open(os.path.join(ctx.module_dir, "hubkit_module.pb"), "wb") as f:
            f.write(CONTENT)
        return [file], {"source": "x"}

    return cache, cache.get_or_install("a" * 40, "handle", produce)


@pytest.mark.parametrize("record", ["crc32", "sha256"])
def test_verify_notices_a_same_size_edit(tmp_path, record):
    if record == "crc32":
        file = ExtractedFile("hubkit_module.pb", len(CONTENT), crc32=zlib.crc32(CONTENT))
    else:
        file = ExtractedFile("hubkit_module.pb", len(CONTENT), hashlib.sha256(CONTENT).hexdigest())
    cache, module_dir = _install(tmp_path, file)
    (entry,) = cache.entries()
    assert entry.complete and cache.verify(entry) == []
    with open(os.path.join(module_dir, "hubkit_module.pb"), "r+b") as f:
        f.write(b"M")  # same size: only the checksum notices
    problems = cache.verify(entry)
    assert len(problems) == 1 and "modified file 'hubkit_module.pb'" in problems[0]
    os.unlink(os.path.join(module_dir, "hubkit_module.pb"))
    assert "missing file 'hubkit_module.pb'" in cache.verify(entry)[0]
