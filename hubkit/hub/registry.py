"""Publishing modules into a static registry root, and checking a root for consistency.

Layout of a registry root (plain files, served by any static web server)::

    index.json                       every module: its versions, latest version, description
    index.html                       a human catalog of the same
    <publisher>/<name>/index.json    versions of one module
    <publisher>/<name>/<N>.tar.gz    the module archive (immutable)
    <publisher>/<name>/<N>.json      its manifest: sha256, size, format version, signatures, ...

:func:`publish` writes the archive, then the manifest, then the indexes, each to a temp name then
renamed. Indexes are rebuilt from the manifests on disk under a lock file (``.index.lock``, created
with ``O_EXCL``; see :mod:`hubkit.hub.lock`), and a rebuild re-lists the versions on disk after writing
and starts over if they changed, so concurrent publishes never lose each other's entries (even when a
stale lock was taken over) and a crashed publish is repaired by the next one. A malformed manifest is
left out of the indexes with a warning (and reported by :func:`check_registry`); it never stops
publishing other versions.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import logging
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from hubkit._fileio import atomic_write, synced_temp_file
from hubkit.errors import FormatError, HubkitError, RegistryError
from hubkit.format import FORMAT_VERSION, MARKER_FILE, read_marker
from hubkit.format.bounded_io import read_json_file
from hubkit.hub.gzipstream import GzipMembersWriter, choose_level
from hubkit.hub.handles import (
    is_registry_name_part,
    split_module_name,
)
from hubkit.hub.hashing import sha256_file
from hubkit.hub.lock import LockFile
from hubkit.hub.manifest_schema import manifest_problem

__all__ = ["check_base_url", "check_registry", "pack_module", "publish", "read_manifest", "rebuild_indexes", "summarize_module"]

MIN_HUBKIT_VERSION = {1: "0.1.0"}  # oldest hubkit able to load each format version
_PACK_BUFFER = 1 << 20
_STORE_MIN_SIZE = 1 << 20  # smaller files are always compressed: switching gzip members costs bytes
_SAMPLE_SIZE = 256 << 10
_MANIFEST = re.compile(r"^([1-9][0-9]*)\.json$")
_ARCHIVE = re.compile(r"^([1-9][0-9]*)\.tar\.gz$")
_MAX_JSON_BYTES = 64 << 20  # largest manifest or index read (untrusted: bounded size and depth)
_INDEX_LOCK = ".index.lock"  # a hidden file: static servers configured as in registry/ never serve it
INDEX_LOCK_STALE_AFTER = 120.0  # seconds without progress after which a live holder's index lock is taken over
_LOCK_POLL = 0.05
_MAX_REBUILDS = 10
_sleep = time.sleep  # waiting for the index lock (tests observe it)
_log = logging.getLogger("hubkit.hub")

Validator = Callable[[str], dict[str, Any]]


def _shape_list(shape: Any) -> list[int | None] | None:
    """A static shape as JSON: a list with null for unknown dimensions, or null for unknown rank."""
    from hubkit.graph.shapes import normalize_shape

    normalized = normalize_shape(getattr(shape, "dims", shape))
    return None if normalized is None else list(normalized)


def _info_dict(infos: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for key in sorted(infos):
        info = infos[key]
        dtype = getattr(info, "dtype", None)
        get_shape = getattr(info, "get_shape", None)
        shape = get_shape() if callable(get_shape) else getattr(info, "shape", None)
        result[key] = {"dtype": getattr(dtype, "name", str(dtype)), "shape": _shape_list(shape)}
    return result


def summarize_module(module_dir: str) -> dict[str, Any]:
    """Loads a module directory with the module layer and describes it for a manifest.

    This is the default ``validate`` step of :func:`publish`: a module that does not load is not published.

    Args:
        module_dir: An exported module directory.

    Returns:
        ``{"format_version": int, "variants": [{"tags": [...], "signatures": {name: {"inputs": ..., "outputs": ...}}}]}``
        where inputs and outputs map names to ``{"dtype": str, "shape": list | None}``.

    Raises:
        HubkitError: The module does not load (e.g. ``FormatError``).
    """
    from hubkit.module import load_module_spec  # lazy: the hub layer sits above the module layer

    spec = load_module_spec(module_dir)
    variants = []
    for tags in sorted(spec.get_tags(), key=lambda t: sorted(t)):
        signatures = {}
        for name in sorted(spec.get_signature_names(tags=tags)):
            signatures[name] = {
                "inputs": _info_dict(spec.get_input_info_dict(signature=name, tags=tags)),
                "outputs": _info_dict(spec.get_output_info_dict(signature=name, tags=tags)),
            }
        variants.append({"tags": sorted(tags), "signatures": signatures})
    return {"format_version": read_marker(module_dir).format, "variants": variants}


def _check_name(name: str) -> tuple[str, str]:
    parts = split_module_name(name)
    if parts is None:
        raise RegistryError(
            f"Module name {name!r} is not of the form 'publisher/name' (letters, digits, '.', '_', '-'; "
            "starting with a letter or digit; not ending in '.json', '.html' or '.gz', nor containing '.tmp-')."
        )
    return parts


def _module_files(module_dir: str) -> list[tuple[str, str]]:
    """Returns (archive name, path) for every directory and file, sorted; refuses anything else."""
    entries = []
    for directory, dirnames, filenames in os.walk(module_dir):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, module_dir).replace(os.sep, "/")
            if os.path.islink(path) or not (os.path.isfile(path) or os.path.isdir(path)):
                raise RegistryError(f"Module file {relative!r} in {module_dir!r} is not a regular file or directory.")
            entries.append((relative, path))
    return sorted(entries)


def pack_module(module_dir: str, out: io.BufferedIOBase, compresslevel: int = 6) -> None:
    """Writes a deterministic ``.tar.gz`` of a module directory to ``out``.

    Entries are sorted, with mtime 0, uid/gid 0, no user names and fixed modes (0o755 dirs, 0o644 files);
    gzip headers carry mtime 0 and no file name. The same directory always gives the same bytes.
    Large files that do not compress (weights) are stored rather than deflated, so installing them is
    not held back by decompression (see :mod:`hubkit.hub.gzipstream`), and every large file's data is
    a gzip member of its own, so an installer finds its CRC-32 in that member's trailer. ``tar xzf``,
    ``gzip`` and Python's ``tarfile`` read such multi-member archives like any other.

    Args:
        module_dir: The module directory; its files go to the archive root.
        out: A binary file opened for writing.
        compresslevel: gzip level for compressible data.

    Raises:
        RegistryError: The directory holds a symlink or a special file.
    """
    gz = GzipMembersWriter(out, compresslevel)
    # Mode "w" (not the buffered "w|") writes each entry straight through, so a level switch applies
    # exactly to the file it was chosen for.
    # The tarfile stub lacks the (undocumented) copybufsize and wants a readable, seekable fileobj,
    # which writing never uses.
    with tarfile.open(  # type: ignore[call-overload]
        fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, copybufsize=_PACK_BUFFER
    ) as tar:
        for relative, path in _module_files(module_dir):
            info = tarfile.TarInfo(relative)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if os.path.isdir(path):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            info.mode = 0o644
            info.size = os.path.getsize(path)
            with open(path, "rb") as f:
                if info.size >= _STORE_MIN_SIZE:  # its data in a member of its own, right after its header
                    header = len(info.tobuf(tar.format, tar.encoding, tar.errors))
                    gz.isolate(header, info.size, choose_level(f.read(_SAMPLE_SIZE), compresslevel))
                    f.seek(0)
                tar.addfile(info, f)
    gz.close()


class _HashingWriter(io.RawIOBase):
    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.raw.write(data)


def _write_exclusive(final: str, write: Callable[[Any], None]) -> None:
    """Writes via a temp file, then links it to ``final`` only if ``final`` does not exist yet."""
    with synced_temp_file(final, write) as temp:
        try:
            os.link(temp, final)  # atomic and never overwrites: two publishers cannot both win
        except FileExistsError:
            raise RegistryError(f"{final!r} already exists; published versions are immutable.") from None
        except OSError:
            if os.path.exists(final):
                raise RegistryError(f"{final!r} already exists; published versions are immutable.") from None
            os.replace(temp, final)  # filesystems without hard links


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _published_versions(module_root: str) -> set[int]:
    try:
        names = os.listdir(module_root)
    except FileNotFoundError:
        return set()
    return {int(m[1]) for n in names if (m := _MANIFEST.match(n) or _ARCHIVE.match(n))}


def publish(
    module_dir: str,
    registry_root: str,
    name: str,
    version: int | None = None,
    description: str | None = None,
    *,
    validate: Validator | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Publishes a module directory as ``<registry_root>/<publisher>/<name>/<version>``.

    Validates the module by loading it, packs ``<N>.tar.gz`` deterministically, writes the ``<N>.json``
    manifest, then rebuilds ``<publisher>/<name>/index.json``, the root ``index.json`` and ``index.html``,
    each through a temp file renamed into place.

    Args:
        module_dir: An exported module directory (holding ``hubkit_module.pb``).
        registry_root: The registry's root directory (created if missing).
        name: ``"publisher/name"`` (required: the module's identity in the registry, e.g. ``"acme/text-embedding"``).
        version: A positive integer; defaults to one more than the highest published version.
        description: One line describing the module, shown in the indexes and the catalog; ``None`` (the
            default) keeps the description of the newest published version (empty for a new module).
        validate: Loads and describes the module (see :func:`summarize_module`, the default).
        base_url: The registry's public URL (``https://models.example.org``), recorded in the root index so
            the catalog pages show complete load lines; ``None`` keeps the one recorded before.

    Returns:
        The manifest written.

    Raises:
        RegistryError: Bad name or version, the version exists already, or the module is not valid.
    """
    publisher, short_name = _check_name(name)
    if description is not None and not isinstance(description, str):
        raise RegistryError(f"Description {description!r} is not a string.")
    if base_url is not None:
        base_url = check_base_url(base_url)
    if not os.path.isfile(os.path.join(module_dir, MARKER_FILE)):
        if not os.path.exists(module_dir):
            raise RegistryError(f"Module directory {module_dir!r} does not exist.")
        what = "a file" if not os.path.isdir(module_dir) else f"a directory without {MARKER_FILE!r}"
        raise RegistryError(f"{module_dir!r} is not a hubkit module directory: it is {what}. Publish an exported "
                            "module (hubkit.Module(spec).export(path), or hubkit.export_model_as_module(model, path)).")
    validate = validate or summarize_module
    try:
        summary = validate(module_dir)
    except HubkitError as exc:
        raise RegistryError(f"Module {module_dir!r} does not load, so it cannot be published: {exc}") from exc
    module_root = os.path.join(registry_root, publisher, short_name)
    existing = _published_versions(module_root)
    if version is None:
        version = max(existing, default=0) + 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RegistryError(f"Version {version!r} is not a positive integer.")
    if version in existing:
        raise RegistryError(f"Module {name!r} version {version} is already published in {registry_root!r}; "
                            f"versions are immutable (published: {sorted(existing)}).")
    if description is None:
        description = _previous_description(module_root, existing)
    os.makedirs(module_root, exist_ok=True)
    archive_path = os.path.join(module_root, f"{version}.tar.gz")
    digest: dict[str, Any] = {}

    def write_archive(f: Any) -> None:
        writer = _HashingWriter(f)
        pack_module(module_dir, writer)  # type: ignore[arg-type]
        digest.update(sha256=writer.hasher.hexdigest(), size=writer.size)

    _write_exclusive(archive_path, write_archive)
    from hubkit._version import __version__

    format_version = int(summary.get("format_version", FORMAT_VERSION))
    manifest = {
        "name": name,
        "version": version,
        "archive": f"{version}.tar.gz",
        "sha256": digest["sha256"],
        "size": digest["size"],
        "format_version": format_version,
        "min_hubkit_version": MIN_HUBKIT_VERSION.get(format_version, __version__),
        "producer": f"hubkit {__version__}",
        "description": description,
        "published_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "variants": summary.get("variants", []),
    }
    problem = manifest_problem(manifest, name, version)  # the schema readers apply, checked on write too
    if problem is not None:
        os.unlink(archive_path)
        raise RegistryError(f"Module {module_dir!r} would get a malformed manifest: {problem}.")
    try:
        _write_exclusive(os.path.join(module_root, f"{version}.json"), lambda f: f.write(_dump(manifest)))
    except RegistryError:
        os.unlink(archive_path)
        raise
    rebuild_indexes(registry_root, base_url=base_url)
    return manifest


