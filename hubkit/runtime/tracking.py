"""The tracking and restore protocol checkpoints use, shared by every object that holds variables.

An object takes part by defining ``_checkpoint_children() -> [(name, child), ...]`` (layers, models,
modules, checkpoints do); variables are the leaves; optimizers (duck-typed: ``get_slot`` and
``variables``) and plain lists, tuples and dicts are walked too. An object that may receive a value
before the variable exists (a layer not built yet, a ``Checkpoint`` whose attribute is assigned later)
keeps a ``_deferred`` dict: restore parks values there, and :func:`hand_down_deferred` delivers them
when the attribute is assigned. This sits in the runtime so that layers, modules and ``train`` share it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.errors import CheckpointError
from hubkit.graph import format_shape
from hubkit.runtime.variables import Variable

__all__ = [
    "PendingValue",
    "apply_deferred",
    "assign_value",
    "check_value",
    "children",
    "deliver_value",
    "escape_name",
    "find_object",
    "get_slot",
    "hand_down_deferred",
    "is_optimizer",
    "is_trackable",
    "optimizer_children",
    "route_value",
    "slot_names",
]


def escape_name(name: str) -> str:
    """A name made safe as one part of a checkpoint key: ``.`` becomes ``..`` and ``/`` becomes ``.S``."""
    return name.replace(".", "..").replace("/", ".S")


# -- the object graph -------------------------------------------------------------------------------
def is_optimizer(obj: Any) -> bool:
    return callable(getattr(obj, "get_slot", None)) and callable(getattr(obj, "variables", None))


def slot_names(opt: Any) -> list[str]:
    names = getattr(opt, "get_slot_names", None)
    if callable(names):
        return list(names())
    return list(getattr(opt, "slot_names", ()))


def get_slot(opt: Any, var: Variable, name: str) -> Variable | None:
    try:
        return opt.get_slot(var, name)
    except (KeyError, LookupError, ValueError):
        return None


def optimizer_children(opt: Any) -> list[tuple[str, Any]]:
    """An optimizer's own (non-slot) variables, named by the last part of their names."""
    own = getattr(opt, "_checkpoint_children", None)
    if callable(own):
        return list(own())
    named = getattr(opt, "_non_slot", None)
    if isinstance(named, dict):  # hubkit.train optimizers: their own variables by role ("beta1_power")
        return [(escape_name(str(k)), v) for k, v in sorted(named.items())]
    slot_ids = _slot_ids(opt)
    out: list[tuple[str, Any]] = []
    used: set[str] = set()
    for v in opt.variables():
        if id(v) in slot_ids:
            continue
        short = v.name.rsplit("/", 1)[-1]
        name = escape_name(short if short not in used else v.name)
        used.add(short)
        out.append((name, v))
    return out


def _slot_ids(opt: Any) -> set[int]:
    """Ids of every slot variable, found through the slot table when the optimizer exposes one."""
    table = getattr(opt, "_slots", None)
    ids: set[int] = set()
    if isinstance(table, dict):
        for value in table.values():
            items = value.values() if isinstance(value, dict) else [value]
            ids.update(id(v) for v in items if isinstance(v, Variable))
    return ids


def is_trackable(obj: Any) -> bool:
    """Whether checkpoints can hold ``obj``: a variable, or an object whose variables they can find."""
    return (
        isinstance(obj, (Variable, dict, list, tuple))
        or is_optimizer(obj)
        or callable(getattr(obj, "_checkpoint_children", None))
    )


