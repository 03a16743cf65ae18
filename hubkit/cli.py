"""The ``hubkit`` command line: inspect, download and cache modules, publish and serve registries.

Every command exits 0 on success and non-zero on failure with one line on stderr (no traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from hubkit.errors import HubkitError

__all__ = ["main"]


class _CliError(Exception):
    """A failure worth one line on stderr and exit status 1."""


def _format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover


def _variables(module_dir: str) -> list[tuple[str, str, list[int], int]]:
    """(name, safetensors dtype code, shape, bytes) of every stored variable, read from the store's headers only."""
    from hubkit.format.safetensors_io import VARIABLES_DIR, dtype_code, read_store_index

    variables_dir = os.path.join(module_dir, VARIABLES_DIR)
    if not os.path.isdir(variables_dir):
        return []
    entries = read_store_index(variables_dir)
    return sorted((name, dtype_code(e.dtype), list(e.shape), e.end - e.begin) for name, e in entries.items())


def _cmd_info(args: argparse.Namespace) -> int:
    from hubkit.hub import resolve, summarize_module

    module_dir = resolve(args.handle)
    print(f"Module {args.handle!r}")
    print(f"  directory: {module_dir}")
    if _is_tf1(module_dir):
        from hubkit.importers.tf1.info import describe_tf1_module

        print("\n".join(describe_tf1_module(module_dir)))
        return 0
    summary = summarize_module(module_dir)
    print(f"  format version: {summary['format_version']}")
    for variant in summary["variants"]:
        print(f"  tags {{{', '.join(variant['tags'])}}}:")
        for name, signature in variant["signatures"].items():
            print(f"    signature {name!r}")
            for kind in ("inputs", "outputs"):
                for key, info in signature[kind].items():
                    shape = "<unknown>" if info["shape"] is None else str(info["shape"])
                    print(f"      {kind[:-1]:6} {key}: {info['dtype']} {shape}")
    variables = _variables(module_dir)
    total = sum(v[3] for v in variables)
    print(f"  variables: {len(variables)}, {_format_bytes(total)}")
    for name, dtype, dims, size in variables:
        print(f"    {name}: {dtype} {dims} ({_format_bytes(size)})")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from hubkit.hub import resolve

    print(resolve(args.handle))
    return 0


def _cache() -> Any:
    from hubkit.hub import Cache, HubConfig

    return Cache(HubConfig.from_env())