def _previous_description(module_root: str, versions: set[int]) -> str:
    """The description of the newest readable manifest among ``versions`` ("" when there is none)."""
    for number in sorted(versions, reverse=True):
        try:
            previous = read_manifest(os.path.join(module_root, f"{number}.json")).get("description")
        except RegistryError:
            continue
        if isinstance(previous, str):
            return previous
    return ""


_BASE_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")


def check_base_url(url: str) -> str:
    """Returns a registry's public URL without a trailing slash, or raises if it is not a plain http(s) URL.

    >>> check_base_url("https://models.example.org/hub/")
    'https://models.example.org/hub'

    Raises:
        RegistryError: Not ``http(s)://host[:port][/path]`` (no credentials, query, fragment or spaces).
    """
    if not isinstance(url, str) or not _BASE_URL.fullmatch(url):
        raise RegistryError(f"Base URL {url!r} is not of the form 'https://host[:port][/path]' "
                            "(no credentials, query string or fragment).")
    return url.rstrip("/")


def _recorded_base_url(registry_root: str) -> str | None:
    """The base URL a previous rebuild recorded in the root index, if it is still a valid one."""
    index = read_json_file(os.path.join(registry_root, "index.json"), _MAX_JSON_BYTES, default=None, follow_links=True)
    try:  # a regular file only (a FIFO planted in a writable registry would block every publish), bounded
        value = index.get("base_url") if isinstance(index, dict) else None
        return check_base_url(value) if isinstance(value, str) else None
    except HubkitError:
        return None


