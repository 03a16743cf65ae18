"""Writing a module directory: temp dir, graph, variables, assets, marker last, then rename into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping

from hubkit.errors import FormatError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.graph_codec import write_graph_file
from hubkit.format.marker import write_marker
from hubkit.format.safetensors_io import VARIABLES_DIR, write_store
from hubkit.module.assets import copy_assets
from hubkit.module.spec import ModuleSpec
from hubkit.ops.control_flow import CONTROL_FLOW_FEATURE, CONTROL_FLOW_OPS
from hubkit.runtime.variables import Variable

__all__ = ["export_module"]


def _producer() -> str:
    from hubkit._version import __version__

    return f"hubkit {__version__}"


def required_features(graph: pb.ModuleGraph) -> tuple[str, ...]:
    """The marker's ``required_features`` for this graph: "control_flow" when a node holds function graphs."""
    if any(nd.op in CONTROL_FLOW_OPS for variant in graph.variants for nd in variant.nodes):
        return (CONTROL_FLOW_FEATURE,)
    return ()


def _check_target(path: str) -> None:
    if os.path.lexists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise FormatError(f"Cannot export a module to {path!r}: it already exists and is not an empty directory.")


def export_module(
    spec: ModuleSpec,
    variables: Mapping[str, Variable],
    path: str | os.PathLike,
    max_shard_bytes: int | None = None,
) -> None:
    """Writes ``spec`` with the values of ``variables`` (module-relative name -> Variable) to ``path``.

    Raises:
        FormatError: ``path`` exists and is not an empty directory, a value cannot be stored, or an
            asset's file is gone.
    """
    path = os.path.abspath(os.fspath(path))
    _check_target(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        graph = pb.ModuleGraph()
        graph.CopyFrom(spec._proto)
        write_graph_file(tmp, graph)
        os.mkdir(os.path.join(tmp, VARIABLES_DIR))
        write_store(os.path.join(tmp, VARIABLES_DIR), {n: v.value for n, v in variables.items()}, max_shard_bytes)
        copy_assets(spec._asset_sources, tmp)
        write_marker(tmp, _producer(), required_features(graph))
        _set_modes(tmp)
        _check_target(path)
        if os.path.isdir(path):
            os.rmdir(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_DIR_MODE = 0o755
_FILE_MODE = 0o644


def _allowed_mode_bits(private_dir: str) -> int:
    """The permission bits the process umask (and any default ACL) lets new directories have.

    Learnt by creating a probe directory with mode 0o777 inside ``private_dir``: reading the umask
    with ``os.umask`` would have to change it, a race with files other threads create meanwhile.
    """
    probe = os.path.join(private_dir, ".mode-probe")
    os.mkdir(probe, 0o777)
    try:
        return os.stat(probe).st_mode & 0o777
    finally:
        os.rmdir(probe)


def _set_modes(root: str) -> None:
    """Gives every directory mode 0o755 and every file 0o644, narrowed by the umask: deterministic exports."""
    allowed = _allowed_mode_bits(root)
    for directory, _, files in os.walk(root):
        os.chmod(directory, _DIR_MODE & allowed)
        for name in files:
            os.chmod(os.path.join(directory, name), _FILE_MODE & allowed)
