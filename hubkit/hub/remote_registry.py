"""Reading a registry from where it is served: module indexes (for ``hubkit info`` and for errors that say
which version to use) and ``hubkit registry check`` of an ``http(s)://`` root.

Everything here only ever GETs the registry's static files; nothing is written anywhere but a private
temp file (``--deep`` downloads each archive once to hash it, then deletes it).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import urllib.parse
from typing import Any

from hubkit.errors import FormatError, HubkitError, RegistryError
from hubkit.format.bounded_io import read_json_file
from hubkit.hub.config import HubConfig
from hubkit.hub.handles import is_registry_name_part, is_url, local_path, split_module_name

__all__ = ["check_remote_registry", "handle_advice", "read_registry_json", "versions_of"]

_MAX_LOCAL_DOCUMENT = 16 << 20
_MAX_LISTED = 5


def _quick(config: HubConfig) -> HubConfig:
    """Settings for a look that only improves a message: no retries, short timeouts."""
    return dataclasses.replace(config, retries=0, connect_timeout=min(config.connect_timeout, 5.0),
                               read_timeout=min(config.read_timeout, 10.0), progress=False)


def read_registry_json(location: str, config: HubConfig | None = None) -> Any:
    """Reads one registry document (an index or a manifest) over HTTP(S), from a ``file://`` URL or a path.

    Raises:
        HubkitError: It cannot be fetched or read, or is not JSON (``DownloadError``, ``ResolveError``,
            ``RegistryError``).
    """
    config = config or HubConfig.from_env()
    if location.lower().startswith(("http://", "https://")):
        from hubkit.hub.http import HttpClient

        client = HttpClient(config)
        try:
            return client.get_json(location)
        finally:
            client.close()
    path = local_path(location)
    try:  # a regular file only (a FIFO would block), bounded in size and nesting
        return read_json_file(path, _MAX_LOCAL_DOCUMENT, "Registry document", follow_links=True)
    except FormatError as exc:
        raise RegistryError(str(exc)) from None


def versions_of(module_url: str, config: HubConfig | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The version entries of ``<module_url>/index.json`` (oldest first) and the index itself.

    Raises:
        HubkitError: The index cannot be read or lists no versions.
    """
    index_url = module_url.rstrip("/") + "/index.json"
    index = read_registry_json(index_url, config)
    entries = index.get("versions") if isinstance(index, dict) else None
    versions = sorted(
        (e for e in entries or [] if isinstance(e, dict) and type(e.get("version")) is int and e["version"] > 0),
        key=lambda e: e["version"],
    )
    if not versions:
        raise RegistryError(f"Module index {index_url!r} lists no versions.")
    return versions, index


def _split_url(handle: str) -> tuple[str, list[str]] | None:
    parts = urllib.parse.urlsplit(handle)
    if parts.scheme.lower() not in ("http", "https") or parts.query or parts.fragment:
        return None
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return base, [p for p in parts.path.split("/") if p]


def _latest_sentence(module_url: str, config: HubConfig) -> str:
    try:
        versions, _ = versions_of(module_url, _quick(config))
    except (HubkitError, OSError, ValueError) as exc:
        return (f" Its index could not be read ({exc}); `hubkit info {module_url}` or "
                "hubkit.registry_latest(url) lists the versions once it can be.")
    numbers = [v["version"] for v in versions]
    return f" The latest version is {numbers[-1]}: use {module_url + '/' + str(numbers[-1])!r} (published: {numbers})."


def handle_advice(handle: str, config: HubConfig | None = None) -> str | None:
    """What an ``http(s)://`` handle that no resolver takes should look like, with the latest version when known.

    Covers a registry module without a version (``.../acme/echo``), its files (``.../acme/echo/2.json``,
    ``.../acme/echo/index.json`` or ``index.html``) and the registry's own pages (``.../index.html``).
    Returns ``None`` for other handles. Reads at most one index, without retries (nothing when offline).
    Credentials in the handle never appear in the advice.
    """
    advice = _advice(handle, config)
    netloc = urllib.parse.urlsplit(handle).netloc if advice and "@" in handle else ""
    if "@" in netloc:
        advice = advice.replace(netloc.rpartition("@")[0] + "@", "***@")  # type: ignore[union-attr]
    return advice