def read_manifest(path: str) -> dict[str, Any]:
    """Reads a ``<N>.json`` manifest.

    Raises:
        RegistryError: The file is missing or is not a JSON object.
    """
    try:
        value = read_json_file(path, _MAX_JSON_BYTES, "Manifest", follow_links=True)
    except FormatError as exc:
        raise RegistryError(str(exc)) from None
    if not isinstance(value, dict):
        raise RegistryError(f"Manifest {path!r} is not a JSON object.")
    return value


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _manifest_problem(manifest: dict[str, Any], name: str, number: int) -> str | None:
    """What makes a manifest unfit for the indexes and the catalog, or ``None`` if it is fit (one schema)."""
    return manifest_problem(manifest, name, number)


def _load_manifest(module_root: str, name: str, number: int) -> dict[str, Any]:
    """Reads and checks the manifest of version ``number`` of module ``name``.

    Raises:
        RegistryError: The manifest is unreadable or does not describe that version of that module.
    """
    path = os.path.join(module_root, f"{number}.json")
    manifest = read_manifest(path)
    problem = _manifest_problem(manifest, name, number)
    if problem is not None:
        raise RegistryError(f"Manifest {path!r} is malformed: {problem}.")
    return manifest


def _complete_versions(module_root: str) -> list[int]:
    """Versions whose manifest and archive both exist (a publish in progress or crashed has only one)."""
    return sorted(
        number for number in _published_versions(module_root)
        if os.path.isfile(os.path.join(module_root, f"{number}.json"))
        and os.path.isfile(os.path.join(module_root, f"{number}.tar.gz"))
    )


