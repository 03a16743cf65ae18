"""``Saver``: TensorFlow 1's name-keyed checkpoints, and exporting a module spec from one.

A ``Saver`` checkpoint is the hubkit checkpoint format (a JSON index plus raw data shards, no
pickle; see :mod:`hubkit.format.checkpoint_io`) keyed by *variable names* (``"dense/kernel"``), as
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
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from hubkit.errors import CheckpointError
from hubkit.format.checkpoint_io import (
    CheckpointReader,
    read_state,
    remove_checkpoint,
    write_checkpoint,
    write_state,
)
from hubkit.graph import GraphKeys, format_shape, get_default_graph
from hubkit.runtime.variables import Variable

__all__ = ["Saver"]


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
