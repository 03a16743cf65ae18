"""The ``hubkit`` command line: inspect, download and cache modules, publish and serve registries.

Every command exits 0 on success and non-zero on failure with one line on stderr (no traceback;
``HUBKIT_TRACEBACK=1`` shows one for an unexpected error).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from hubkit.errors import HubkitError
from hubkit.hub.handles import redact_url

__all__ = ["main"]


class _CliError(Exception):
    """A failure worth one line on stderr and exit status 1."""


def _format_bytes(count: Any) -> str:
    from hubkit.hub.sizes import format_size

    return format_size(count)


def _count(number: int, noun: str, plural: str | None = None) -> str:
    """``1 entry``, ``2 entries``, ``0 problems``."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _variables(module_dir: str) -> list[tuple[str, str, list[int], int]]:
    """(name, safetensors dtype code, shape, bytes) of every stored variable, read from the store's headers only."""
    from hubkit.format.safetensors_io import VARIABLES_DIR, dtype_code, read_store_index

    variables_dir = os.path.join(module_dir, VARIABLES_DIR)
    if not os.path.isdir(variables_dir):
        return []
    entries = read_store_index(variables_dir)
    return sorted((name, dtype_code(e.dtype), list(e.shape), e.end - e.begin) for name, e in entries.items())


def _registry_module(handle: str) -> str | None:
    """The handle as a registry module's location (no version) if it names one, else ``None``."""
    from hubkit.hub.handles import is_archive_name, is_url, registry_parts
    from hubkit.hub.resolvers import MODULE_MARKERS

    if handle.lower().startswith(("http://", "https://")):
        base = handle.split("#", 1)[0].rstrip("/")
        if base.endswith(("/index.json", "/index.html")):
            base = base.rsplit("/", 1)[0]
        if registry_parts(base) is None and not is_archive_name(base) and not base.endswith(".json"):
            return base
        return None
    if is_url(handle) and not handle.lower().startswith("file://"):
        return None
    from hubkit.hub.handles import local_path
    from hubkit.hub.remote_registry import read_registry_json

    path = local_path(handle)
    if not os.path.isfile(os.path.join(path, "index.json")) or any(
            os.path.isfile(os.path.join(path, m)) for m in MODULE_MARKERS):
        return None
    try:
        index = read_registry_json(os.path.join(path, "index.json"))
    except HubkitError:
        return None
    return path if isinstance(index, dict) and isinstance(index.get("versions"), list) else None


def _print_versions(location: str) -> int:
    from hubkit.hub.catalog import _published
    from hubkit.hub.remote_registry import versions_of

    versions, _ = versions_of(location)
    latest = versions[-1]
    print(f"Module {location!r} (a registry module: pick a version)")
    if latest.get("description"):
        print(f"  description: {latest['description']}")
    print(f"  {_count(len(versions), 'version')}:")
    for entry in versions:
        print(f"    {entry['version']:>4}  {_format_bytes(entry.get('size')):>8}  "
              f"published {_published(entry.get('published_at'))}  sha256 {entry.get('sha256', '?')}")
    print(f"  latest: {latest['version']}")
    pinned = f"{location.rstrip('/')}/{latest['version']}"
    if not location.lower().startswith(("http://", "https://")):
        pinned += ".tar.gz"  # a registry on this machine: its archives load directly
    print(f'  load it with: hubkit.Module("{pinned}")')
    return 0


