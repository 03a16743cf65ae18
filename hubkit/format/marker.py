"""``hubkit_module.pb``: the marker that makes a directory a complete hubkit module (written last)."""

from __future__ import annotations

import os

from google.protobuf.message import DecodeError

from hubkit.errors import FormatError
from hubkit.format import hubkit_module_pb2 as pb

__all__ = ["FORMAT_VERSION", "MARKER_FILE", "SUPPORTED_FEATURES", "read_marker", "write_marker"]

MARKER_FILE = "hubkit_module.pb"
FORMAT_VERSION = 1
# Features a module may require of its reader. "control_flow": If/While/Scan nodes holding function
# graphs as attributes (hubkit/ops/control_flow.py); a reader without it refuses the module by name.
SUPPORTED_FEATURES: frozenset[str] = frozenset({"control_flow"})


def write_marker(directory: str, producer: str, required_features: tuple[str, ...] = ()) -> None:
    """Writes the marker into ``directory`` (call it after every other file is complete)."""
    marker = pb.ModuleDef(format=FORMAT_VERSION, required_features=sorted(required_features), producer=producer)
    path = os.path.join(directory, MARKER_FILE)
    with open(path, "wb") as f:
        f.write(marker.SerializeToString(deterministic=True))
        f.flush()
        os.fsync(f.fileno())


def read_marker(directory: str) -> pb.ModuleDef:
    """Reads and checks the marker of the module in ``directory``.

    Raises:
        FormatError: the marker is missing or corrupt, or names a format version or required feature
            this version of hubkit does not support.
    """
    path = os.path.join(directory, MARKER_FILE)
    if not os.path.isfile(path):
        raise FormatError(
            f"{directory!r} is not a hubkit module: it has no {MARKER_FILE} (the marker written last by export), "
            "so it is missing or was not completely written."
        )
    try:
        with open(path, "rb") as f:
            marker = pb.ModuleDef.FromString(f.read())
    except (OSError, DecodeError) as e:
        raise FormatError(f"Module marker {path!r} is corrupt: {e}.") from None
    if marker.format != FORMAT_VERSION:
        raise FormatError(
            f"Module marker {path!r} has format version {marker.format}; this version of hubkit reads only "
            f"format {FORMAT_VERSION}. Upgrade hubkit to load it."
        )
    unknown = sorted(set(marker.required_features) - SUPPORTED_FEATURES)
    if unknown:
        raise FormatError(
            f"Module marker {path!r} requires the features {unknown}, which this version of hubkit does not "
            f"support (supported: {sorted(SUPPORTED_FEATURES)})."
        )
    return marker
