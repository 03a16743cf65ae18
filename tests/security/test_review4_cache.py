"""Review 4, class 4: deep directory trees planted in a shared cache never break an install, ``cache ls`` or ``prune``.

``shutil.rmtree`` and ``os.walk`` recurse once per directory level: an incomplete ``<key>/`` holding a tree 1,200
levels deep made ``hk.Module(handle)`` raise ``RecursionError`` and left a ``.trash`` that broke ``hubkit cache
prune`` and ``ls`` for good. Trees are now removed and measured iteratively, through descriptors, without
following links, with at most 256 levels open at once.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import hubkit as hk
from hubkit.hub import cache as cache_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path):
    """Each test removes its own trees: pytest deletes old temp directories with ``shutil.rmtree``, which recurses
    once per level on Python 3.11, so a deep tree left in ``tmp_path`` broke every later pytest run on the machine."""
    yield
    cache_module._remove(str(tmp_path))


def _plant_deep_tree(path: str, depth: int, files_every: int = 0, link_to: str | None = None) -> None:
    """``path/a/a/.../a`` ``depth`` levels deep, made relative to descriptors (no long paths); optionally a file
    every ``files_every`` levels and a link to ``link_to`` at every level that has a file."""
    os.mkdir(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        for level in range(depth):
            if files_every and level % files_every == 0:
                f = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(f, b"x" * 10)
                os.close(f)
                if link_to is not None:
                    os.symlink(link_to, "victim", dir_fd=fd)
            os.mkdir("a", dir_fd=fd)
            child = os.open("a", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def _hubkit(args: list[str], cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HUBKIT_CACHE_DIR": cache, "HUBKIT_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "hubkit", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=env)


@pytest.mark.parametrize("depth", [300, 1200, 5000])
def test_a_deep_tree_planted_at_an_entry_never_breaks_install_ls_or_prune(hub_env, tmp_path, depth):
    module = str(tmp_path / "module")

    def module_fn():
        x = hk.placeholder(hk.float32, [None, 3])
        hk.add_signature(inputs=x, outputs=x * 2.0)

    hk.Module(hk.create_module_spec(module_fn)).export(module)
    registry = str(tmp_path / "registry")
    hk.publish(module, registry, name="acme/deep")
    handle = os.path.join(registry, "acme", "deep", "1.tar.gz")
    cache = hub_env.cache_dir
    installed = hk.resolve(handle)
    key = os.path.basename(installed)
    assert _hubkit(["cache", "rm", handle], cache).returncode == 0
    _plant_deep_tree(os.path.join(cache, key), depth, files_every=97)

    ls = _hubkit(["cache", "ls"], cache)  # the planted entry is incomplete and measured to 256 levels
    assert ls.returncode == 0 and "Traceback" not in ls.stderr, ls.stderr
    assert hk.resolve(handle) == installed  # the planted entry is renamed aside and removed
    assert sorted(os.listdir(cache)) == sorted(n for n in os.listdir(cache) if not n.endswith(".trash"))
    assert not [n for n in os.listdir(cache) if ".trash" in n or n.startswith(".deep")]

    _plant_deep_tree(os.path.join(cache, "f" * 40), depth)  # another incomplete entry, removed by prune
    prune = _hubkit(["cache", "prune"], cache)
    assert prune.returncode == 0 and "Traceback" not in prune.stderr, prune.stderr
    assert not os.path.exists(os.path.join(cache, "f" * 40))
    assert _hubkit(["cache", "ls"], cache).returncode == 0
    assert os.path.isdir(installed)


def test_removing_a_deep_tree_never_follows_its_links(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_bytes(b"precious")
    for depth in (10, 256, 257, 700):
        tree = str(tmp_path / f"tree{depth}")
        _plant_deep_tree(tree, depth, files_every=3, link_to=str(victim))
        os.symlink(str(victim), os.path.join(tree, "top-link"))
        cache_module._remove(tree)
        assert not os.path.lexists(tree)
        assert (victim / "keep").read_bytes() == b"precious"
    link = tmp_path / "a-link"
    link.symlink_to(victim, target_is_directory=True)
    cache_module._remove(str(link))  # a link to a directory: the link goes, never the directory's content
    assert not os.path.lexists(link) and (victim / "keep").exists()


def test_removing_a_wide_and_deep_tree_is_complete(tmp_path):
    tree = tmp_path / "wide"
    for i in range(50):
        d = tree / f"d{i}" / "x" / "y"
        d.mkdir(parents=True)
        (d / "f").write_bytes(b"1")
        (tree / f"file{i}").write_bytes(b"2")
    _plant_deep_tree(str(tree / "deep"), 600, files_every=5)
    cache_module._remove(str(tree))
    assert not tree.exists()
    cache_module._remove(str(tree))  # already gone: nothing to do, no error


def test_tree_sizes_are_measured_without_recursion(tmp_path):
    tree = str(tmp_path / "tree")
    _plant_deep_tree(tree, 2000, files_every=1)
    size = cache_module._tree_size(tree)
    assert size == 10 * cache_module._MAX_TREE_DEPTH  # 10 bytes a level, measured to the depth limit
    shallow = str(tmp_path / "shallow")
    _plant_deep_tree(shallow, 20, files_every=1)
    os.symlink("/dev/zero", os.path.join(shallow, "zero"))  # a link counts as itself, never its target
    assert cache_module._tree_size(shallow) == 200 + os.lstat(os.path.join(shallow, "zero")).st_size
