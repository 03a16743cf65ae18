"""Class 7: FIFOs, devices, directories and odd names where regular files are expected.

Readers open only regular files (checking after opening), so nothing blocks on a FIFO or reads
``/dev/zero`` forever; every OS error becomes a HubkitError naming the path. The cases that could hang
run in a child process with a time limit, so a regression fails instead of stalling the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest

from hubkit import resolve
from hubkit.errors import HubkitError, ResolveError
from hubkit.hub.extract import UnsafeArchiveError, safe_extract
from tests.hub.helpers import make_fake_module
from tests.security.hostile import entry, gz, tar_bytes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_LOAD = r"""
import sys, hubkit
from hubkit.errors import HubkitError
for path in sys.argv[1:]:
    try:
        hubkit.load_module_spec(path)
        print("LOADED", path)
    except HubkitError as exc:
        print("HUBKIT", type(exc).__name__, str(exc).splitlines()[0][:300])
    except BaseException as exc:
        print("OTHER", type(exc).__name__, exc)
"""


def _real_module(path: str) -> str:
    import hubkit as hk

    def module_fn():
        x = hk.placeholder(hk.float32, [None, 3])
        w = hk.get_variable("w", [3, 2], initializer=hk.initializers.get("zeros"))
        hk.add_signature(inputs=x, outputs=hk.matmul(x, w))

    hk.Module(hk.create_module_spec(module_fn)).export(path)
    return path


@pytest.fixture(scope="module")
def module_template(tmp_path_factory) -> str:
    return _real_module(str(tmp_path_factory.mktemp("m") / "module"))


def _replace(path: str, kind: str) -> None:
    os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        os.symlink("/dev/zero", path)
    elif kind == "directory":
        os.mkdir(path)
    else:
        os.symlink(path + ".nowhere", path)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "dangling"])
def test_module_files_that_are_not_regular_files(tmp_path, module_template, kind):
    import shutil

    targets = ["graph.pb", "hubkit_module.pb", os.path.join("variables", "variables.safetensors")]
    modules = []
    for i, relative in enumerate(targets):
        module = str(tmp_path / f"m{i}")
        shutil.copytree(module_template, module)
        _replace(os.path.join(module, relative), kind)
        modules.append(module)
    module = str(tmp_path / "index")
    shutil.copytree(module_template, module)
    index = os.path.join(module, "variables", "variables.safetensors.index.json")
    open(index, "w").close()
    _replace(index, kind)
    modules.append(module)
    out = subprocess.run([sys.executable, "-c", _LOAD, *modules], capture_output=True, text=True, timeout=60, cwd=REPO)
    lines = out.stdout.splitlines()
    assert len(lines) == len(modules), (out.stdout, out.stderr)
    for line in lines:
        assert line.startswith("HUBKIT"), line


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_an_archive_handle_that_is_not_a_file(tmp_path, hub_env, kind):
    path = tmp_path / f"x{kind}.tar.gz"
    if kind == "directory":
        make_fake_module(str(path))
    else:
        os.mkfifo(path)
    with pytest.raises(ResolveError, match=r"is (a directory|not a regular file)"):
        resolve(str(path))
    with pytest.raises(ResolveError, match=r"is (a directory|not a regular file)"):
        resolve(f"file://{path}")


def test_safe_extract_refuses_non_regular_archives(tmp_path):
    os.mkfifo(tmp_path / "f.tar.gz")
    (tmp_path / "out").mkdir()
    from hubkit.errors import DownloadError

    with pytest.raises(DownloadError, match="not a regular file"):
        safe_extract(str(tmp_path / "f.tar.gz"), str(tmp_path / "out"), 1 << 20)
    with pytest.raises(DownloadError, match="cannot be read"):
        safe_extract(str(tmp_path / "missing.tar.gz"), str(tmp_path / "out"), 1 << 20)


def _pax_entry(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo("placeholder")
    info.pax_headers = {"path": name}
    info.size = 1
    return info, b"x"


@pytest.mark.parametrize("name", [
    "a" * 300,  # one component longer than NAME_MAX
    "/".join(["d" * 200] * 30),  # a path longer than PATH_MAX
    "graph\0.pb",  # NUL inside a PAX path
    "variables/\0",
])
@pytest.mark.parametrize("compress", [True, False])
def test_over_long_and_nul_names_are_refused(tmp_path, name, compress):
    raw = tar_bytes([_pax_entry(name)])
    path = tmp_path / "a.tar.gz"
    path.write_bytes(gz(raw) if compress else raw)
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeArchiveError, match=r"(NUL byte|longer than the filesystem allows)"):
        safe_extract(str(path), str(tmp_path / "out"), 1 << 30)


def test_disk_errors_while_extracting_are_named(tmp_path):
    raw = gz(tar_bytes([entry("variables/v.bin", b"x")]))
    path = tmp_path / "a.tar.gz"
    path.write_bytes(raw)
    out = tmp_path / "out"
    out.mkdir()
    (out / "variables").write_text("a file where a directory is needed")
    with pytest.raises(HubkitError):
        safe_extract(str(path), str(out), 1 << 30)
    if os.geteuid() != 0:
        readonly = tmp_path / "ro"
        readonly.mkdir(mode=0o500)
        with pytest.raises(HubkitError, match="Cannot write"):
            safe_extract(str(path), str(readonly), 1 << 30)


_CHECK = r"""
import sys
from hubkit.hub.registry import check_registry
print(len(check_registry(sys.argv[1])))
"""


@pytest.mark.parametrize("target", ["1.json", "1.tar.gz", "index.json", "root-index.json"])
def test_registry_check_does_not_hang_on_fifos(tmp_path, fake_module, target):
    from hubkit.hub.registry import publish
    from tests.hub.helpers import fake_validate

    root = tmp_path / "reg"
    publish(fake_module, str(root), "acme/m", validate=fake_validate)
    path = root / "index.json" if target == "root-index.json" else root / "acme" / "m" / target
    path.unlink()
    os.mkfifo(path)
    out = subprocess.run([sys.executable, "-c", _CHECK, str(root)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0 and int(out.stdout) >= 1, (out.stdout, out.stderr)


def test_cache_commands_on_a_cache_dir_that_is_a_file(tmp_path, monkeypatch):
    from hubkit.hub import Cache, HubConfig

    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = Cache(HubConfig(cache_dir=str(blocker)))
    with pytest.raises(ResolveError, match="not a directory"):
        list(cache.entries())
    with pytest.raises(ResolveError, match="not a directory"):
        cache.prune()


_VOCAB = r"""
import sys, numpy as np, hubkit as hk
from hubkit.errors import HubkitError
try:
    hk.Module(sys.argv[1])(np.array(["a b"], dtype=object))
    print("RAN")
