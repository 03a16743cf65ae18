"""Asset files: registering them while defining a module, naming them in ``assets/``, checking them on load.

A graph refers to an asset only through an ``AssetPath`` node (see :mod:`hubkit.ops.assets`) whose
``filename`` is the name inside ``assets/``; the stored graph never holds an absolute path. When a
module is loaded, each node's ``source`` is set to ``<module dir>/assets/<filename>``, so the module
keeps working when its directory moves or the original file is deleted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

from hubkit.errors import FormatError, GraphError
from hubkit.graph import Tensor, get_default_graph
from hubkit.ops.registry import apply

__all__ = ["ASSETS_DIR", "ASSET_FILEPATHS", "add_asset", "assign_filenames", "check_asset_filename", "copy_assets"]

ASSETS_DIR = "assets"
ASSET_FILEPATHS = "asset_filepaths"


def add_asset(path: str | os.PathLike, name: str | None = None) -> Tensor:
    """Registers a file as an asset of the graph being built and returns its path as a string scalar.

    Export copies the file into the module's ``assets/``; the returned tensor always holds the
    current absolute path of the module's copy (feed it to ops that read files, such as
    vocabulary tables).

    Args:
        path: an existing regular file.
        name: node name (default ``"asset_path"``).

    Raises:
        GraphError: the file does not exist or is not a regular file.
    """
    source = os.path.abspath(os.fspath(path))
    if not os.path.isfile(source):
        raise GraphError(f"Asset {os.fspath(path)!r} is not an existing file.")
    graph = get_default_graph()
    t = apply("AssetPath", filename=os.path.basename(source), source=source, name=name or "asset_path")
    graph.add_to_collection(ASSET_FILEPATHS, t)
    return t


def check_asset_filename(filename: str, where: str) -> None:
    """Refuses asset names that are not a plain file name inside ``assets/``."""
    if (
        not filename
        or filename in (".", "..")
        or "/" in filename
        or "\\" in filename
        or "\0" in filename
        or os.path.isabs(filename)
    ):
        raise FormatError(f"{where}: the asset name {filename!r} is not a plain file name inside {ASSETS_DIR}/.")


def assign_filenames(sources: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Gives each source file a distinct name in ``assets/``: source path -> filename.

    ``sources`` are ``(source path, preferred name)`` pairs in a stable order; the same source twice
    gets one name, and a clash of preferred names appends ``_1``, ``_2``, ... before the extension.
    """
    names: dict[str, str] = {}
    taken: set[str] = set()
    for source, preferred in sources:
        key = os.path.realpath(source)
        if key in names:
            continue
        stem, ext = os.path.splitext(preferred or os.path.basename(source))
        candidate, n = stem + ext, 0
        while candidate in taken:
            n += 1
            candidate = f"{stem}_{n}{ext}"
        taken.add(candidate)
        names[key] = candidate
    return names


def copy_assets(asset_sources: dict[str, str], directory: str) -> None:
    """Copies ``{filename: source path}`` into ``directory/assets`` (created even when empty)."""
    target = os.path.join(directory, ASSETS_DIR)
    os.makedirs(target, exist_ok=True)
    for filename in sorted(asset_sources):
        source = asset_sources[filename]
        if not os.path.isfile(source):
            raise FormatError(f"Asset {filename!r} cannot be exported: its file {source!r} no longer exists.")
        shutil.copyfile(source, os.path.join(target, filename))


def resolve_asset(directory: str, filename: str, where: str) -> str:
    """The absolute path of a loaded module's asset; refuses names escaping ``assets/`` and missing files."""
    check_asset_filename(filename, where)
    root = os.path.realpath(os.path.join(directory, ASSETS_DIR))
    path = os.path.realpath(os.path.join(root, filename))
    if os.path.dirname(path) != root:
        raise FormatError(f"{where}: the asset {filename!r} resolves to {path!r}, outside {ASSETS_DIR}/.")
    if not os.path.isfile(path):
        raise FormatError(f"{where}: the asset file {os.path.join(directory, ASSETS_DIR, filename)!r} is missing.")
    return path
