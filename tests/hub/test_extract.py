"""Safe extraction: every malicious archive kind is refused and nothing lands outside the temp dir."""

import os
import tarfile

import pytest

from hubkit.errors import DownloadError
from hubkit.hub.extract import UnsafeArchiveError, merge_relative_path, safe_extract
from tests.hub.archives import bomb_archive, build_archive, file_entry, special_entry


def _extract(tmp_path, raw=None, entries=(), limit=1 << 20, members=1000):
    archive = tmp_path / "a.tar.gz"
    if raw is None:
        raw = build_archive(entries)
    archive.write_bytes(raw)
    dest = tmp_path / "out" / "dest"
    dest.mkdir(parents=True)
    return safe_extract(str(archive), str(dest), limit, members), dest


def _outside_untouched(tmp_path):
    return sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dest"]


# TF Hub's _merge_relative_path rules, made strict: a module archive never needs "..".
@pytest.mark.parametrize(("relative", "expected"), [
    ("file", "/root/dir/file"),
    ("./file", "/root/dir/file"),
    ("a//b/./c", "/root/dir/a/b/c"),
    ("a/", "/root/dir/a"),
    (".", "/root/dir"),
])
def test_merge_relative_path(relative, expected):
    assert merge_relative_path("/root/dir", relative) == expected


@pytest.mark.parametrize(("relative", "message"), [
    ("../file", "'..' component"),
    ("a/../../file", "'..' component"),
    ("a/../b", "'..' component"),
    ("/etc/passwd", "absolute path"),
    ("\\windows\\system32", "absolute path"),
    ("C:/x", "absolute path"),
])
def test_merge_relative_path_refuses_escapes(relative, message):
    with pytest.raises(UnsafeArchiveError, match=message):
        merge_relative_path("/root/dir", relative)


def test_extracts_files_with_fixed_modes(tmp_path):
    exe = tarfile.TarInfo("assets/run.sh")
    exe.mode = 0o4777  # setuid bits in the archive are ignored
    exe.size = 2
    files, dest = _extract(tmp_path, entries=[file_entry("variables/v.safetensors", b"abc"), (exe, b"hi")])
    assert sorted(f.path for f in files) == ["assets/run.sh", "hubkit_module.pb", "variables/v.safetensors"]
    assert (dest / "variables" / "v.safetensors").read_bytes() == b"abc"
    assert os.stat(dest / "assets" / "run.sh").st_mode & 0o7777 == 0o644
    sizes = {f.path: f.size for f in files}
    assert sizes["variables/v.safetensors"] == 3


@pytest.mark.parametrize(("entry", "message"), [
    (file_entry("/tmp/evil", b"x"), "absolute path"),
    (file_entry("../evil", b"x"), "'..' component"),
    (file_entry("assets/../../evil", b"x"), "'..' component"),
    (special_entry("assets/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    (special_entry("assets/hard", tarfile.LNKTYPE, "hubkit_module.pb"), "hard link"),
    (special_entry("assets/dev", tarfile.CHRTYPE), "device file"),
    (special_entry("assets/blk", tarfile.BLKTYPE), "device file"),
    (special_entry("assets/fifo", tarfile.FIFOTYPE), "FIFO"),
])
def test_malicious_entries_are_refused(tmp_path, entry, message):
    with pytest.raises(UnsafeArchiveError, match=message):
        _extract(tmp_path, entries=[entry])
    assert _outside_untouched(tmp_path)
    assert not os.path.exists("/tmp/evil") or os.path.getmtime("/tmp/evil") < os.path.getmtime(tmp_path)


def test_symlink_then_write_through_it_is_refused(tmp_path):
    # The classic two-step attack: a symlink to outside, then a file "inside" the link.
    entries = [special_entry("assets", tarfile.SYMTYPE, str(tmp_path / "out")), file_entry("assets/pwned", b"x")]
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        _extract(tmp_path, entries=entries)
    assert not (tmp_path / "out" / "pwned").exists()


def test_duplicate_entries_are_refused(tmp_path):
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        _extract(tmp_path, entries=[file_entry("a", b"1"), file_entry("a", b"2")])


def test_colliding_entries_are_refused(tmp_path):
    with pytest.raises(UnsafeArchiveError, match="collide"):
        _extract(tmp_path, entries=[file_entry("a", b"1"), file_entry("a/b", b"2")])


def test_decompression_bomb_is_refused(tmp_path):
    bomb_archive(str(tmp_path / "a.tar.gz"), 64 << 20)
    assert os.path.getsize(tmp_path / "a.tar.gz") < 1 << 20
    dest = tmp_path / "out" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(UnsafeArchiveError, match="decompression bomb"):
        safe_extract(str(tmp_path / "a.tar.gz"), str(dest), max_bytes=8 << 20)
    assert not (dest / "variables" / "huge.bin").exists()


def test_too_many_members_is_refused(tmp_path):
    entries = [file_entry(f"assets/{i}", b"") for i in range(20)]
    with pytest.raises(UnsafeArchiveError, match="more than 10 entries"):
        _extract(tmp_path, entries=entries, members=10)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_corrupted_archive_message(tmp_path, damage):
    raw = build_archive([file_entry("variables/v", os.urandom(50_000))])
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "garbage":
        raw = b"this is not an archive at all" * 10
    else:
        raw = raw[:100] + bytes(b ^ 0x55 for b in raw[100:200]) + raw[200:]
    with pytest.raises(DownloadError, match=r"Failed to extract archive .*corrupted or not a \.tar\.gz"):
        _extract(tmp_path, raw=raw)
