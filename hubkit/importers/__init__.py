"""Layer 4 readers of foreign module formats: TF1 Hub modules and ONNX models.

Each importer turns bytes on disk into the same :class:`~hubkit.module.spec.ModuleSpec` that a hubkit
module loads into, so everything above (``Module``, ``HubLayer``, export, publish) works unchanged.
The format is detected from the bytes, never from a file name. Importers know nothing of HTTP: the hub
layer hands them a local path.

Contract for an importer package ``hubkit.importers.<format>``: it exposes ``load_spec(path: str) -> ModuleSpec``
and imports any optional extra it needs (``onnx``) inside that function, so ``import hubkit`` stays light.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hubkit.errors import FormatError

if TYPE_CHECKING:
    from hubkit.module.spec import ModuleSpec

__all__ = ["FOREIGN_FORMATS", "detect_format", "load_foreign_spec"]

# Marker files of module directories, by format (read by the hub layer to accept a resolved directory).
TF1_MARKER_FILE = "tfhub_module.pb"
TF1_SAVED_MODEL_FILE = "saved_model.pb"
FOREIGN_FORMATS = ("onnx", "tf1")


def _looks_like_onnx(path: str) -> bool:
    # An ONNX ModelProto starts with field 1 (ir_version, varint: tag byte 0x08); every exporter writes it first.
    from hubkit.format.bounded_io import open_regular  # a FIFO named *.onnx must not block the detection

    try:
        with open_regular(path, "ONNX model") as f:
            head = f.read(2)
    except (OSError, FormatError):
        return False
    return len(head) == 2 and head[0] == 0x08 and 0 < head[1] < 0x80


def detect_format(path: str | os.PathLike) -> str:
    """Names the module format at ``path``: ``"hubkit"``, ``"tf1"`` or ``"onnx"``.

    Raises:
        FormatError: ``path`` holds no module of a format hubkit reads (the message says what was looked for).
    """
    from hubkit.format.marker import MARKER_FILE

    p = os.fspath(path)
    if os.path.isdir(p):
        if os.path.isfile(os.path.join(p, MARKER_FILE)):
            return "hubkit"
        if os.path.isfile(os.path.join(p, TF1_MARKER_FILE)) or os.path.isfile(os.path.join(p, TF1_SAVED_MODEL_FILE)):
            return "tf1"
        onnx_files = sorted(n for n in os.listdir(p) if n.endswith(".onnx"))
        if len(onnx_files) == 1 and _looks_like_onnx(os.path.join(p, onnx_files[0])):
            return "onnx"
        raise FormatError(
            f"{p!r} is not a module directory: it has no {MARKER_FILE!r} (hubkit), no {TF1_MARKER_FILE!r} or "
            f"{TF1_SAVED_MODEL_FILE!r} (TF1 Hub) and not exactly one '.onnx' model."
        )
    if os.path.isfile(p):
        if _looks_like_onnx(p):
            return "onnx"
        raise FormatError(
            f"{p!r} is a file, not a module: hubkit loads module directories, module archives "
            "(.tar.gz, .tgz, .tar) and ONNX models ('.onnx')."
        )
    raise FormatError(f"{p!r} does not exist.")


def load_foreign_spec(path: str | os.PathLike) -> ModuleSpec:
    """Reads the TF1 Hub module or ONNX model at ``path`` into a ``ModuleSpec`` (no code from it runs)."""
    fmt = detect_format(path)
    if fmt == "tf1":
        from hubkit.importers import tf1

        return tf1.load_spec(os.fspath(path))
    if fmt == "onnx":
        from hubkit.importers import onnx as onnx_importer

        return onnx_importer.load_spec(os.fspath(path))
    raise FormatError(f"{os.fspath(path)!r} is a hubkit module, not a foreign one.")
