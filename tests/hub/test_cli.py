"""The hubkit command line: each command, exit codes, one-line errors without tracebacks."""

import os
import subprocess
import sys
import urllib.request

import pytest

from hubkit.cli import main
from tests.hub.helpers import REPO, free_port


def test_download_and_cache_commands(hub_env, registry_server, capsys):
    handle = f"{registry_server.url}/acme/echo/1"
    assert main(["download", handle]) == 0
    path = capsys.readouterr().out.strip()
    assert os.path.isfile(os.path.join(path, "hubkit_module.pb"))
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert "1 entry" in out and handle in out and "complete" in out
    assert main(["cache", "verify"]) == 0
    assert "all intact" in capsys.readouterr().out
    with open(os.path.join(path, "graph.pb"), "r+b") as f:
        f.write(b"Z")
    assert main(["cache", "verify"]) == 1
    captured = capsys.readouterr()
    assert "modified file 'graph.pb'" in captured.out and captured.err.count("\n") == 1
    assert main(["cache", "rm", handle]) == 0
    assert main(["cache", "rm", handle]) == 1
    assert "is not in the cache" in capsys.readouterr().err
    assert main(["cache", "prune", "--all"]) == 0


def test_publish_check_and_latest(hub_env, fake_module, tmp_path, capsys, monkeypatch):
    import hubkit.hub.registry as registry
    from tests.hub.helpers import fake_validate

    monkeypatch.setattr(registry, "summarize_module", fake_validate)
    root = str(tmp_path / "reg")
    assert main(["publish", fake_module, root, "--name", "acme/echo", "--description", "d"]) == 0
    assert "published acme/echo version 1" in capsys.readouterr().out
    assert main(["publish", fake_module, root, "--name", "acme/echo", "--version", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hubkit: error: Module 'acme/echo' version 1 is already published") and err.count("\n") == 1
    assert main(["registry", "check", root]) == 0
    assert "consistent" in capsys.readouterr().out
    os.truncate(os.path.join(root, "acme", "echo", "1.tar.gz"), 10)
    assert main(["registry", "check", root]) == 1
    captured = capsys.readouterr()
    assert "'acme/echo/1': archive has 10 bytes" in captured.out and "problem" in captured.err
    assert main(["registry", "latest", f"file://{root}/acme/echo"]) == 0
    assert capsys.readouterr().out.strip() == f"file://{root}/acme/echo/1"


def test_errors_are_one_line_without_traceback(hub_env, tmp_path):
    result = subprocess.run([sys.executable, "-m", "hubkit", "download", str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.startswith("hubkit: error: Module directory") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["cache", "frobnicate"])
    assert info.value.code == 2


def test_registry_serve_binds_localhost(registry_root, hub_env):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "hubkit", "registry", "serve", registry_root, "--port", str(port)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/acme/echo/1.json", timeout=5) as response:
            assert response.headers["Content-Type"] == "application/json"
        request = urllib.request.Request(f"http://127.0.0.1:{port}/acme/echo/1.tar.gz", headers={"Range": "bytes=2-9"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 206 and len(response.read()) == 8
            assert "immutable" in response.headers["Cache-Control"]
    finally:
        process.terminate()
        process.wait(10)


def test_info_prints_variables(hub_env, fake_module, capsys, monkeypatch):
    import json
    import struct

    import hubkit.hub as hub

    header = json.dumps({"dense/kernel": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 24]}}).encode()
    with open(os.path.join(fake_module, "variables", "variables.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + bytes(24))
    from tests.hub.helpers import fake_validate

    monkeypatch.setattr(hub, "summarize_module", fake_validate)
    assert main(["info", fake_module]) == 0
    out = capsys.readouterr().out
    assert "signature 'default'" in out and "input  default: float32 [None, 3]" in out
    assert "dense/kernel: F32 [3, 2] (24 B)" in out and "variables: 1, 24 B" in out



@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_registry_serve_rejects_bad_ports(registry_root, port, capsys):
    with pytest.raises(SystemExit) as info:
        main(["registry", "serve", registry_root, "--port", port])
    assert info.value.code == 2
    assert f"{port!r} is not a port number (0-65535" in capsys.readouterr().err


def test_registry_serve_port_in_use_is_one_line(registry_root):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "hubkit", "registry", "serve", registry_root, "--port", str(port)],
                                capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"hubkit: error: Cannot serve on 127.0.0.1:{port}: ") and result.stderr.count("\n") == 1


def test_cache_rm_finds_local_archive_entries_however_named(hub_env, registry_root, capsys):
    from hubkit.hub import resolve

    archive = os.path.join(registry_root, "acme", "echo", "1.tar.gz")
    for spelling in (f"file://{archive}", archive, os.path.relpath(archive)):
        resolve(f"file://{archive}")
        assert main(["cache", "rm", spelling]) == 0, spelling
        assert capsys.readouterr().out.startswith("removed ")
        assert main(["cache", "ls"]) == 0 and "0 entries" in capsys.readouterr().out


def test_cache_prune_drops_entries_of_changed_local_archives(hub_env, registry_root, registry_server, capsys):
    from hubkit.hub import resolve

    archive = os.path.join(registry_root, "acme", "echo", "1.tar.gz")
    first = resolve(archive)
    remote = resolve(f"{registry_server.url}/acme/echo/1")
    assert main(["cache", "prune"]) == 0 and "0 items removed" in capsys.readouterr().out
    stat = os.stat(archive)
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # replaced in place: a new entry
    second = resolve(archive)
    assert second != first
    assert main(["cache", "prune"]) == 0
    out = capsys.readouterr().out
    assert os.path.dirname(first) in out and "1 item removed" in out
    assert os.path.isdir(second) and os.path.isdir(remote) and not os.path.exists(first)
    os.unlink(archive)  # gone: its entry can never be hit again
    assert main(["cache", "prune"]) == 0 and "1 item removed" in capsys.readouterr().out
    assert not os.path.exists(second) and os.path.isdir(remote)


def test_cache_verify_points_to_commands_that_remove_modified_entries(hub_env, registry_server, capsys):
    handle = f"{registry_server.url}/acme/echo/1"
    assert main(["download", handle]) == 0
    path = capsys.readouterr().out.strip()
    with open(os.path.join(path, "graph.pb"), "r+b") as f:  # same size: the entry still looks complete
        f.write(b"Z")
    assert main(["cache", "verify"]) == 1
    err = capsys.readouterr().err
    assert "`hubkit cache rm HANDLE` or `hubkit cache prune --verify`" in err and "`hubkit cache prune` " not in err
    assert main(["cache", "prune"]) == 0 and "0 items removed" in capsys.readouterr().out
    assert main(["cache", "prune", "--verify"]) == 0 and "1 item removed" in capsys.readouterr().out
    assert not os.path.exists(path)
    assert main(["cache", "verify"]) == 0


def _run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """Runs ``hubkit args`` with stdout a pipe whose reader is already closed (``hubkit ... | head``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # before the start, so every write fails: no race with a reader
    try:
        return subprocess.run([sys.executable, "-m", "hubkit", *args], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60, cwd=REPO)
    finally:
        os.close(write_end)


@pytest.mark.parametrize(("args", "status"), [(["info"], 141), (["--help"], 0)])  # argparse ignores it for --help
def test_closed_stdout_pipe_exits_quietly(args, status, hub_env, tmp_path):
    import hubkit as hk

    def module_fn():
        x = hk.placeholder(hk.float32, [None, 3], name="x")
        hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 2, name="dense"))

    module_dir = str(tmp_path / "module")
    hk.Module(hk.create_module_spec(module_fn)).export(module_dir)
    args = [*args, module_dir] if args == ["info"] else args
    ok = subprocess.run([sys.executable, "-m", "hubkit", *args], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert ok.returncode == 0 and ok.stdout.count("\n") >= 3 and ok.stderr == ""  # output that `head -3` would cut

    result = _run_into_closed_pipe(*args)
    assert (result.returncode, result.stderr) == (status, "")


def test_info_refuses_a_corrupt_variables_file_in_one_line(hub_env, fake_module, capsys, monkeypatch):
    import hubkit.hub as hub
    from tests.hub.helpers import fake_validate

    with open(os.path.join(fake_module, "variables", "variables.safetensors"), "wb") as f:
        f.write(b"\xff" * 12)  # a header length far beyond the file
    monkeypatch.setattr(hub, "summarize_module", fake_validate)
    assert main(["info", fake_module]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hubkit: error: Variables file ") and "variables.safetensors" in err
    assert "header length" in err and err.count("\n") == 1