def _advice(handle: str, config: HubConfig | None) -> str | None:
    split = _split_url(handle.strip())
    if split is None:
        return None
    config = config or HubConfig.from_env()
    base, segments = split
    shape = "registry handles look like 'https://host/<publisher>/<name>/<version>'"
    last = segments[-1] if segments else ""
    if last.endswith(".json") and last[:-5].isdigit() and len(segments) >= 3:
        fixed = "/".join([base, *segments[:-1], last[:-5]])
        return f"Handle {handle!r} names a manifest, not a module; use {fixed!r} ({shape})."
    if last in ("index.json", "index.html"):
        segments = segments[:-1]
    elif last.endswith((".json", ".html")):
        return f"Handle {handle!r} names a file of a registry, not a module; {shape}."
    if last.isdigit():  # a version, but 0 or with leading zeros: the generic message says it is no handle
        return None
    if last.lower() == "latest" and len(segments) >= 3:
        module_url = "/".join([base, *segments[:-1]])
        advice = (f"Handle {handle!r} asks for 'latest', but registry handles pin a version ({shape}), so a "
                  "model never changes under you.")
        return advice + ("" if config.offline else _latest_sentence(module_url, config))
    if len(segments) >= 2 and all(is_registry_name_part(p) for p in segments[-2:]):
        module_url = "/".join([base, *segments])
        advice = f"Handle {handle!r} has no version; {shape}, e.g. {module_url + '/1'!r}."
        return advice + ("" if config.offline else _latest_sentence(module_url, config))
    root_url = "/".join([base, *segments])
    advice = f"Handle {handle!r} names a registry or a page, not a module; {shape}."
    if config.offline:
        return advice
    try:
        index = read_registry_json(root_url + "/index.json", _quick(config))
    except (HubkitError, OSError, ValueError):
        return advice
    modules = index.get("modules") if isinstance(index, dict) else None
    if not isinstance(modules, dict):
        return advice
    names = sorted(n for n in modules if split_module_name(n))
    listed = [f"{root_url}/{n}/{modules[n]['latest']}" for n in names[:_MAX_LISTED]
              if isinstance(modules[n], dict) and type(modules[n].get("latest")) is int]
    if listed:
        more = f" and {len(names) - len(listed)} more" if len(names) > len(listed) else ""
        advice += f" That registry serves {', '.join(repr(u) for u in listed)}{more}."
    return advice


