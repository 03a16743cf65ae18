"""Temp files of an install are removed: small ones at once, large ones by a background thread."""

import os
import threading

from hubkit.hub import cache


def test_a_large_temp_file_is_removed_in_the_background_and_a_small_one_at_once(tmp_path):
    small, large = tmp_path / "small.part", tmp_path / "large.part"
    small.write_bytes(b"x" * 100)
    with open(large, "wb") as f:
        f.truncate(cache._REMOVE_LATER_BYTES + 1)
    cache._remove_soon(str(small))
    assert not small.exists()
    cache._remove_soon(str(large))
    for thread in threading.enumerate():
        if thread.name == "hubkit-remove":
            assert not thread.daemon  # the interpreter waits for it at exit
            thread.join(30)
    assert not large.exists()
    cache._remove_soon(str(tmp_path / "missing"))  # nothing to do, no error
    assert os.listdir(tmp_path) == []