def _listing(registry_root: str) -> dict[str, list[int]]:
    return {name: _complete_versions(module_root) for name, module_root in _module_roots(registry_root)}


@contextlib.contextmanager
def _index_lock(registry_root: str) -> Iterator[LockFile | None]:
    """Holds ``<root>/.index.lock`` while the indexes are rebuilt; yields the lock (``None`` if unsupported)."""
    lock = LockFile(os.path.join(registry_root, _INDEX_LOCK), INDEX_LOCK_STALE_AFTER)
    waiting_logged = False
    while True:
        try:
            if lock.try_acquire():
                break
        except OSError as exc:  # e.g. no O_EXCL: go on, the re-listing after writing still converges
            _log.warning("Could not create lock %s (%s); rebuilding the indexes without it.", lock.path, exc)
            yield None
            return
        if lock.take_over_if_stale() is not None:
            continue
        if not waiting_logged:
            _log.warning("Waiting for lock %s held by %r (another publish is rebuilding the indexes).",
                         lock.path, lock.holder())
            waiting_logged = True
        _sleep(_LOCK_POLL)
    try:
        yield lock
    finally:
        lock.release()


def _module_roots(registry_root: str) -> list[tuple[str, str]]:
    roots = []
    for publisher in sorted(os.listdir(registry_root)):
        publisher_dir = os.path.join(registry_root, publisher)
        if not is_registry_name_part(publisher) or not os.path.isdir(publisher_dir):
            continue
        for name in sorted(os.listdir(publisher_dir)):
            if is_registry_name_part(name) and os.path.isdir(os.path.join(publisher_dir, name)):
                roots.append((f"{publisher}/{name}", os.path.join(publisher_dir, name)))
    return roots