def check_remote_registry(root_url: str, deep: bool = False, config: HubConfig | None = None) -> list[str]:
    """Checks a registry served over HTTP(S) (or any root ``read_registry_json`` reads), by GET requests only.

    Reads the root ``index.json``, every module's ``index.json`` and every version's manifest, and checks
    that they agree; with ``deep``, downloads every archive once into a temp file and checks its size and
    sha256 against the manifest.

    Args:
        root_url: The registry root, e.g. ``https://models.example.org``.
        deep: Also download and hash every archive.
        config: Hub settings (timeouts, retries); defaults to :meth:`HubConfig.from_env`.

    Returns:
        One sentence per problem found; empty when the registry is consistent.
    """
    from hubkit.hub.registry import _manifest_problem  # one definition of a well-formed manifest

    config = config or HubConfig.from_env()
    root_url = root_url.rstrip("/")
    try:
        root_index = read_registry_json(f"{root_url}/index.json", config)
    except HubkitError as exc:
        return [f"Root index {root_url + '/index.json'!r} cannot be read: {exc}"]
    modules = root_index.get("modules") if isinstance(root_index, dict) else None
    if not isinstance(modules, dict):
        return [f"Root index {root_url + '/index.json'!r} has no 'modules' object."]
    problems: list[str] = []
    for name in sorted(modules, key=str):
        if split_module_name(name) is None:  # never joined into a URL: it could point anywhere
            problems.append(f"Root index lists module {name!r}, which is not a valid 'publisher/name'.")
            continue
        module_url = f"{root_url}/{name}"
        entry = modules[name]
        listed = entry.get("versions") if isinstance(entry, dict) else None
        if not isinstance(listed, list) or not all(type(v) is int and v > 0 for v in listed):
            problems.append(f"Root index entry of module {name!r} has malformed 'versions'; "
                            "expected a list of positive integers.")
            listed = []
        try:
            versions, _ = versions_of(module_url, config)
            numbers = [v["version"] for v in versions]
        except HubkitError as exc:
            problems.append(f"Module {name!r}: {exc}")
            numbers = []
        if sorted(numbers) != sorted(listed):
            problems.append(f"Module {name!r}: root index lists versions {sorted(listed)}, "
                            f"its index.json lists {sorted(numbers)}.")
        for number in sorted(set(numbers) | set(listed)):
            label = f"{name}/{number}"
            try:
                manifest = read_registry_json(f"{module_url}/{number}.json", config)
            except HubkitError as exc:
                problems.append(f"Version {label!r}: manifest cannot be read: {exc}")
                continue
            problem = _manifest_problem(manifest, name, number) if isinstance(manifest, dict) else "not an object"
            if problem is not None:
                problems.append(f"Version {label!r}: manifest is malformed: {problem}.")
                continue
            if deep:
                problems.extend(_check_archive(f"{module_url}/{number}.tar.gz", label, manifest, config))
    return problems


def _check_archive(url: str, label: str, manifest: dict[str, Any], config: HubConfig) -> list[str]:
    from hubkit.hub.http import HttpClient

    if not is_url(url) or not url.lower().startswith(("http://", "https://")):
        from hubkit.hub.hashing import sha256_file

        try:
            digest, size = sha256_file(local_path(url))
        except OSError:
            return [f"Version {label!r}: archive {url!r} is missing."]
    else:
        client = HttpClient(dataclasses.replace(config, progress=False))
        with tempfile.TemporaryDirectory(prefix="hubkit-check-") as temp:
            try:
                result = client.download(url, os.path.join(temp, "archive"), expected_size=manifest["size"])
            except HubkitError as exc:
                return [f"Version {label!r}: archive cannot be downloaded: {exc}"]
            finally:
                client.close()
        digest, size = result.sha256, result.size
    problems = []
    if size != manifest["size"]:
        problems.append(f"Version {label!r}: archive has {size} bytes, manifest says {manifest['size']}.")
    if digest != manifest["sha256"]:
        problems.append(f"Version {label!r}: archive sha256 {digest} does not match the manifest.")
    return problems


def local_dir_advice(path: str) -> str | None:
    """For a local directory that is not a module: what it is instead (a registry root or module), and what to load.

    Returns ``None`` when it is neither.
    """
    index_path = os.path.join(path, "index.json")
    if not os.path.isfile(index_path):
        return None
    try:
        index = read_registry_json(index_path)
    except HubkitError:
        return None
    if not isinstance(index, dict):
        return None
    if isinstance(index.get("modules"), dict):
        return (f"Directory {path!r} is a registry root, not a module; load a module version's archive "
                f"('{path}/<publisher>/<name>/<N>.tar.gz') or serve the root (`hubkit registry serve {path}`) "
                "and load 'http://127.0.0.1:8000/<publisher>/<name>/<N>'.")
    latest = index.get("latest")
    if type(latest) is int and os.path.isfile(os.path.join(path, f"{latest}.tar.gz")):
        archive = os.path.join(path, f"{latest}.tar.gz")
        return (f"Directory {path!r} is a registry module, not a module version; load one version's archive, "
                f"e.g. the latest: {archive!r}.")
    return None
