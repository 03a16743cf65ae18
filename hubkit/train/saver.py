"""``Saver``: TensorFlow 1's name-keyed checkpoints, and exporting a module spec from one.

A ``Saver`` checkpoint is the hubkit checkpoint format (a JSON index plus raw data shards, no
pickle; see :mod:`hubkit.train.checkpoint_io`) keyed by *variable names* (``"dense/kernel"``), as
``tf.compat.v1.train.Saver`` keys its checkpoints. TF1 code runs unchanged: ``save`` and
``restore`` accept a leading session argument. A restore reads and checks every value (present,
same dtype kind, same shape) before it assigns any, so a bad checkpoint changes nothing.

>>> import tempfile, os, numpy as np, hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     w = hk.get_variable("w", [2], initializer=hk.initializers.constant(3.0))
...     saver = hk.train.Saver()
>>> prefix = saver.save(None, os.path.join(tempfile.mkdtemp(), "model"), global_step=7)
>>> w.assign([0.0, 0.0]); saver.restore(None, prefix); w.value
array([3., 3.], dtype=float32)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from hubkit.errors import CheckpointError
from hubkit.graph import GraphKeys, format_shape, get_default_graph
from hubkit.runtime.variables import Variable
from hubkit.train.checkpoint_io import (
    CheckpointReader,
    read_state,
    remove_checkpoint,
    write_checkpoint,
    write_state,
)

__all__ = ["Saver", "export_spec_from_checkpoint"]


def _as_var_map(var_list: Any) -> dict[str, Variable]:
    """``{checkpoint key: Variable}`` from None (the graph's global variables), a list or a dict."""
    if var_list is None:
        var_list = get_default_graph().get_collection(GraphKeys.GLOBAL_VARIABLES)
    if isinstance(var_list, Mapping):
        items = list(var_list.items())
    else:
        items = []
        for v in _flatten_vars(var_list):
            if not isinstance(v, Variable):
                raise CheckpointError(f"Saver can only save hubkit Variables; got the {type(v).__name__} {v!r}.")
            items.append((v.name, v))
    out: dict[str, Variable] = {}
    for key, var in items:
        if not isinstance(var, Variable):
            raise CheckpointError(f"Saver can only save hubkit Variables; {key!r} is a {type(var).__name__}.")
        if key in out and out[key] is not var:
            raise CheckpointError(f"Saver was given two variables named {key!r}; pass a dict of distinct names.")
        out[key] = var
    if not out:
        raise CheckpointError("Saver has no variables to save: the graph has none and var_list is empty.")
    return out


def _flatten_vars(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for v in items:
        if isinstance(v, (list, tuple)):  # a partitioned variable: its parts
            out.extend(_flatten_vars(v))
        else:
            out.append(v)
    return out


def _split_session(sess: Any, path: Any, what: str) -> str:
    """TF1 calls ``saver.save(sess, path)``; hubkit has no session state, so the session is ignored."""
    if path is None:
        if isinstance(sess, (str, os.PathLike)):
            return os.fspath(sess)
        raise CheckpointError(f"Saver.{what}() needs a path: saver.{what}(path) or saver.{what}(sess, path).")
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"Saver.{what}() path must be a string, got {type(path).__name__}.")
    return os.fspath(path)


class Saver:
    """Saves and restores variables by name, as ``tf.compat.v1.train.Saver``.

    Args:
        var_list: the variables: None (the default graph's ``GLOBAL_VARIABLES`` now), a list
            (partitioned variables' part lists included), or a dict ``{checkpoint key: Variable}``.
        max_to_keep: how many recent checkpoints to keep (older ones are deleted); None or 0 keeps all.
        name: accepted for TensorFlow 1 compatibility.

    Raises:
        CheckpointError: nothing to save, or two variables with one name.
    """

    def __init__(self, var_list: Any = None, max_to_keep: int | None = 5, name: str | None = None, **_: Any) -> None:
        self._vars = _as_var_map(var_list)
        if max_to_keep is not None and (not isinstance(max_to_keep, int) or max_to_keep < 0):
            raise CheckpointError(f"max_to_keep must be None or a non-negative int, got {max_to_keep!r}.")
        self.max_to_keep = max_to_keep
        self._kept: list[str] = []

    @property
    def var_list(self) -> dict[str, Variable]:
        """``{checkpoint key: Variable}`` this saver writes and reads."""
        return dict(self._vars)

    @property
    def last_checkpoints(self) -> list[str]:
        """Prefixes of the checkpoints this saver wrote and still keeps, oldest first."""
        return list(self._kept)

    def save(self, sess: Any = None, save_path: Any = None, global_step: Any = None, **_: Any) -> str:
        """Writes every variable's value under its name; returns the checkpoint prefix.

        Args:
            sess: a session (ignored) or, when ``save_path`` is None, the path.
            save_path: the path prefix (``dir/model``); ``-<global_step>`` is appended when given.
            global_step: an int, or a variable or array holding one.

        Raises:
            CheckpointError: the files cannot be written.
        """
        prefix = _split_session(sess, save_path, "save")
        if global_step is not None:
            step = global_step.value if isinstance(global_step, Variable) else global_step
            prefix = f"{prefix}-{int(np.asarray(step))}"
        prefix = os.path.abspath(prefix)
        write_checkpoint(prefix, [(key, var.value, var.name) for key, var in sorted(self._vars.items())])
        directory = os.path.dirname(prefix)
        state = read_state(directory) or {}
        kept = [p for p in state.get("all_checkpoints", []) if isinstance(p, str) and p != prefix]
        kept = [p for p in self._kept if p != prefix] if self._kept else kept
        kept.append(prefix)
        if self.max_to_keep:
            while len(kept) > self.max_to_keep:
                remove_checkpoint(kept.pop(0))
        self._kept = kept
        write_state(directory, prefix, kept)
        return prefix

    def restore(self, sess: Any = None, save_path: Any = None) -> None:
        """Assigns every variable the value saved under its key, after checking them all.

        Raises:
            CheckpointError: the checkpoint is missing or corrupt, a key is absent (all absent keys
                are named), or a value's shape or dtype does not match its variable (both named).
        """
        prefix = _split_session(sess, save_path, "restore")
        reader = CheckpointReader(prefix)
        missing = sorted(k for k in self._vars if not reader.has_tensor(k))
        if missing:
            raise CheckpointError(
                f"Checkpoint {reader.prefix!r} has no values for the variables {missing}; it has {reader.keys()}."
            )
        values = {key: _checked_value(reader, key, var) for key, var in self._vars.items()}
        for key, var in self._vars.items():
            var.assign(values[key])


def _checked_value(reader: CheckpointReader, key: str, var: Any) -> np.ndarray:
    value = reader.get_tensor(key)
    if tuple(value.shape) != tuple(var.shape):
        raise CheckpointError(
            f"Checkpoint value {key!r} has shape {format_shape(tuple(value.shape))}, which does not match the "
            f"shape {format_shape(tuple(var.shape))} of variable {var.name!r}."
        )
    kind = "b" if var.dtype.name == "bool" else ("f" if var.dtype.is_floating else "iu")
    if value.dtype.kind not in kind:
        raise CheckpointError(
            f"Checkpoint value {key!r} has dtype {value.dtype}, which does not fit the {var.dtype.name} "
            f"variable {var.name!r}."
        )
    return value


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
    from hubkit.module.exporter import export_module  # the train layer sits beside the module layer

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
