"""Exporting a ``ModuleSpec`` with variable values from a name-keyed checkpoint (``ModuleSpec.export``).

The checkpoint is one written by ``hubkit.train.Saver`` (hubkit's own format, read by
:mod:`hubkit.format.checkpoint_io`) or a TensorFlow checkpoint (a tensor bundle, read by the TF1 importer).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from hubkit.errors import CheckpointError
from hubkit.format.checkpoint_io import CheckpointReader
from hubkit.graph import format_shape
from hubkit.module.exporter import export_module
from hubkit.runtime.variables import Variable

__all__ = ["export_spec_from_checkpoint"]


def export_spec_from_checkpoint(
    spec: Any, path: str | os.PathLike, checkpoint_path: str | os.PathLike,
    name_transform_fn: Callable[[str], str] | None = None,
) -> None:
    """Writes ``spec`` as a module whose variable values come from a name-keyed checkpoint.

    Args:
        spec: the :class:`hubkit.ModuleSpec`.
        path: the module directory to create.
        checkpoint_path: a checkpoint prefix written by :class:`Saver` (or a directory: its latest), or a
            TensorFlow checkpoint (tensor bundle) prefix.
        name_transform_fn: maps a module variable name (``"dense/kernel"``) to its checkpoint key.

    Raises:
        CheckpointError: a variable is missing from the checkpoint (named, with the key looked up),
            or a stored shape differs from the variable's (both shapes named).
    """
    prefix = os.fspath(checkpoint_path)
    reader: Any = _TensorBundle(prefix) if _is_tensor_bundle(prefix) else CheckpointReader(prefix)
    variables: dict[str, Variable] = {}
    for name, info in sorted(spec.variables.items()):
        key = name_transform_fn(name) if name_transform_fn is not None else name
        if not isinstance(key, str) or not reader.has_tensor(key):
            raise CheckpointError(
                f"Variable {name!r} (checkpoint key {key!r}) is not found in checkpoint {reader.prefix!r}; it has "
                f"{reader.keys()}."
            )
        value = reader.get_tensor(key)
        if tuple(value.shape) != tuple(info.shape):
            raise CheckpointError(
                f"The shape {format_shape(tuple(value.shape))} of checkpoint value {key!r} doesn't match with shape "
                f"of variable {name!r}, {format_shape(tuple(info.shape))}."
            )
        variables[name] = Variable(value, name=name, dtype=info.dtype, trainable=info.trainable)
    export_module(spec, variables, path)


def _is_tensor_bundle(prefix: str) -> bool:
    """True when ``prefix.index`` is a TensorFlow tensor bundle (a binary LevelDB table, not hubkit's JSON)."""
    try:
        with open(prefix + ".index", "rb") as f:
            head = f.read(1)
    except OSError:
        return False  # CheckpointReader reports a missing checkpoint
    return bool(head) and head not in b"{ \t\r\n"


class _TensorBundle:
    """A TensorFlow checkpoint (``<prefix>.index`` + ``<prefix>.data-*``) read by the TF1 importer's bundle reader.

    The reader expects the names a SavedModel uses (``variables.index``, ``variables.data-*``), so the files
    are linked under those names in a private temporary directory; the values are read (and checked)
    there, then the directory is removed. Slices of partitioned variables are not assembled here: such
    keys are reported missing.
    """

    def __init__(self, prefix: str) -> None:
        import shutil
        import tempfile

        from hubkit.errors import FormatError
        from hubkit.importers.tf1.bundle import read_bundle

        self.prefix = prefix
        src, base = os.path.split(os.path.abspath(prefix))
        tmp = tempfile.mkdtemp(prefix=".hubkit-bundle-")
        try:
            for name in os.listdir(src):
                if name == base + ".index" or name.startswith(base + ".data-"):
                    os.symlink(os.path.join(src, name), os.path.join(tmp, "variables" + name[len(base):]))
            try:
                bundle = read_bundle(tmp)
            except FormatError as e:
                raise CheckpointError(f"TensorFlow checkpoint {prefix!r} cannot be read: {e}") from None
            self._values: dict[str, np.ndarray] = {}
            for key, entry in bundle.entries.items():
                if entry.slices:
                    continue
                if entry.dtype == 7:  # DT_STRING
                    self._values[key] = bundle.read_strings(entry)
                    continue
                loc = bundle.tensor_entry(entry)
                with open(os.path.join(tmp, loc.file), "rb") as f:
                    f.seek(loc.begin)
                    data = f.read(loc.end - loc.begin)
                self._values[key] = np.frombuffer(data, dtype=loc.dtype).reshape(loc.shape).copy()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def has_tensor(self, key: str) -> bool:
        return key in self._values

    def keys(self) -> list[str]:
        return sorted(self._values)

    def get_tensor(self, key: str) -> np.ndarray:
        return self._values[key]