def children(obj: Any) -> list[tuple[str, Any]]:
    """The named dependencies of ``obj`` in the checkpoint object graph."""
    own = getattr(obj, "_checkpoint_children", None)
    if callable(own) and not is_optimizer(obj):
        return list(own())
    if is_optimizer(obj):
        return optimizer_children(obj)
    if isinstance(obj, dict):
        return [(escape_name(str(k)), v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(obj)]
    return []


# -- deferred restore ---------------------------------------------------------------------------------
class PendingValue:
    """A checkpoint value on its way to a variable; ``consumed`` once assigned."""

    __slots__ = ("consumed", "key", "value")

    def __init__(self, key: str, value: np.ndarray) -> None:
        self.key = key
        self.value = value
        self.consumed = False


def check_value(var: Variable, pending: Any) -> None:
    """Raises unless the checkpoint value ``pending`` fits ``var`` in shape and dtype.

    Raises:
        CheckpointError: naming the checkpoint key, the variable and both shapes or dtypes.
    """
    value = np.asarray(pending.value)
    if tuple(value.shape) != tuple(var.shape):
        raise CheckpointError(
            f"Checkpoint value {pending.key!r} has shape {format_shape(tuple(value.shape))}, but variable "
            f"{var.name!r} has shape {format_shape(tuple(var.shape))}."
        )
    want = var.dtype.np_dtype
    is_text, wants_text = value.dtype.kind in "OUS", want.kind in "OUS"
    if is_text != wants_text or (not is_text and value.dtype != want):
        raise CheckpointError(
            f"Checkpoint value {pending.key!r} has dtype {value.dtype.name}, but variable {var.name!r} has "
            f"dtype {var.dtype.name}."
        )


def assign_value(var: Variable, pending: Any) -> None:
    """Checks ``pending`` against ``var``, then assigns it and marks it consumed."""
    check_value(var, pending)
    var.assign(np.asarray(pending.value))
    pending.consumed = True


def route_value(obj: Any, rel: str, pending: Any) -> Any:
    """Where a value for relative path ``rel`` under ``obj`` goes, without putting it there.

    Returns:
        ``(variable, None)`` for a live variable, ``(None, parking dict)`` for a value that waits
        for its layer to be built or its optimizer to create it (deferred), or None when no live
        object can take it now or later.
    """
    if rel == "":
        return (obj, None) if isinstance(obj, Variable) else None
    for name, child in children(obj):
        if rel == name or rel.startswith(name + "/"):
            return route_value(child, rel[len(name) + 1 :], pending)
    deferred = getattr(obj, "_deferred", None)
    if isinstance(deferred, dict):  # a layer: the weight appears when it is built
        return None, (deferred, rel)
    if is_optimizer(obj):  # an optimizer creates its own variables on first minimize
        return None, (obj.__dict__.setdefault("_hk_deferred_vars", {}), rel)
    return None


def deliver_value(obj: Any, rel: str, pending: Any) -> bool:
    """Routes a value to the variable at relative path ``rel`` under ``obj``, or parks it (deferred).

    Returns False when no live object can take it now or later.
    """
    routed = route_value(obj, rel, pending)
    if routed is None:
        return False
    var, parking = routed
    if var is not None:
        assign_value(var, pending)
    else:
        table, key = parking
        table[key] = pending
    return True


def find_object(obj: Any, rel: str) -> Any:
    """The live object at relative path ``rel`` under ``obj``, or None."""
    if rel == "":
        return obj
    for name, child in children(obj):
        if rel == name or rel.startswith(name + "/"):
            return find_object(child, rel[len(name) + 1 :])
    return None


def apply_deferred(obj: Any, values: dict[str, Any]) -> None:
    """Hands parked checkpoint values to an object just attached to a layer (used by ``Layer``)."""
    for rel, pending in values.items():
        if not deliver_value(obj, rel, pending):
            pending.consumed = False


def hand_down_deferred(owner: Any, name: str, value: Any) -> None:
    """Delivers the values ``owner._deferred`` holds under attribute ``name`` to ``value``, just assigned there."""
    deferred = owner.__dict__.get("_deferred")
    if not deferred or not is_trackable(value):
        return
    prefix = name + "/"
    mine = {k: p for k, p in deferred.items() if k == name or k.startswith(prefix)}
    for k in mine:
        del deferred[k]
    apply_deferred(value, {k[len(prefix) :] if k != name else "": p for k, p in mine.items()})
