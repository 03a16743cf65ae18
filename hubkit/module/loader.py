"""``load_module_spec``: reads and validates a module directory (a local path or any resolvable handle)."""

from __future__ import annotations

import os

from hubkit.errors import FormatError
from hubkit.format.graph_codec import GRAPH_FILE, read_graph_file
from hubkit.format.marker import MARKER_FILE, read_marker
from hubkit.format.safetensors_io import VARIABLES_DIR, read_store_index
from hubkit.graph import format_shape
from hubkit.importers import FOREIGN_FORMATS, detect_format, load_foreign_spec
from hubkit.module.assets import resolve_asset
from hubkit.module.spec import ModuleSpec

__all__ = ["load_module_spec", "resolve_module_dir"]


def resolve_module_dir(handle: str | os.PathLike) -> str:
    """A local path for ``handle``: an existing directory or ONNX file as is, anything else through ``hubkit.hub.resolve``."""
    path = os.fspath(handle)
    if os.path.isdir(path) or (os.path.isfile(path) and detect_format_or_none(path) == "onnx"):
        return os.path.abspath(path)
    from hubkit.hub import resolve  # imported here: the hub layer sits above this one

    return os.path.abspath(resolve(path))


def detect_format_or_none(path: str) -> str | None:
    """The module format at ``path``, or ``None`` when it holds none hubkit reads."""
    try:
        return detect_format(path)
    except FormatError:
        return None


def load_module_spec(handle: str | os.PathLike) -> ModuleSpec:
    """Reads the module at ``handle`` and checks everything it can without running it.

    Args:
        handle: a module directory (hubkit or TF1 Hub format), an ONNX model file, or a URL / ``file://``
            handle the hub layer resolves. Foreign formats are detected from the bytes and imported.

    Returns:
        The module's :class:`ModuleSpec`; ``hubkit.Module(spec)`` maps its variables.

    Raises:
        FormatError: naming the file and the problem: missing marker, corrupt or truncated
            ``graph.pb``, unknown format version, required feature or op, a variable whose stored
            dtype or shape differs from the graph's, a missing variables file, an asset outside ``assets/``.
        ResolveError: the handle cannot be turned into a local directory.
    """
    directory = resolve_module_dir(handle)
    try:
        return _load_directory(directory)
    except FormatError as exc:
        from hubkit.hub.repair import cache_repair_hint  # the hub layer knows where its cache is

        hint = cache_repair_hint(directory)
        if hint is None:
            raise
        raise FormatError(f"{exc} {hint}") from exc


def _load_directory(directory: str) -> ModuleSpec:
    if not os.path.isfile(os.path.join(directory, MARKER_FILE)) and detect_format_or_none(directory) in FOREIGN_FORMATS:
        return load_foreign_spec(directory)
    read_marker(directory)
    proto = read_graph_file(directory)
    where = f"Module graph {os.path.join(directory, GRAPH_FILE)!r}"
    asset_sources = {}
    for vp in proto.variants:
        for ad in vp.assets:
            asset_sources[ad.filename] = resolve_asset(directory, ad.filename, where)
    variables_dir = os.path.join(directory, VARIABLES_DIR)
    entries = read_store_index(variables_dir) if proto.variables else {}
    spec = ModuleSpec(proto, where=where, module_dir=directory, asset_sources=asset_sources, store_entries=entries)
    for name, info in spec.variables.items():
        entry = entries.get(name)
        if entry is None:
            raise FormatError(f"Variables in {variables_dir!r} have no value for the variable {name!r}.")
        if entry.dtype != info.dtype.np_dtype or entry.shape != info.shape:
            raise FormatError(
                f"Variables file {os.path.join(variables_dir, entry.file)!r} stores {name!r} as {entry.dtype} "
                f"{format_shape(entry.shape)}, but the graph declares {info.dtype.name} {format_shape(info.shape)}."
            )
    extra = sorted(set(entries) - set(spec.variables))
    if extra:
        raise FormatError(f"Variables in {variables_dir!r} hold values for unknown variables {extra}.")
    return spec