def rebuild_indexes(registry_root: str, base_url: str | None = None) -> dict[str, Any]:
    """Rewrites every module ``index.json``, the root ``index.json`` and ``index.html`` from the manifests.

    Runs under the registry's index lock, and starts over when the versions on disk changed while it
    wrote (a publish whose lock wait was cut short), so the indexes written last list every version
    whose publish finished. Versions with a malformed manifest are left out with a warning.

    Args:
        registry_root: The registry root directory.
        base_url: The registry's public URL to record (see :func:`publish`); ``None`` keeps the recorded one.

    Returns:
        The root index written.
    """
    base_url = check_base_url(base_url) if base_url is not None else None
    with _index_lock(registry_root) as lock:
        base_url = base_url or _recorded_base_url(registry_root)
        for _ in range(_MAX_REBUILDS):
            listed, root_index = _rebuild_once(registry_root, lock, base_url)
            if _listing(registry_root) == listed:
                break
    return root_index


def _rebuild_once(
    registry_root: str, lock: LockFile | None, base_url: str | None
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """One rebuild: returns the complete versions it saw on disk and the root index it wrote."""
    from hubkit.hub.catalog import render_catalog, render_module_page

    listed: dict[str, list[int]] = {}
    modules: dict[str, Any] = {}
    manifests: dict[str, list[dict[str, Any]]] = {}
    for name, module_root in _module_roots(registry_root):
        if lock is not None:
            lock.touch()
        versions = []
        listed[name] = _complete_versions(module_root)
        for number in listed[name]:
            try:
                versions.append(_load_manifest(module_root, name, number))
            except RegistryError as exc:
                _log.warning("Leaving %s version %d out of the indexes: %s", name, number, exc)
        if not versions:
            continue
        entries = [
            {k: m.get(k) for k in ("version", "sha256", "size", "description", "published_at", "format_version")}
            for m in versions
        ]
        latest = versions[-1]
        atomic_write(os.path.join(module_root, "index.json"),
                       _dump({"name": name, "latest": latest["version"], "versions": entries}))
        atomic_write(os.path.join(module_root, "index.html"),
                     render_module_page(name, versions, base_url).encode("utf-8"))
        modules[name] = {
            "latest": latest["version"],
            "versions": [m["version"] for m in versions],
            "description": latest.get("description", ""),
        }
        manifests[name] = versions
    root_index: dict[str, Any] = {"format": "hubkit-registry", "format_version": 1, "modules": modules}
    if base_url:
        root_index["base_url"] = base_url
    atomic_write(os.path.join(registry_root, "index.json"), _dump(root_index))
    atomic_write(os.path.join(registry_root, "index.html"), render_catalog(manifests, base_url).encode("utf-8"))
    return listed, root_index


def check_registry(registry_root: str) -> list[str]:
    """Checks that every index entry resolves and every archive matches its manifest.

    Args:
        registry_root: A registry root directory.

    Returns:
        One sentence per problem found; empty when the registry is consistent.
    """
    problems: list[str] = []
    index_path = os.path.join(registry_root, "index.json")
    try:
        root_index = read_json_file(index_path, _MAX_JSON_BYTES, "Root index", follow_links=True)
        modules = root_index["modules"]
        if not isinstance(modules, dict):
            raise TypeError("'modules' is not an object")
    except (FormatError, KeyError, TypeError) as exc:
        return [f"Root index {index_path!r} is missing or malformed: {exc}."]
    on_disk = dict(_module_roots(registry_root))
    for name in sorted(set(on_disk) - set(modules)):
        problems.append(f"Module directory {name!r} is not listed in the root index.json.")
    checked: set[tuple[str, int]] = set()
    for name in sorted(modules):
        if split_module_name(name) is None:  # never joined into a path: it could point outside the root
            problems.append(f"Root index lists module {name!r}, which is not a valid 'publisher/name'.")
            continue
        module_root = os.path.join(registry_root, *name.split("/"))
        entry = modules[name]
        listed = _version_numbers(entry.get("versions") if isinstance(entry, dict) else None)
        if listed is None:
            problems.append(f"Root index entry of module {name!r} has malformed 'versions'; "
                            "expected a list of positive integers.")
            listed = []
        module_versions = _module_index_versions(module_root)
        if module_versions is None:
            problems.append(f"Module {name!r} has no readable index.json (a list of versions, each with a "
                            "positive integer 'version').")
            module_versions = []
        if sorted(module_versions) != sorted(listed):
            problems.append(f"Module {name!r}: root index lists versions {sorted(listed)}, "
                            f"its index.json lists {sorted(module_versions)}.")
        for number in sorted(set(listed) | set(module_versions)):
            problems.extend(_check_version(name, module_root, number))
            checked.add((name, number))
    for name, module_root in sorted(on_disk.items()):
        for number in _complete_versions(module_root):
            if (name, number) not in checked:
                problems.append(f"Version {name + '/' + str(number)!r} is on disk but not listed in the indexes.")
                problems.extend(_check_version(name, module_root, number))
    return problems


def _version_numbers(value: Any) -> list[int] | None:
    """``value`` if it is a list of positive integers, else ``None``."""
    if not isinstance(value, list) or not all(_is_positive_int(v) for v in value):
        return None
    return value


def _module_index_versions(module_root: str) -> list[int] | None:
    """The versions a module's ``index.json`` lists, or ``None`` if it is missing or malformed."""
    try:
        entries = read_json_file(os.path.join(module_root, "index.json"), _MAX_JSON_BYTES, follow_links=True)["versions"]
    except (FormatError, KeyError, TypeError):
        return None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return None
    return _version_numbers([e.get("version") for e in entries])


def _check_version(name: str, module_root: str, number: int) -> list[str]:
    label = f"{name}/{number}"
    try:
        manifest = _load_manifest(module_root, name, number)
    except RegistryError as exc:
        return [f"Version {label!r}: {exc}"]
    archive = os.path.join(module_root, f"{number}.tar.gz")
    try:
        digest, size = sha256_file(archive)
    except OSError:
        return [f"Version {label!r}: archive {archive!r} is missing."]
    problems = []
    if size != manifest.get("size"):
        problems.append(f"Version {label!r}: archive has {size} bytes, manifest says {manifest.get('size')!r}.")
    if digest != manifest.get("sha256"):
        problems.append(f"Version {label!r}: archive sha256 {digest} does not match the manifest.")
    return problems
