"""Publishing into a static registry root: layout, determinism, immutability, indexes, catalog, checks."""

import gzip
import hashlib
import json
import os
import tarfile

import pytest

from hubkit.errors import FormatError, RegistryError
from hubkit.hub import check_registry, pack_module, publish
from tests.hub.helpers import fake_validate, make_fake_module


def _load(path):
    with open(path) as f:
        return json.load(f)


def test_publish_layout_and_manifest(tmp_path, fake_module):
    root = str(tmp_path / "reg")
    manifest = publish(fake_module, root, name="acme/echo", description="Echoes.", validate=fake_validate)
    module_root = os.path.join(root, "acme", "echo")
    assert sorted(os.listdir(module_root)) == ["1.json", "1.tar.gz", "index.html", "index.json"]
    assert sorted(os.listdir(root)) == ["acme", "index.html", "index.json"]
    with open(os.path.join(module_root, "1.tar.gz"), "rb") as f:
        data = f.read()
    assert manifest == _load(os.path.join(module_root, "1.json"))
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() and manifest["size"] == len(data)
    assert manifest["version"] == 1 and manifest["format_version"] == 1 and manifest["min_hubkit_version"]
    assert manifest["description"] == "Echoes."
    assert manifest["variants"][0]["signatures"]["default"]["inputs"]["default"] == {"dtype": "float32",
                                                                                     "shape": [None, 3]}
    index = _load(os.path.join(module_root, "index.json"))
    assert index["latest"] == 1 and [v["version"] for v in index["versions"]] == [1]
    assert index["versions"][0]["sha256"] == manifest["sha256"]
    root_index = _load(os.path.join(root, "index.json"))
    assert root_index["modules"] == {"acme/echo": {"latest": 1, "versions": [1], "description": "Echoes."}}
    assert check_registry(root) == []


def test_archive_is_deterministic(tmp_path):
    first = make_fake_module(str(tmp_path / "a"), extra_files=5)
    second = make_fake_module(str(tmp_path / "b"), extra_files=5)
    os.utime(os.path.join(second, "graph.pb"), (1, 1))
    os.chmod(os.path.join(second, "graph.pb"), 0o600)
    blobs = []
    for module in (first, second):
        path = str(tmp_path / f"{os.path.basename(module)}.tar.gz")
        with open(path, "wb") as f:
            pack_module(module, f)
        with open(path, "rb") as f:
            blobs.append(f.read())
    assert blobs[0] == blobs[1]
    with gzip.open(tmp_path / "a.tar.gz") as gz, tarfile.open(fileobj=gz) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and "hubkit_module.pb" in names and "variables/variables.safetensors" in names
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.mode for m in members if m.isfile()} == {0o644} and {m.mode for m in members if m.isdir()} == {0o755}
    assert blobs[0][4:8] == b"\0\0\0\0"  # gzip header mtime


def test_versions_default_to_next_and_are_immutable(tmp_path, fake_module):
    root = str(tmp_path / "reg")
    assert publish(fake_module, root, name="acme/echo", validate=fake_validate)["version"] == 1
    assert publish(fake_module, root, name="acme/echo", version=5, validate=fake_validate)["version"] == 5
    assert publish(fake_module, root, name="acme/echo", validate=fake_validate)["version"] == 6
    with open(os.path.join(root, "acme", "echo", "5.tar.gz"), "rb") as f:
        before = f.read()
    with pytest.raises(RegistryError, match=r"version 5 is already published .*\[1, 5, 6\]"):
        publish(fake_module, root, name="acme/echo", version=5, validate=fake_validate)
    with open(os.path.join(root, "acme", "echo", "5.tar.gz"), "rb") as f:
        assert f.read() == before
    assert _load(os.path.join(root, "acme", "echo", "index.json"))["latest"] == 6
    assert [n for n in os.listdir(os.path.join(root, "acme", "echo")) if "tmp" in n] == []


def test_two_modules_share_the_root_index(tmp_path, fake_module):
    root = str(tmp_path / "reg")
    publish(fake_module, root, name="acme/echo", validate=fake_validate)
    publish(fake_module, root, name="other/thing", description="<b>bold</b>", validate=fake_validate)
    assert sorted(_load(os.path.join(root, "index.json"))["modules"]) == ["acme/echo", "other/thing"]
    with open(os.path.join(root, "index.html")) as f:
        page = f.read()
    assert "acme/echo" in page and "other/thing" in page and "2 modules" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert 'data-path="other/thing/1"' in page and "hubkit.Module(" in page
    with open(os.path.join(root, "other", "thing", "index.html")) as f:
        module_page = f.read()
    assert "default" in module_page and "float32" in module_page  # signatures are listed