except HubkitError as exc:
    print("HUBKIT", type(exc).__name__)
"""


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_vocabulary_asset_that_is_not_a_regular_file(tmp_path, kind):
    import hubkit as hk

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\n")

    def module_fn():
        s = hk.placeholder(hk.string, [None])
        table = hk.text.vocabulary_table(str(vocab), num_oov_buckets=1)
        hk.add_signature(inputs=s, outputs=table.lookup(hk.text.whitespace_tokenize(s).values))

    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    asset = os.path.join(path, "assets", "vocab.txt")
    _replace(asset, kind)
    out = subprocess.run([sys.executable, "-c", _VOCAB, path], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.stdout.startswith("HUBKIT"), (out.stdout, out.stderr)


_FIFO_READERS = r"""
import os, sys, threading
from hubkit.errors import HubkitError

root, which = sys.argv[1], sys.argv[2]
done = []

def run():
    if which == "registry document":
        from hubkit.hub.remote_registry import read_registry_json
        try:
            read_registry_json(os.path.join(root, "index.json"))
        except HubkitError as exc:
            done.append(type(exc).__name__)
    elif which == "registry base url":
        from hubkit.hub.registry import _recorded_base_url
        done.append(repr(_recorded_base_url(root)))
    else:
        from hubkit.hub.repair import cache_repair_hint
        done.append(str(cache_repair_hint(os.path.join(root, "key", "module")) is not None))

thread = threading.Thread(target=run, daemon=True)
thread.start()
thread.join(20)
print(done[0] if done else "HUNG")
"""


@pytest.mark.parametrize(("which", "expected"), [("registry document", "RegistryError"), ("registry base url", "None"),
                                                 ("cache repair hint", "True")])
def test_a_fifo_where_a_registry_or_cache_document_should_be_never_blocks(tmp_path, which, expected):
    """A FIFO at a registry's index.json (read by `registry check` and `publish`) or at a cache entry's
    descriptor.json (read for the repair hint of a damaged entry) is not read: nothing waits for a writer."""
    root = tmp_path / "root"
    if which == "cache repair hint":
        (root / "key" / "module").mkdir(parents=True)
        os.mkfifo(root / "key" / "descriptor.json")
        env = {**os.environ, "HUBKIT_CACHE_DIR": str(root)}
    else:
        root.mkdir()
        os.mkfifo(root / "index.json")
        env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", _FIFO_READERS, str(root), which], capture_output=True, text=True,
                         timeout=60, cwd=REPO, env=env)
    assert out.stdout.strip() == expected, out.stderr[-2000:]


@pytest.mark.parametrize("depth", [129, 1200, 2000])
def test_member_paths_nested_too_deeply_are_refused_by_name(tmp_path, depth):
    """A 2,000-deep path fits in 4,096 bytes; it once ended as a misleading "nests its headers" RecursionError."""
    archive = tmp_path / "deep.tar.gz"
    archive.write_bytes(gz(tar_bytes([entry("/".join(["d"] * depth) + "/f", b"x")])))
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeArchiveError, match="nested more than 128 directories deep"):
        safe_extract(str(archive), str(tmp_path / "out"), 1 << 20)


def test_member_paths_of_ordinary_depth_still_extract(tmp_path):
    archive = tmp_path / "ok.tar.gz"
    archive.write_bytes(gz(tar_bytes([entry("/".join(["d"] * 127) + "/f", b"x")])))
    (tmp_path / "out").mkdir()
    assert [f.size for f in safe_extract(str(archive), str(tmp_path / "out"), 1 << 20)][-1] == 1
