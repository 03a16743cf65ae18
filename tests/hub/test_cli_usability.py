"""The hubkit command as a new user meets it: --version, help on every argument, info on a registry module,
publish --check (and scripts/publish.py printing the same line), plurals, registry check over HTTP, and
one-line errors for hostile input."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

import hubkit
from hubkit.cli import build_parser, main
from hubkit.hub.registry import publish
from tests.hub.helpers import REPO, fake_validate


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubkit", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, **(env or {})})


def assert_one_line_failure(status: int, err: str) -> None:
    assert status not in (0, None), err
    assert err.startswith("hubkit: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"hubkit {hubkit.__version__}")


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_argument_has_help():
    for parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._SubParsersAction, argparse._HelpAction)):
                continue
            assert action.help, f"{parser.prog}: {action.dest} has no help text"


def test_info_on_a_module_without_version_lists_versions(hub_env, fake_module, registry_root, server_factory, capsys,
                                                        monkeypatch):
    import hubkit.cli as cli
    import hubkit.hub as hub

    monkeypatch.setattr(hub, "summarize_module", fake_validate)
    monkeypatch.setattr(cli, "_variables", lambda module_dir: [])  # the fake module's weights are no safetensors
    publish(fake_module, registry_root, name="acme/echo", validate=fake_validate)  # version 2, same description
    server = server_factory(registry_root)
    for handle in (f"{server.url}/acme/echo", f"{server.url}/acme/echo/", f"{server.url}/acme/echo/index.html",
                   os.path.join(registry_root, "acme", "echo")):
        assert main(["info", handle]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "description: An echo module." in out and "2 versions:" in out and "latest: 2" in out
        assert "/acme/echo/2" in out and " B " in out
        assert out.rstrip().endswith('/acme/echo/2")' if handle.startswith("http") else '/acme/echo/2.tar.gz")')
    for handle in (f"{server.url}/acme/echo/2", os.path.join(registry_root, "acme", "echo", "2.tar.gz")):
        assert main(["info", handle]) == 0
        out = capsys.readouterr().out
        assert "description: An echo module." in out and "sha256 " in out and "signature 'default'" in out
    assert main(["info", "file://" + os.path.join(registry_root, "acme", "echo", "2")]) == 1
    assert "Its archive '" in capsys.readouterr().err


def test_resolve_errors_lead_with_the_fixed_handle(hub_env, registry_server, capsys):
    base = registry_server.url
    cases = {
        f"{base}/acme/echo": f"Handle '{base}/acme/echo' has no version; registry handles look like",
        f"{base}/acme/echo/1.json": f"names a manifest, not a module; use '{base}/acme/echo/1'",
        f"{base}/acme/echo/index.html": "The latest version is 1",
        f"{base}/index.html": f"names a registry or a page, not a module; .* serves '{base}/acme/echo/1'",
        f"{base}/acme/echo/latest": f"asks for 'latest', but registry handles pin a version .* use '{base}/acme/echo/1'",
    }
    for handle, expected in cases.items():
        assert main(["download", handle]) == 1
        err = capsys.readouterr().err
        assert_one_line_failure(1, err)
        assert __import__("re").search(expected, err), err
        assert err.index("LocalArchiveResolver") > err.index("Handle ")  # the fix first, the resolvers last


def test_local_file_and_registry_directory_say_what_they_are(hub_env, registry_root, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["info", str(text)]) == 1
    assert "is a file, not a module" in capsys.readouterr().err
    assert main(["info", registry_root]) == 1
    err = capsys.readouterr().err
    assert "is a registry root, not a module" in err and "hubkit registry serve" in err


def _tiny_module_fn():
    x = hubkit.placeholder(hubkit.float32, [None, 3], name="x")
    hubkit.add_signature(inputs=x, outputs=x * 2.0)


def test_publish_check_and_the_script_print_the_same_line(hub_env, tmp_path, capsys):
    fake_module = str(tmp_path / "tiny")
    hubkit.Module(hubkit.create_module_spec(_tiny_module_fn)).export(fake_module)
    root = str(tmp_path / "reg")
    assert main(["publish", fake_module, root, "--name", "acme/echo", "--check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("published acme/echo version 1 (") and out[0].endswith(f") to {root}")
    assert out[1].startswith(f"Registry {root!r} is consistent")
    script = subprocess.run([sys.executable, "scripts/publish.py", fake_module, root, "--name", "acme/other",
                             "--description", "x", "--check"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert script.returncode == 0, script.stderr
    assert script.stdout.splitlines()[0].startswith("published acme/other version 1 (")
    again = subprocess.run([sys.executable, "scripts/publish.py", fake_module, root, "--name", "acme/other",
                            "--version", "1"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert_one_line_failure(again.returncode, again.stderr)


def test_plurals(hub_env, registry_server, capsys):
    assert main(["download", f"{registry_server.url}/acme/echo/1"]) == 0
    assert main(["cache", "verify"]) == 0
    assert "1 cache entry verified" in capsys.readouterr().out
    assert main(["cache", "prune", "--all"]) == 0
    assert "1 item removed" in capsys.readouterr().out


def test_registry_check_over_http(hub_env, registry_root, server_factory, capsys):
    server = server_factory(registry_root)
    assert main(["registry", "check", server.url]) == 0
    assert "is consistent (indexes and manifests; --deep" in capsys.readouterr().out
    assert main(["registry", "check", "--deep", server.url + "/"]) == 0
    assert "is consistent (indexes, manifests and archives)" in capsys.readouterr().out
    archive = os.path.join(registry_root, "acme", "echo", "1.tar.gz")
    with open(archive, "r+b") as f:
        f.seek(40)
        f.write(b"\xff")
    assert main(["registry", "check", server.url]) == 0  # only --deep reads archives
    capsys.readouterr()
    assert main(["registry", "check", "--deep", server.url]) == 1
    captured = capsys.readouterr()
    assert "'acme/echo/1': archive sha256" in captured.out and captured.err.count("\n") == 1
    os.truncate(archive, 10)
    assert main(["registry", "check", "--deep", server.url]) == 1
    assert "acme/echo/1" in capsys.readouterr().out
    manifest_path = os.path.join(registry_root, "acme", "echo", "1.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["sha256"] = "nope"
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    assert main(["registry", "check", server.url]) == 1
    assert "manifest is malformed" in capsys.readouterr().out
    os.unlink(os.path.join(registry_root, "index.json"))
    assert main(["registry", "check", server.url]) == 1
    assert "Root index" in capsys.readouterr().out
    assert main(["registry", "check", "http://127.0.0.1:9"]) == 1  # nothing listens on the discard port
    assert "cannot be read" in capsys.readouterr().out


HOSTILE_ARGS = [
    ["info", "\x00"],
    ["info", "x" * 5000],
    ["info", "https://[::1"],
    ["info", "file://remote.example/x"],
    ["info", "/dev/null"],
    ["download", "http://127.0.0.1:9/acme/echo/1"],
    ["download", "https://example.invalid/acme/echo/1.json\n<script>"],
    ["cache", "rm", "\x00"],
    ["cache", "rm", "https://nowhere.example/x/y/1"],
    ["registry", "check", "/dev/null"],
    ["registry", "check", "\x00"],
    ["registry", "check", "ftp://x"],
    ["registry", "latest", "\x00"],
    ["registry", "latest", "http://127.0.0.1:9/acme/echo"],
    ["registry", "serve", "/dev/null"],
    ["publish", "/dev/null", "reg", "--name", "acme/x"],
    ["publish", ".", "reg", "--name", "../../etc"],
    ["publish", ".", "reg", "--name", "acme/x", "--base-url", "javascript:alert(1)"],
]


@pytest.mark.parametrize("args", HOSTILE_ARGS, ids=lambda a: " ".join(a)[:40].encode("unicode_escape").decode())
def test_hostile_arguments_fail_in_one_line(args, hub_env, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_one_line_failure(main(args), capsys.readouterr().err)


@pytest.mark.parametrize("env", [
    {"HUBKIT_CACHE_DIR": "/dev/null/cache"},
    {"HUBKIT_RETRIES": "many"},
    {"HUBKIT_CONNECT_TIMEOUT": "nan"},
])
def test_hostile_environment_fails_in_one_line(env, hub_env, monkeypatch, capsys):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert_one_line_failure(main(["cache", "ls"]), capsys.readouterr().err)


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    import hubkit.cli as cli

    def broken(args):
        raise ValueError("line one\nline two")

    parser = build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["cache"]._subparsers._group_actions[0].choices["ls"].set_defaults(
        run=broken)
    assert_one_line_failure(main(["cache", "ls"]), err := capsys.readouterr().err)
    assert "unexpected ValueError: line one line two" in err and "HUBKIT_TRACEBACK=1" in err
    monkeypatch.setenv("HUBKIT_TRACEBACK", "1")
    with pytest.raises(ValueError):
        main(["cache", "ls"])


def test_errors_in_a_real_process_are_one_line(hub_env, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (["info", str(fifo)], ["info", "\x7f\x1b[31mred"], ["registry", "check", str(tmp_path)]):
        result = run_cli(*args)
        assert_one_line_failure(result.returncode, result.stderr)


def _plant_hostile_cache(cache: str) -> None:
    os.makedirs(cache, exist_ok=True)
    bad = {
        "a" * 40: b"[" * 100_000 + b"]" * 100_000,   # deeply nested JSON
        "b" * 40: b"\xff\xfe not json at all",
        "c" * 40: b'"just a string"',
        "d" * 40: b'{"handle": {"nested": 1}, "fetched_at": 12}',
        "e" * 40: b'{"handle": "x\\n\\u001b[31mred", "fetched_at": "\\u0000"}',
    }
    for key, descriptor in bad.items():
        os.makedirs(os.path.join(cache, key, "module"), exist_ok=True)
        with open(os.path.join(cache, key, "descriptor.json"), "wb") as f:
            f.write(descriptor)
        with open(os.path.join(cache, key, "complete.json"), "wb") as f:
            f.write(descriptor)
    with open(os.path.join(cache, "f" * 40 + ".lock"), "wb") as f:
        f.write(b'{"host": "../../../../etc", "pid": "-1", "token": "' + b"A" * 10_000 + b'"}')
    victim = os.path.join(os.path.dirname(cache), "victim")
    os.makedirs(victim, exist_ok=True)
    with open(os.path.join(victim, "keep.txt"), "w") as f:
        f.write("mine")
    os.symlink(victim, os.path.join(cache, "0" * 40))


@pytest.mark.parametrize("args", [["cache", "ls"], ["cache", "verify"], ["cache", "rm", "x"], ["cache", "prune"],
                                  ["download", "/nonexistent"]])
def test_hostile_cache_contents_never_give_a_traceback(args, hub_env, tmp_path):
    _plant_hostile_cache(hub_env.cache_dir)
    result = run_cli(*args, env={"HUBKIT_CACHE_DIR": hub_env.cache_dir}, timeout=120)
    assert "Traceback" not in result.stderr
    if result.returncode:
        assert_one_line_failure(result.returncode, result.stderr)
    assert os.path.isfile(os.path.join(os.path.dirname(hub_env.cache_dir), "victim", "keep.txt"))  # nothing outside


def test_hostile_server_documents_never_give_a_traceback(hub_env, tmp_path, server_factory, capsys):
    root = tmp_path / "hostile"
    module_dir = root / "acme" / "echo"
    module_dir.mkdir(parents=True)
    (root / "index.json").write_text('{"modules": {"acme/echo": {"latest": 1, "versions": [true, 0, -3]}}}')
    (module_dir / "index.json").write_text('{"versions": [{"version": true}, {"version": "1"}, {"version": -3}]}')
    (module_dir / "1.json").write_text('{"sha256": "' + "0" * 64 + '", "size": 10, "min_hubkit_version": "'
                                       + "9" * 5000 + '"}')
    (module_dir / "2.json").write_bytes(b"[" * 50_000 + b"]" * 50_000)
    server = server_factory(str(root))
    for args in (["info", f"{server.url}/acme/echo"], ["download", f"{server.url}/acme/echo/1"],
                 ["download", f"{server.url}/acme/echo/2"], ["registry", "check", "--deep", server.url],
                 ["registry", "latest", f"{server.url}/acme/echo"], ["info", f"{server.url}/index.html"]):
        status = main(args)
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        if args[0] != "registry" or args[1] != "latest":  # its version filter is issue 13's class 8 (resolvers.py)
            assert status != 0 and captured.err.count("\n") == 1, (args, captured)


def test_undecodable_arguments_fail_in_one_line(hub_env):
    for env in ({}, {"LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": "ascii"}):
        result = subprocess.run([sys.executable.encode(), b"-m", b"hubkit", b"info", b"/nowhere/\xff\xfe\xe2\x98\x83"],
                                capture_output=True, timeout=60, cwd=REPO, env={**os.environ, **env})
        assert result.returncode == 1 and result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr
        assert result.stderr.startswith(b"hubkit: error: Module directory '/nowhere/")