@pytest.mark.parametrize("name", [
    "echo", "acme/echo/x", "../echo", "acme/.hidden", "acme/", 7,
    # Names of files the registry writes: a directory of that name would shadow them.
    "index.json/x", "index.html/x", "acme/index.json", "acme/INDEX.HTML", "acme/1.json", "acme/2.tar.gz",
    "acme/x.tmp-0123abcd", "acme.json/echo", "acme/echo.gz",
])
def test_bad_names_are_refused(tmp_path, fake_module, name):
    root = tmp_path / "reg"
    with pytest.raises(RegistryError, match="publisher/name"):
        publish(fake_module, str(root), name=name, validate=fake_validate)
    assert not root.exists()


def test_reserved_name_cannot_brick_a_registry(tmp_path, fake_module):
    root = str(tmp_path / "reg")
    publish(fake_module, root, name="acme/echo", validate=fake_validate)
    for name in ("index.json/x", "acme/index.json"):
        with pytest.raises(RegistryError, match=r"not ending in '\.json'"):
            publish(fake_module, root, name=name, validate=fake_validate)
    assert os.path.isfile(os.path.join(root, "index.json")) and os.path.isfile(os.path.join(root, "acme", "echo", "index.json"))
    assert publish(fake_module, root, name="acme/echo", validate=fake_validate)["version"] == 2
    assert check_registry(root) == []


@pytest.mark.parametrize("version", [0, -1, True, "2"])
def test_bad_versions_are_refused(tmp_path, fake_module, version):
    with pytest.raises(RegistryError, match="not a positive integer"):
        publish(fake_module, str(tmp_path / "reg"), name="acme/echo", version=version, validate=fake_validate)


def test_invalid_module_is_not_published(tmp_path, fake_module):
    def broken(module_dir):
        raise FormatError("graph.pb is truncated.")

    root = tmp_path / "reg"
    with pytest.raises(RegistryError, match=r"does not load, so it cannot be published: graph\.pb is truncated"):
        publish(fake_module, str(root), name="acme/echo", validate=broken)
    assert not root.exists()
    with pytest.raises(RegistryError, match=r"a directory without 'hubkit_module\.pb'"):
        publish(str(tmp_path), str(root), name="acme/echo", validate=fake_validate)


def test_module_with_symlink_is_not_published(tmp_path, fake_module):
    os.symlink("/etc/passwd", os.path.join(fake_module, "assets", "link"))
    with pytest.raises(RegistryError, match=r"'assets/link' .* is not a regular file"):
        publish(fake_module, str(tmp_path / "reg"), name="acme/echo", validate=fake_validate)
    assert not os.path.exists(tmp_path / "reg" / "acme" / "echo" / "1.tar.gz")
    assert os.listdir(tmp_path / "reg" / "acme" / "echo") == []  # the archive's temp file is gone too


def test_check_registry_finds_problems(tmp_path, fake_module):
    root = str(tmp_path / "reg")
    publish(fake_module, root, name="acme/echo", validate=fake_validate)
    publish(fake_module, root, name="acme/echo", validate=fake_validate)
    with open(os.path.join(root, "acme", "echo", "1.tar.gz"), "ab") as f:
        f.write(b"junk")
    os.unlink(os.path.join(root, "acme", "echo", "2.tar.gz"))
    os.makedirs(os.path.join(root, "stray", "module"))
    problems = check_registry(root)
    text = "\n".join(problems)
    assert "'acme/echo/1': archive has" in text and "does not match the manifest" in text
    assert "'acme/echo/2': archive" in text and "is missing" in text
    assert "'stray/module' is not listed" in text
    assert check_registry(str(tmp_path / "nothing"))[0].startswith("Root index")


def test_crashed_publish_leftovers_are_not_listed(tmp_path, fake_module):
    root = str(tmp_path / "reg")
    publish(fake_module, root, name="acme/echo", validate=fake_validate)
    # A publish that died after writing its archive but before its manifest.
    with open(os.path.join(root, "acme", "echo", "2.tar.gz"), "wb") as f:
        f.write(b"partial")
    from hubkit.hub import rebuild_indexes

    assert rebuild_indexes(root)["modules"]["acme/echo"]["versions"] == [1]


