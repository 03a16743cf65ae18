"""Object-based checkpoints: ``Checkpoint``, its restore status, and ``CheckpointManager``.

A checkpoint saves every variable reachable from its root objects, keyed by the path of attribute
names leading to it (``model/dense_1/kernel/.ATTRIBUTES/VARIABLE_VALUE``), plus each optimizer's
slot variables keyed to the variable they belong to
(``model/dense_1/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE``), as TensorFlow's
object-based checkpoints do. Restoring walks the same paths through the live objects, so a partial
object structure restores just what it names, and a value whose layer is not built yet waits until
the layer creates the variable (deferred restore).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from hubkit.errors import CheckpointError
from hubkit.format import checkpoint_io
from hubkit.runtime.tracking import (
    PendingValue,
    apply_deferred,
    assign_value,
    check_value,
    children,
    escape_name,
    find_object,
    get_slot,
    hand_down_deferred,
    is_optimizer,
    is_trackable,
    optimizer_children,
    route_value,
    slot_names,
)
from hubkit.runtime.variables import Variable

__all__ = ["Checkpoint", "CheckpointManager", "CheckpointStatus", "apply_deferred", "assign_value", "check_value"]

VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
SLOT_MARKER = "/.OPTIMIZER_SLOT/"


def _walk(root: Any) -> tuple[list[tuple[str, Variable]], list[tuple[str, Any]]]:
    """Breadth-first walk: ``(path, variable)`` pairs and ``(path, optimizer)`` pairs, each object once."""
    variables: list[tuple[str, Variable]] = []
    optimizers: list[tuple[str, Any]] = []
    seen: set[int] = {id(root)}
    queue: list[tuple[str, Any]] = [("", root)]
    while queue:
        path, obj = queue.pop(0)
        for name, child in children(obj):
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_path = f"{path}/{name}" if path else name
            if not is_trackable(child):
                raise CheckpointError(
                    f"Cannot checkpoint {child_path!r}: an object of type {type(child).__name__!r} has no "
                    "variables a checkpoint can track; give it variables, layers, models, modules, optimizers "
                    "or lists and dicts of them."
                )
            if isinstance(child, Variable):
                variables.append((child_path, child))
            else:
                if is_optimizer(child):
                    optimizers.append((child_path, child))
                queue.append((child_path, child))
    return variables, optimizers


def _slot_entries(
    variables: list[tuple[str, Variable]], optimizers: list[tuple[str, Any]]
) -> Iterator[tuple[str, Any, Variable, str]]:
    """``(slot key, optimizer, variable, slot name)`` for every slot name of every optimizer and variable."""
    for opt_path, opt in optimizers:
        for slot in slot_names(opt):
            for var_path, var in variables:
                yield f"{var_path}{SLOT_MARKER}{opt_path}/{escape_name(slot)}{VALUE_SUFFIX}", opt, var, slot


def collect_values(root: Any) -> list[tuple[str, np.ndarray, str | None]]:
    """Every ``(key, value, variable name)`` a checkpoint of ``root`` holds."""
    variables, optimizers = _walk(root)
    out: list[tuple[str, np.ndarray, str | None]] = [(f"{p}{VALUE_SUFFIX}", v.value, v.name) for p, v in variables]
    for key, opt, var, slot in _slot_entries(variables, optimizers):
        s = get_slot(opt, var, slot)
        if s is not None:
            out.append((key, s.value, s.name))
    return out


def apply_deferred_slots(optimizer: Any) -> None:
    """Assigns restored slot and optimizer values whose variables now exist (after ``minimize``)."""
    waiting = optimizer.__dict__.get("_hk_deferred_slots", [])
    still = []
    for find_var, slot, pending in waiting:
        var = find_var()
        s = None if var is None else get_slot(optimizer, var, slot)
        if s is None:
            still.append((find_var, slot, pending))
        else:
            assign_value(s, pending)
    optimizer.__dict__["_hk_deferred_slots"] = still
    parked = optimizer.__dict__.get("_hk_deferred_vars", {})
    if parked:
        names = dict(optimizer_children(optimizer))
        for rel in list(parked):
            if rel in names:
                assign_value(names[rel], parked.pop(rel))


def _park_slot(optimizer: Any, entry: tuple[Any, str, Any]) -> None:
    """Parks a slot value until ``optimizer`` creates the slot (see :func:`apply_deferred_slots`)."""
    optimizer.__dict__.setdefault("_hk_deferred_slots", []).append(entry)


# -- status -------------------------------------------------------------------------------------------
class CheckpointStatus:
    """What a restore matched; returned by :meth:`Checkpoint.restore`.

    Attributes:
        path: the checkpoint restored (None when restoring from nothing).
    """

    def __init__(
        self,
        path: str | None,
        unused_keys: list[str],
        missing_keys: list[str],
        pending: list[Any],
        optimizers: list[Any],
    ) -> None:
        self.path = path
        self._unused = sorted(unused_keys)
        self._missing = sorted(missing_keys)
        self._pending = pending
        self._optimizers = optimizers

    def run_restore_ops(self) -> None:
        """Assigns restored optimizer slots whose variables were created since the restore."""
        for opt in self._optimizers:
            apply_deferred_slots(opt)

    def _waiting(self) -> list[str]:
        self.run_restore_ops()
        return sorted(p.key for p in self._pending if not p.consumed)

    def assert_consumed(self) -> CheckpointStatus:
        """Raises unless every value was used and every object got a value.

        Raises:
            CheckpointError: listing, sorted, the checkpoint keys no object took (or still waiting for
                their layer to be built) and the objects the checkpoint had no value for.
        """
        if self.path is None:
            raise CheckpointError("Nothing was restored: the checkpoint path was None.")
        problems = []
        waiting = self._waiting()
        unused = sorted({*self._unused, *waiting})
        if unused:
            problems.append(f"values no object has taken (yet): {unused}")
        if self._missing:
            problems.append(f"objects without a value: {self._missing}")
        if problems:
            message = f"Checkpoint {self.path!r} was not consumed exactly; " + "; ".join(problems) + "."
            slots = [k for k in waiting if SLOT_MARKER in k]
            if slots:
                message += (
                    f" The optimizer slot values {slots} wait for their slots, which the optimizer creates at "
                    "its first step (the first fit or minimize): right after a restore, check with "
                    "assert_existing_objects_matched() instead, and call assert_consumed() after training starts."
                )
            raise CheckpointError(message)
        return self

    def assert_existing_objects_matched(self) -> CheckpointStatus:
        """Raises unless every variable that existed at restore time got a value.

        Raises:
            CheckpointError: listing the keys of the existing variables without a value, sorted.
        """
        if self.path is None:
            raise CheckpointError("Nothing was restored: the checkpoint path was None.")
        if self._missing:
            raise CheckpointError(f"Checkpoint {self.path!r} has no value for existing objects {self._missing}.")
        return self

    def expect_partial(self) -> CheckpointStatus:
        """Accepts a partial restore (kept for TensorFlow familiarity; nothing is checked)."""
        return self


# -- Checkpoint ---------------------------------------------------------------------------------------
class Checkpoint:
    """Saves and restores the variables of a group of objects (layers, models, optimizers, variables).

    Args:
        **trackables: the root's named dependencies, e.g. ``model=model, optimizer=opt``.

    >>> import os, tempfile, hubkit as hk
    >>> v = hk.Variable([1.0, 2.0])
    >>> ckpt = hk.Checkpoint(v=v)
    >>> path = ckpt.save(os.path.join(tempfile.mkdtemp(), "ckpt"))
    >>> os.path.basename(path)
    'ckpt-1'
    >>> v.assign([0.0, 0.0]); _ = ckpt.restore(path).assert_consumed(); v.value
    array([1., 2.], dtype=float32)
    """

    def __init__(self, **trackables: Any) -> None:
        for name, obj in trackables.items():
            if obj is None or isinstance(obj, (int, float, str, bytes)):
                raise CheckpointError(
                    f"Checkpoint dependency {name!r} must be a layer, model, optimizer or variable, "
                    f"got {type(obj).__name__}."
                )
        object.__setattr__(self, "_children", dict(trackables))
        object.__setattr__(self, "_save_counter", None)
        object.__setattr__(self, "_deferred", {})  # restored values waiting for an attribute to be assigned

    def __getattr__(self, name: str) -> Any:
        children = self.__dict__.get("_children", {})
        if name in children:
            return children[name]
        raise AttributeError(f"Checkpoint has no dependency {name!r}; it has {sorted(children)}.")

    def __setattr__(self, name: str, value: Any) -> None:
        """Adds a dependency; a value restored before it existed is assigned now (deferred restore)."""
        self._children[name] = value
        hand_down_deferred(self, name, value)

    def _checkpoint_children(self) -> list[tuple[str, Any]]:
        out = list(self._children.items())
        if self._save_counter is not None:
            out.append(("save_counter", self._save_counter))
        return out

    @property
    def save_counter(self) -> Variable:
        """How many times :meth:`save` ran (restored with the checkpoint)."""
        if self._save_counter is None:
            object.__setattr__(self, "_save_counter", Variable(np.int64(0), name="save_counter", trainable=False))
        return self._save_counter

    def write(self, path: str) -> str:
        """Writes a checkpoint at the exact prefix ``path`` (no numbering, no state file).

        Returns:
            ``path``.
        """
        return checkpoint_io.write_checkpoint(os.fspath(path), collect_values(self))

    def save(self, file_prefix: str) -> str:
        """Writes ``<file_prefix>-<n>`` where n counts the saves, and records it as the latest.

        Returns:
            The checkpoint's path prefix.
        """
        counter = self.save_counter
        counter.assign(counter.value + 1)
        path = self.write(f"{os.fspath(file_prefix)}-{int(counter.value)}")
        directory = os.path.dirname(os.path.abspath(path))
        state = checkpoint_io.read_state(directory) or {}
        kept = [p for p in state.get("all_model_checkpoint_paths", []) if p != os.path.basename(path)]
        checkpoint_io.write_state(directory, path, [*kept, path])
        return path

    def read(self, path: str) -> CheckpointStatus:
        """Same as :meth:`restore`."""
        return self.restore(path)

    def restore(self, path: str | None) -> CheckpointStatus:
        """Restores every object this checkpoint names from ``path`` (a prefix or a directory).

        Values are matched by object path. Values for layers that are not built yet are applied
        when they are built; optimizer slots when the optimizer creates them.

        Returns:
            A :class:`CheckpointStatus` to check what matched.

        Raises:
            CheckpointError: the checkpoint cannot be read, or a value's shape contradicts its variable.
        """
        if path is None:
            return CheckpointStatus(None, [], [], [], [])
        reader = checkpoint_io.load_checkpoint(os.fspath(path))
        keys = set(reader.keys())
        if "save_counter" + VALUE_SUFFIX in keys:
            _ = self.save_counter
        variables, optimizers = _walk(self)
        used: set[str] = set()
        missing: list[str] = []
        pending: list[PendingValue] = []
        # Nothing changes until every value is checked: (variable, value) pairs to assign, and
        # ``apply()`` callbacks that park values for objects that do not exist yet.
        assignments: list[tuple[Variable, PendingValue]] = []
        parkings: list[Any] = []
        for p, var in variables:
            key = p + VALUE_SUFFIX
            if key in keys:
                assignments.append((var, PendingValue(key, reader.get_tensor(key))))
                used.add(key)
            else:
                missing.append(key)
        for key, opt, var, slot in _slot_entries(variables, optimizers):
            s = get_slot(opt, var, slot)
            if key in keys:
                item = PendingValue(key, reader.get_tensor(key))
                used.add(key)
                if s is not None:
                    assignments.append((s, item))
                else:
                    entry = (lambda v=var: v, slot, item)
                    parkings.append(functools.partial(_park_slot, opt, entry))
                    pending.append(item)
            elif s is not None:
                missing.append(key)
        unused: list[str] = []
        live_optimizers = dict(optimizers)
        for key in sorted(keys - used):
            if not key.endswith(VALUE_SUFFIX):
                unused.append(key)
                continue
            if SLOT_MARKER in key:  # a slot of a variable that does not exist yet
                var_path, _, rest = key[: -len(VALUE_SUFFIX)].partition(SLOT_MARKER)
                opt_path, _, slot = rest.rpartition("/")
                opt = live_optimizers.get(opt_path)
                if opt is None or slot.replace(".S", "/").replace("..", ".") not in slot_names(opt):
                    unused.append(key)
                    continue
                item = PendingValue(key, reader.get_tensor(key))
                entry = (functools.partial(find_object, self, var_path), slot, item)
                parkings.append(functools.partial(_park_slot, opt, entry))
                pending.append(item)
                continue
            item = PendingValue(key, reader.get_tensor(key))
            route = route_value(self, key[: -len(VALUE_SUFFIX)], item)
            if route is None:
                unused.append(key)
            elif route[0] is not None:
                assignments.append((route[0], item))
            else:
                table, rel = route[1]
                parkings.append(functools.partial(table.__setitem__, rel, item))
                pending.append(item)
        for var, item in assignments:
            check_value(var, item)
        for var, item in assignments:
            var.assign(np.asarray(item.value))
            item.consumed = True
        for park in parkings:
            park()
        return CheckpointStatus(reader.prefix, unused, missing, pending, [o for _, o in optimizers])


class CheckpointManager:
    """Numbers, keeps and deletes the checkpoints of one ``Checkpoint`` in a directory.

    Args:
        checkpoint: the :class:`Checkpoint` to save.
        directory: where the checkpoints and the ``checkpoint`` state file go.
        max_to_keep: how many of the newest checkpoints to keep (None keeps all).
        checkpoint_name: the file prefix inside ``directory``.
    """

    def __init__(
        self, checkpoint: Checkpoint, directory: str, max_to_keep: int | None = 5, checkpoint_name: str = "ckpt"
    ) -> None:
        if max_to_keep is not None and max_to_keep < 1:
            raise CheckpointError(f"max_to_keep must be a positive number or None, got {max_to_keep!r}.")
        self._checkpoint = checkpoint
        self.directory = os.fspath(directory)
        self.max_to_keep = max_to_keep
        self._prefix = os.path.join(self.directory, checkpoint_name)
        state = checkpoint_io.read_state(self.directory) or {}
        names = state.get("all_model_checkpoint_paths", [])
        self._kept = [
            os.path.join(self.directory, n)
            for n in names
            if os.path.exists(os.path.join(self.directory, n) + checkpoint_io.INDEX_SUFFIX)
        ]

    @property
    def checkpoints(self) -> list[str]:
        """The kept checkpoints' prefixes, oldest first."""
        return list(self._kept)

    @property
    def latest_checkpoint(self) -> str | None:
        """The newest kept checkpoint's prefix, or None."""
        return self._kept[-1] if self._kept else None

    def save(self, checkpoint_number: int | None = None) -> str:
        """Saves a new checkpoint numbered by the save counter (or ``checkpoint_number``) and prunes old ones.

        Returns:
            The new checkpoint's prefix.
        """
        counter = self._checkpoint.save_counter
        counter.assign(counter.value + 1)
        number = int(counter.value) if checkpoint_number is None else int(checkpoint_number)
        path = self._checkpoint.write(f"{self._prefix}-{number}")
        self._kept = [p for p in self._kept if p != path] + [path]
        if self.max_to_keep is not None:
            while len(self._kept) > self.max_to_keep:
                checkpoint_io.remove_checkpoint(self._kept.pop(0))
        checkpoint_io.write_state(self.directory, path, self._kept)
        return path