def _cache_manifest(module_dir: str) -> dict[str, Any]:
    """The registry manifest recorded beside a cached module's directory ({} for anything else)."""
    import json

    try:
        with open(os.path.join(os.path.dirname(module_dir), "descriptor.json"), "rb") as f:
            descriptor = json.loads(f.read(1 << 20).decode("utf-8"))
        manifest = descriptor.get("manifest") if os.path.basename(module_dir) == "module" else None
    except (OSError, ValueError, AttributeError, RecursionError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _manifest_beside(handle: str) -> dict[str, Any]:
    """The manifest next to a local registry archive (``.../acme/echo/2.tar.gz`` -> ``2.json``), else {}."""
    from hubkit.hub.handles import is_url, local_path
    from hubkit.hub.remote_registry import read_registry_json

    if is_url(handle) and not handle.lower().startswith("file://"):
        return {}
    path = local_path(handle.split("#", 1)[0])
    if not path.endswith(".tar.gz") or not os.path.isfile(path[: -len(".tar.gz")] + ".json"):
        return {}
    try:
        manifest = read_registry_json(path[: -len(".tar.gz")] + ".json")
    except HubkitError:
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _print_plans(args: argparse.Namespace, module_dir: str) -> int:
    """``hubkit info HANDLE --plan``: the optimised plan of one signature (or of each)."""
    from hubkit.module.module import Module
    from hubkit.runtime.plan_report import describe_module_plan

    if args.batch is not None and args.batch < 1:
        raise _CliError(f"--batch must be at least 1, got {args.batch}.")
    tags = [t for t in (args.tags or "").split(",") if t]
    module = Module(module_dir, tags=tags or None)
    names = [args.signature] if args.signature is not None else module.get_signature_names()
    for i, name in enumerate(names):
        print(("\n" if i else "") + describe_module_plan(module, name, args.batch))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from hubkit.hub import resolve, summarize_module

    if args.plan or args.signature is not None or args.batch is not None or args.tags is not None:
        if not args.plan:
            raise _CliError("--signature, --tags and --batch go with --plan.")
        print(f"Module {redact_url(args.handle)!r}")
        return _print_plans(args, resolve(args.handle))
    registry_module = _registry_module(args.handle)
    if registry_module is not None:
        return _print_versions(registry_module)
    module_dir = resolve(args.handle)
    print(f"Module {redact_url(args.handle)!r}")
    manifest = _cache_manifest(module_dir) or _manifest_beside(args.handle)
    if isinstance(manifest.get("description"), str) and manifest["description"]:
        print(f"  description: {manifest['description']}")
    if manifest:
        from hubkit.hub.catalog import _published

        print(f"  published: {_published(manifest.get('published_at'))}, archive "
              f"{_format_bytes(manifest.get('size'))}, sha256 {manifest.get('sha256', '?')}")
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
    print(f"Cache {cache.root}: {_count(len(entries), 'entry', 'entries')}")
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
        raise _CliError(f"Handle {redact_url(args.handle)!r} is not in the cache {cache.root!r}.")
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
    print(f"{_count(len(removed), 'item')} removed")
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
        raise _CliError(f"{_count(len(problems), 'problem')} in {_count(count, 'cache entry', 'cache entries')}; "
                        "`hubkit cache rm HANDLE` or `hubkit cache prune --verify` removes the broken entries.")
    print(f"{_count(count, 'cache entry', 'cache entries')} verified, all intact")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from hubkit.hub import publish

    manifest = publish(args.module_dir, args.root, name=args.name, version=args.version,
                       description=args.description, base_url=args.base_url)
    print(f"published {manifest['name']} version {manifest['version']} "
          f"({_format_bytes(manifest['size'])}, sha256 {manifest['sha256']}) to {args.root}")
    if args.check:
        _check_root(args.root, deep=True)
    return 0


def _check_root(root: str, deep: bool) -> None:
    from hubkit.hub import check_registry
    from hubkit.hub.remote_registry import check_remote_registry

    if root.lower().startswith(("http://", "https://")):
        problems = check_remote_registry(root, deep=deep)
    elif not os.path.isdir(root):
        raise _CliError(f"Registry root {root!r} is not a directory (nor an http(s):// URL).")
    else:
        problems = check_registry(root)  # local archives are always hashed: reading them is cheap
    for problem in problems:
        print(problem)
    if problems:
        raise _CliError(f"Registry {root!r} has {_count(len(problems), 'problem')}.")
    checked = "indexes, manifests and archives" if deep or not root.lower().startswith("http") else (
        "indexes and manifests; --deep also downloads and hashes every archive")
    print(f"Registry {root!r} is consistent ({checked})")


def _cmd_registry_check(args: argparse.Namespace) -> int:
    _check_root(args.root, deep=args.deep)
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


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``hubkit publish`` (also used by ``scripts/publish.py``)."""
    parser.add_argument("module_dir", metavar="MODULE_DIR", help="an exported module directory")
    parser.add_argument("root", metavar="ROOT", help="the registry root directory (created if missing)")
    parser.add_argument("--name", required=True, help="publisher/name, e.g. acme/text-embedding")
    parser.add_argument("--version", type=int, default=None, help="a positive integer (default: the next one)")
    parser.add_argument("--description", default=None,
                        help="one line for the indexes and the catalog (default: the previous version's)")
    parser.add_argument("--base-url", default=None, metavar="URL",
                        help="the URL the root is served at, so the catalog shows complete load lines "
                             "(remembered for later publishes)")
    parser.add_argument("--check", action="store_true", help="verify the whole registry afterwards")


def _is_tf1(module_dir: str) -> bool:
    from hubkit.importers import detect_format

    return detect_format(module_dir) == "tf1"


def _cmd_convert(args: argparse.Namespace) -> int:
    from hubkit.module.convert import convert

    print(convert(args.src, args.dst))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of the ``hubkit`` command."""
    from hubkit import __version__

    parser = argparse.ArgumentParser(
        prog="hubkit", description="Use, cache and publish hubkit modules.",
        epilog="A HANDLE is a module directory, a .tar.gz archive (path, file:// or http(s):// URL, optionally "
               "with #sha256=HEX) or a registry version URL such as https://models.example.org/acme/echo/2.")
    parser.add_argument("--version", action="version", version=f"hubkit {__version__} (distribution hubkit-ml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="show a module's description, signatures, inputs, outputs and "
                                            "variables; for a registry module without a version, its versions")
    info.add_argument("handle", metavar="HANDLE",
                      help="a module handle, or a registry module without a version (.../<publisher>/<name>)")
    info.add_argument("--plan", action="store_true",
                      help="print the optimised plan each signature runs: steps, fused epilogues, in-place writes")
    info.add_argument("--signature", metavar="S", help="with --plan: only this signature")
    info.add_argument("--tags", metavar="T1,T2", help="with --plan: the graph variant's tags (default: none)")
    info.add_argument("--batch", metavar="N", type=int,
                      help="with --plan: run once on zeros of batch N and print each step's output size")
    info.set_defaults(run=_cmd_info)

    convert = commands.add_parser("convert", help="write a TF1 Hub module, ONNX model or module as a hubkit module")
    convert.add_argument("src", metavar="SRC", help="the module to convert: a directory, archive or handle")
    convert.add_argument("dst", metavar="DST", help="the hubkit module directory to write (must not exist, or be empty)")
    convert.set_defaults(run=_cmd_convert)

    download = commands.add_parser("download", help="fetch a module into the cache and print its directory")
    download.add_argument("handle", metavar="HANDLE", help="the module to fetch (an archive or registry version URL)")
    download.set_defaults(run=_cmd_download)

    cache = commands.add_parser("cache", help="inspect and maintain the module cache").add_subparsers(
        dest="cache_command", required=True, metavar="ACTION")
    cache.add_parser("ls", help="list cache entries").set_defaults(run=_cmd_cache_ls)
    rm = cache.add_parser("rm", help="remove the entry of a handle")
    rm.add_argument("handle", metavar="HANDLE", help="the handle the entry was fetched for (as `cache ls` shows it)")
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
    add_publish_arguments(publish)
    publish.set_defaults(run=_cmd_publish)

    registry = commands.add_parser("registry", help="check, serve or query a registry").add_subparsers(
        dest="registry_command", required=True, metavar="ACTION")
    check = registry.add_parser("check", help="verify indexes, manifests and archives (read-only)")
    check.add_argument("root", metavar="ROOT", help="a registry root directory or http(s):// URL")
    check.add_argument("--deep", action="store_true",
                       help="over http(s): also download every archive and check its size and sha256 "
                            "(a local root's archives are always checked)")
    check.set_defaults(run=_cmd_registry_check)
    latest = registry.add_parser("latest", help="print the newest version handle of .../<publisher>/<name>")
    latest.add_argument("url", metavar="URL", help="a registry module without a version, e.g. "
                                                   "https://models.example.org/acme/echo")
    latest.set_defaults(run=_cmd_registry_latest)
    serve = registry.add_parser("serve", help="serve a registry root on 127.0.0.1 (development only)")
    serve.add_argument("root", metavar="ROOT", help="the registry root directory to serve")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port 0-65535 (0: any free port)")
    serve.set_defaults(run=_cmd_registry_serve)
    export_onnx = commands.add_parser("export-onnx", help="write a module's signature as an ONNX model")
    export_onnx.add_argument("handle", help="the module to export: a directory, archive or registry URL")
    export_onnx.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write (large weights go beside it)")
    export_onnx.add_argument("--signature", default="default", help="the signature to export (default: default)")
    export_onnx.add_argument("--opset", type=int, default=None, help="ONNX opset of the default domain")
    export_onnx.set_defaults(run=_cmd_export_onnx)
    return parser


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from hubkit.exporters import export_onnx

    print(export_onnx(args.handle, args.out, signature=args.signature, opset=args.opset))
    return 0


def _silence_stdout() -> None:
    """Points stdout at the null device, so the interpreter's final flush of a closed pipe is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no real file (a test's capture): nothing to flush at exit
        pass


class _PrintableOnly:
    """A text stream that writes control characters (other than newlines and tabs) as ``?``.

    Everything a command prints passes through it, so a handle, a manifest's description or a planted cache
    record cannot send terminal escape sequences to the user's terminal.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if not text.isprintable():
            text = "".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in text)
        return int(self._stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


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
        with contextlib.redirect_stdout(_PrintableOnly(sys.stdout)):  # type: ignore[type-var]
            status = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit where it cannot be handled
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except (HubkitError, _CliError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.strerror or exc} ({exc.filename!r})" if exc.filename else str(exc))
    except KeyboardInterrupt:
        print("hubkit: interrupted", file=sys.stderr)
        return 130
    except (RecursionError, MemoryError) as exc:
        _fail(f"the input is too large or too deeply nested ({type(exc).__name__}).")
    except Exception as exc:  # the contract: one line, never a traceback (HUBKIT_TRACEBACK=1 shows it)
        if os.environ.get("HUBKIT_TRACEBACK") == "1":
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (a hubkit bug: please report it with the command; "
              "HUBKIT_TRACEBACK=1 shows where it happened).")
    return 1


def _fail(message: str) -> None:
    """Prints ``message`` as one line on stderr (newlines and control characters from outside become spaces)."""
    line = "".join(ch if ch.isprintable() else " " for ch in message)
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    line = line.encode(encoding, "backslashreplace").decode(encoding)  # undecodable bytes from argv, say
    with contextlib.suppress(OSError, ValueError):  # stderr is gone too: the exit status still says it
        print(f"hubkit: error: {line}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