@pytest.mark.parametrize("lock_works", [True, False], ids=["index-lock", "no-lock-relist"])
def test_concurrent_publishes_keep_each_others_index_entries(tmp_path, fake_module, monkeypatch, lock_works):
    """Publisher A lists the modules, then B publishes before A writes: A must not drop B's entry."""
    import threading

    import hubkit.hub.registry as registry

    root = str(tmp_path / "reg")
    real_module_roots, real_sleep = registry._module_roots, registry._sleep
    a_listed, b_progress = threading.Event(), threading.Event()

    def module_roots(path):
        found = real_module_roots(path)
        if threading.current_thread().name == "A" and not a_listed.is_set():
            a_listed.set()
            b_progress.wait(10)  # B publishes (no lock) or waits for A's lock meanwhile
        return found

    def sleep(seconds):
        b_progress.set()  # B is waiting for the index lock A holds
        real_sleep(seconds)

    def refuse_lock(self):
        raise OSError("O_EXCL is not supported here")

    monkeypatch.setattr(registry, "_module_roots", module_roots)
    monkeypatch.setattr(registry, "_sleep", sleep)
    if not lock_works:
        monkeypatch.setattr(registry.LockFile, "try_acquire", refuse_lock)
    errors = []

    def run(name, first_wait=None):
        try:
            if first_wait is not None:
                assert first_wait.wait(10)
            publish(fake_module, root, name=name, validate=fake_validate)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            b_progress.set()

    threads = [threading.Thread(target=run, args=("acme/a",), name="A"),
               threading.Thread(target=run, args=("acme/b", a_listed), name="B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert sorted(_load(os.path.join(root, "index.json"))["modules"]) == ["acme/a", "acme/b"]
    assert check_registry(root) == []
    assert not os.path.exists(os.path.join(root, ".index.lock"))


def test_index_lock_of_a_dead_publisher_is_taken_over(tmp_path, fake_module):
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(30)
    root = tmp_path / "reg"
    root.mkdir()
    (root / ".index.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "id": "d" * 32}))
    assert publish(fake_module, str(root), name="acme/echo", validate=fake_validate)["version"] == 1
    assert _load(root / "index.json")["modules"]["acme/echo"]["versions"] == [1]
    assert not (root / ".index.lock").exists()


@pytest.mark.parametrize("bad", [b"{bad", b"{}", b"[]", b'{"version": 2}', b'{"version": "1"}'])
def test_malformed_manifest_does_not_stop_publishing(tmp_path, fake_module, bad, caplog):
    root = str(tmp_path / "reg")
    good = publish(fake_module, root, name="acme/a", validate=fake_validate)
    with open(os.path.join(root, "acme", "a", "1.json"), "wb") as f:
        f.write(bad)
    with caplog.at_level("WARNING", logger="hubkit.hub"):
        assert publish(fake_module, root, name="acme/b", validate=fake_validate)["version"] == 1
        assert publish(fake_module, root, name="acme/a", validate=fake_validate)["version"] == 2
    assert "Leaving acme/a version 1 out of the indexes" in caplog.text
    modules = _load(os.path.join(root, "index.json"))["modules"]
    assert modules["acme/b"]["versions"] == [1] and modules["acme/a"]["versions"] == [2]
    assert [v["version"] for v in _load(os.path.join(root, "acme", "a", "index.json"))["versions"]] == [2]
    problems = check_registry(root)
    assert len(problems) == 2, problems
    assert "'acme/a/1' is on disk but not listed" in problems[0]
    assert problems[1].startswith("Version 'acme/a/1': Manifest") and ("malformed" in problems[1]
                                                                       or "cannot be read" in problems[1]
                                                                       or "not a JSON object" in problems[1])
    assert good["sha256"] not in "".join(problems)


def test_manifest_version_must_match_its_file_number(tmp_path, fake_module):
    root = str(tmp_path / "reg")
    manifest = publish(fake_module, root, name="acme/a", validate=fake_validate)
    manifest["version"] = True  # a bool is not a version, even though True == 1
    with open(os.path.join(root, "acme", "a", "1.json"), "w") as f:
        json.dump(manifest, f)
    from hubkit.hub import rebuild_indexes

    assert rebuild_indexes(root)["modules"] == {}
    assert any("its 'version' is True, but its file name says 1" in p for p in check_registry(root))


def test_check_registry_reports_malformed_index_entries(tmp_path, fake_module, monkeypatch):
    import hubkit.hub.registry as registry

    root = str(tmp_path / "reg")
    publish(fake_module, root, name="acme/echo", validate=fake_validate)
    index = _load(os.path.join(root, "index.json"))
    index["modules"].update({
        "../../etc": {"versions": [1]},
        "acme/index.json": {"versions": [1]},
        "acme/strange": {"versions": ["1", None, [2]]},
        "acme/nothing": 5,
    })
    index["modules"]["acme/echo"]["versions"] = [1, 0, True]
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f)
    os.makedirs(os.path.join(root, "acme", "strange"))
    with open(os.path.join(root, "acme", "strange", "index.json"), "w") as f:
        json.dump({"versions": [{"version": "1"}, 3]}, f)
    hashed = []
    real_sha256_file = registry.sha256_file
    monkeypatch.setattr(registry, "sha256_file", lambda path: hashed.append(path) or real_sha256_file(path))
    problems = check_registry(root)
    text = "\n".join(problems)
    assert "Root index lists module '../../etc', which is not a valid 'publisher/name'." in text
    assert "Root index lists module 'acme/index.json', which is not a valid" in text
    assert "Root index entry of module 'acme/echo' has malformed 'versions'" in text
    assert "Root index entry of module 'acme/strange' has malformed 'versions'" in text
    assert "Module 'acme/strange' has no readable index.json" in text
    assert "Root index entry of module 'acme/nothing' has malformed 'versions'" in text
    root_real = os.path.realpath(root)
    assert hashed and all(os.path.realpath(p).startswith(root_real + os.sep) for p in hashed)