def _cmd_cache_ls(args: argparse.Namespace) -> int:
    cache = _cache()
    entries = list(cache.entries())
    print(f"Cache {cache.root}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    for entry in entries:
        state = "complete" if entry.complete else "INCOMPLETE"
        fetched = entry.descriptor.get("fetched_at", "?")
        print(f"  {entry.key}  {_format_bytes(entry.size):>9}  {fetched}  {state}  {entry.handle}")
    return 0


def _cache_handles(handle: str) -> set[str]:
    """The handles a cache entry for ``handle`` may record: normalised, and as its resolver records it."""
    from hubkit.hub import normalize_handle
    from hubkit.hub.resolvers import default_resolvers

    names = {normalize_handle(handle)}
    for resolver in default_resolvers():
        if resolver.is_supported(handle):
            cache_handle = getattr(resolver, "cache_handle", None)
            if callable(cache_handle):
                names.add(cache_handle(handle))
            break
    return names


def _cmd_cache_rm(args: argparse.Namespace) -> int:
    cache = _cache()
    wanted = _cache_handles(args.handle)
    matches = [e for e in cache.entries() if e.handle in wanted]
    if not matches:
        raise _CliError(f"Handle {args.handle!r} is not in the cache {cache.root!r}.")
    for entry in matches:
        cache.remove(entry.key)
        print(f"removed {entry.path}")
    return 0


def _cmd_cache_prune(args: argparse.Namespace) -> int:
    from hubkit.hub.resolvers import LocalArchiveResolver

    cache = _cache()
    removed = cache.prune(everything=args.all)
    local_archives = LocalArchiveResolver(cache.config)
    for entry in cache.entries():
        # A local archive's entry is keyed by its size and mtime: once the file changed (or is gone) no
        # resolve can hit the entry again. With --verify, entries whose files were modified go too.
        stale = local_archives.is_supported(entry.handle) and local_archives.is_stale(entry.handle, entry.key)
        if stale or (args.verify and cache.verify(entry)):
            cache.remove(entry.key)
            removed.append(entry.path)
    for path in removed:
        print(f"removed {path}")
    print(f"{len(removed)} item(s) removed")
    return 0


def _cmd_cache_verify(args: argparse.Namespace) -> int:
    cache = _cache()
    problems = []
    count = 0
    for entry in cache.entries():
        count += 1
        problems.extend(cache.verify(entry))
    for problem in problems:
        print(problem)
    if problems:
        raise _CliError(f"{len(problems)} problem(s) in {count} cache entries; `hubkit cache rm HANDLE` or "
                        "`hubkit cache prune --verify` removes the broken entries.")
    print(f"{count} cache entries verified, all intact")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from hubkit.hub import publish

    manifest = publish(args.module_dir, args.root, name=args.name, version=args.version, description=args.description)
    print(f"published {manifest['name']} version {manifest['version']} "
          f"({_format_bytes(manifest['size'])}, sha256 {manifest['sha256']}) to {args.root}")
    return 0


def _cmd_registry_check(args: argparse.Namespace) -> int:
    from hubkit.hub import check_registry

    problems = check_registry(args.root)
    for problem in problems:
        print(problem)
    if problems:
        raise _CliError(f"Registry {args.root!r} has {len(problems)} problem(s).")
    print(f"Registry {args.root!r} is consistent")
    return 0


def _cmd_registry_latest(args: argparse.Namespace) -> int:
    from hubkit.hub import registry_latest

    print(registry_latest(args.url))
    return 0


def _cmd_registry_serve(args: argparse.Namespace) -> int:
    from hubkit.hub.serve import make_server

    if not os.path.isdir(args.root):
        raise _CliError(f"Registry root {args.root!r} is not a directory.")
    try:
        server = make_server(args.root, port=args.port)
    except (OSError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _CliError(f"Cannot serve on 127.0.0.1:{args.port}: {reason}.") from None
    host, port = server.server_address[:2]
    assert isinstance(host, str)  # an AF_INET address is (str, int); the stub allows bytes for other families
    print(f"Serving registry {args.root} at http://{host}:{port}/ (development server; Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _port(text: str) -> int:
    """An argparse type: a TCP port number 0-65535 (0 picks a free port)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; 0 picks a free port)")
    return port


def _is_tf1(module_dir: str) -> bool:
    from hubkit.importers import detect_format

    return detect_format(module_dir) == "tf1"


def _cmd_convert(args: argparse.Namespace) -> int:
    from hubkit.module.convert import convert

    print(convert(args.src, args.dst))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of the ``hubkit`` command."""
    parser = argparse.ArgumentParser(prog="hubkit", description="Use, cache and publish hubkit modules.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="show a module's signatures, inputs, outputs and variables")
    info.add_argument("handle")
    info.set_defaults(run=_cmd_info)

    convert = commands.add_parser("convert", help="write a TF1 Hub module, ONNX model or module as a hubkit module")
    convert.add_argument("src", metavar="SRC")
    convert.add_argument("dst", metavar="DST")
    convert.set_defaults(run=_cmd_convert)

    download = commands.add_parser("download", help="fetch a module into the cache and print its directory")
    download.add_argument("handle")
    download.set_defaults(run=_cmd_download)

    cache = commands.add_parser("cache", help="inspect and maintain the module cache").add_subparsers(
        dest="cache_command", required=True, metavar="ACTION")
    cache.add_parser("ls", help="list cache entries").set_defaults(run=_cmd_cache_ls)
    rm = cache.add_parser("rm", help="remove the entry of a handle")
    rm.add_argument("handle")
    rm.set_defaults(run=_cmd_cache_rm)
    prune = cache.add_parser("prune", help="remove incomplete entries, entries of changed local archives, "
                                           "leftovers and stale locks")
    prune.add_argument("--all", action="store_true", help="remove every entry")
    prune.add_argument("--verify", action="store_true",
                       help="also re-hash every entry and remove those with modified files (slow)")
    prune.set_defaults(run=_cmd_cache_prune)
    cache.add_parser("verify", help="re-hash every entry against its completion record").set_defaults(
        run=_cmd_cache_verify)

    publish = commands.add_parser("publish", help="publish a module directory into a registry root")
    publish.add_argument("module_dir")
    publish.add_argument("root")
    publish.add_argument("--name", required=True, help="publisher/name")
    publish.add_argument("--version", type=int, default=None, help="default: the next integer")
    publish.add_argument("--description", default="")
    publish.set_defaults(run=_cmd_publish)

    registry = commands.add_parser("registry", help="check or serve a registry root").add_subparsers(
        dest="registry_command", required=True, metavar="ACTION")
    check = registry.add_parser("check", help="verify indexes, manifests and archives")
    check.add_argument("root")
    check.set_defaults(run=_cmd_registry_check)
    latest = registry.add_parser("latest", help="print the newest version handle of .../<publisher>/<name>")
    latest.add_argument("url")
    latest.set_defaults(run=_cmd_registry_latest)
    serve = registry.add_parser("serve", help="serve a registry root on 127.0.0.1 (development only)")
    serve.add_argument("root")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port 0-65535 (0: any free port)")
    serve.set_defaults(run=_cmd_registry_serve)
    return parser


def _silence_stdout() -> None:
    """Points stdout at the null device, so the interpreter's final flush of a closed pipe is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no real file (a test's capture): nothing to flush at exit
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``hubkit`` command.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 on failure, 2 on bad usage (argparse), 130 on Ctrl-C, 141
        (128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe) when the reader
        of stdout went away, as in ``hubkit info URL | head -3``; nothing is printed then.
    """
    args = build_parser().parse_args(argv)  # argparse itself ignores a closed pipe for --help and usage
    try:
        status = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit where it cannot be handled
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except (HubkitError, _CliError) as exc:
        print(f"hubkit: error: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"hubkit: error: {exc.strerror or exc} ({exc.filename!r})" if exc.filename else f"hubkit: error: {exc}",
              file=sys.stderr)
    except KeyboardInterrupt:
        print("hubkit: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
