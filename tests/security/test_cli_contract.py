"""Class 11: `hubkit download`, `info` and `cache ls` end every failure on hostile input with one line.

Each case runs the real command in a child process (with a time limit) and expects a non-zero exit,
exactly one line on stderr and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.security.hostile import entry, gz, manifest_for, refused_port, tar_bytes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _hubkit(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HUBKIT_PROGRESS": "0", "HUBKIT_RETRIES": "1", "HUBKIT_BACKOFF": "0.01",
                "HUBKIT_LOCK_POLL": "0.05", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", **env}
    return subprocess.run([sys.executable, "-m", "hubkit", *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env=full_env)


def _assert_one_line_failure(out: subprocess.CompletedProcess) -> None:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode not in (0, None), (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("hubkit: error:"), lines[0]


def _chained(count: int) -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    for _ in range(count):
        info = tarfile.TarInfo("././@LongLink")
        info.type = tarfile.GNUTYPE_LONGNAME
        info.size = 10
        out.write(info.tobuf(tarfile.GNU_FORMAT) + b"n" * 10 + b"\0" * 502)
    return out.getvalue() + b"\0" * 1024


@pytest.fixture
def cases(tmp_path, hostile):
    """Hostile handles for `hubkit download` and `hubkit info`, by name."""
    made: dict[str, str] = {}
    fifo = tmp_path / "fifo.tar.gz"
    os.mkfifo(fifo)
    made["fifo-archive"] = str(fifo)
    directory = tmp_path / "dir.tar.gz"
    directory.mkdir()
    made["directory-archive"] = str(directory)
    chained = tmp_path / "chained.tar"
    chained.write_bytes(_chained(3000))
    made["chained-headers"] = str(chained)
    nul = tmp_path / "nul.tgz"
    import tarfile

    info = tarfile.TarInfo("x")
    info.pax_headers = {"path": "graph\0.pb"}
    info.size = 1
    nul.write_bytes(gz(tar_bytes([(info, b"x")])))
    made["nul-name"] = str(nul)
    module = tmp_path / "module"
    module.mkdir()
    (module / "hubkit_module.pb").write_bytes(b"\x08\x01")
    os.mkfifo(module / "graph.pb")
    made["fifo-graph"] = str(module)
    made["refused"] = f"http://127.0.0.1:{refused_port()}/acme/m/1"
    hostile.serve_json("/acme/deep/1.json", b"[" * 100_000 + b"]" * 100_000)
    made["deep-manifest"] = f"{hostile.url}/acme/deep/1"
    archive = gz(tar_bytes([entry("graph.pb", b"x")]))
    hostile.serve_json("/acme/poison/1.json", manifest_for(archive, name="acme/poison", variants=[{"signatures": [1]}]))
    made["poisoned-manifest"] = f"{hostile.url}/acme/poison/1"
    made["credentials"] = f"http://u:S3cret@127.0.0.1:{refused_port()}/m.tar.gz"
    return made


@pytest.mark.parametrize("command", ["download", "info"])
def test_download_and_info_on_hostile_handles(tmp_path, cases, command):
    env = {"HUBKIT_CACHE_DIR": str(tmp_path / "cache")}
    for name, handle in sorted(cases.items()):
        if command == "download" and name == "fifo-graph":
            continue  # a local module directory "downloads" to itself; `info` reads it
        out = _hubkit([command, handle], env)
        _assert_one_line_failure(out)
        assert "S3cret" not in out.stderr, name


@pytest.mark.parametrize("setting", [
    {"HUBKIT_CONNECT_TIMEOUT": "0"}, {"HUBKIT_READ_TIMEOUT": "9" * 5000}, {"HUBKIT_MAX_EXTRACT_BYTES": "-1"},
])
def test_download_with_bad_settings(tmp_path, setting):
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(gz(tar_bytes([])))
    _assert_one_line_failure(_hubkit(["download", f"http://127.0.0.1:{refused_port()}/m.tar.gz"],
                                     {"HUBKIT_CACHE_DIR": str(tmp_path / "cache"), **setting}))


def test_cache_ls_on_a_hostile_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_one_line_failure(_hubkit(["cache", "ls"], {"HUBKIT_CACHE_DIR": str(blocker)}))
    # A cache full of planted junk lists fine (exit 0): nothing in it is trusted or followed.
    cache = tmp_path / "cache"
    key = "a" * 40
    (cache / key / "module").mkdir(parents=True)
    (cache / key / "descriptor.json").write_text("[" * 100_000)
    (cache / key / "complete.json").write_text(json.dumps({"files": {"../../etc/passwd": {"size": 1}}}))
    (cache / ("b" * 40 + ".lock")).mkdir()
    os.mkfifo(cache / ("c" * 40 + ".lock"))
    (cache / ("d" * 40)).mkdir()
    os.mkfifo(cache / ("d" * 40) / "complete.json")
    out = _hubkit(["cache", "ls"], {"HUBKIT_CACHE_DIR": str(cache)})
    assert out.returncode == 0 and "Traceback" not in out.stderr, (out.stdout, out.stderr)


def test_registry_check_reports_a_poisoned_manifest(tmp_path, fake_module):
    from hubkit.hub.registry import publish
    from tests.hub.helpers import fake_validate

    root = tmp_path / "reg"
    publish(fake_module, str(root), "acme/m", validate=fake_validate)
    path = root / "acme" / "m" / "1.json"
    manifest = json.loads(path.read_text())
    manifest["variants"] = [{"tags": [1], "signatures": {}}]
    path.write_text(json.dumps(manifest))
    out = _hubkit(["registry", "check", str(root)], {})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "acme/m/1" in out.stdout and "'variants[0].tags' is [1], not a list of strings" in out.stdout
