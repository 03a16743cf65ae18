"""``LatestModuleExporter``: export a module from the newest checkpoint, keeping the newest N exports."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from typing import Any

from hubkit.errors import CheckpointError
from hubkit.format import checkpoint_io

__all__ = ["LatestModuleExporter"]

_TIMESTAMP = re.compile(r"^\d+$")


class LatestModuleExporter:
    """Exports a module whose variable values come from a training checkpoint.

    Each export goes to ``<export_dir_base>/<name>/<timestamp>``; only the newest
    ``exports_to_keep`` exports are kept. The module's variables are matched to the checkpoint by
    the variable names the checkpoint recorded (a model's ``dense/kernel`` fills the module's
    ``dense/kernel``), or through ``variable_map``.

    Args:
        name: the exporter's name (the directory under the base).
        module_fn_or_spec: a ``module_fn`` for ``hubkit.create_module_spec``, or a ``ModuleSpec``.
        exports_to_keep: how many exports to keep (None keeps all).
        variable_map: ``{module variable name: checkpoint key or saved variable name}``, or a
            callable mapping a module variable name to one, for names that differ.
    """

    def __init__(
        self,
        name: str,
        module_fn_or_spec: Any,
        exports_to_keep: int | None = 5,
        variable_map: dict[str, str] | Callable[[str], str] | None = None,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", str(name)):
            raise CheckpointError(f"Exporter name {name!r} must use letters, digits, '_', '.' and '-'.")
        if exports_to_keep is not None and exports_to_keep < 1:
            raise CheckpointError(f"exports_to_keep must be positive or None, got {exports_to_keep!r}.")
        self.name = name
        self._module_fn_or_spec = module_fn_or_spec
        self.exports_to_keep = exports_to_keep
        self._variable_map = variable_map

    def _spec(self) -> Any:
        from hubkit.module import ModuleSpec, create_module_spec

        if isinstance(self._module_fn_or_spec, ModuleSpec):
            return self._module_fn_or_spec
        return create_module_spec(self._module_fn_or_spec)

    def _lookup(self, reader: checkpoint_io.CheckpointReader, var_name: str, by_name: dict[str, str]) -> str | None:
        target = var_name
        if callable(self._variable_map):
            target = self._variable_map(var_name)
        elif self._variable_map is not None:
            target = self._variable_map.get(var_name, var_name)
        if reader.has_tensor(target):
            return target
        if target in by_name:
            return by_name[target]
        ends = [key for saved, key in by_name.items() if saved.endswith("/" + target)]
        return ends[0] if len(ends) == 1 else None

    def export(self, checkpoint_path: str, export_dir_base: str) -> str:
        """Writes a module with the values of ``checkpoint_path`` (a prefix, or a directory's latest).

        Returns:
            The new export's directory.

        Raises:
            CheckpointError: there is no checkpoint, or it lacks a value for a module variable (all
                missing names are listed, sorted).
        """
        from hubkit.module import Module

        reader = checkpoint_io.load_checkpoint(os.fspath(checkpoint_path))
        by_name: dict[str, str] = {}
        for stored in reader.get_variable_to_shape_map():
            saved = reader.variable_name(stored)
            if saved is not None and "/.OPTIMIZER_SLOT/" not in stored:
                by_name.setdefault(saved, stored)
        module = Module(self._spec(), name="module")
        missing: list[str] = []
        for var_name, var in module.flat_variable_map.items():
            key = self._lookup(reader, var_name, by_name)
            if key is None:
                missing.append(var_name)
                continue
            value = reader.get_tensor(key)
            if tuple(value.shape) != tuple(var.shape):
                raise CheckpointError(
                    f"Checkpoint value {key!r} has shape {list(value.shape)}, but module variable {var_name!r} "
                    f"has shape {list(var.shape)}."
                )
            var.assign(value)
        if missing:
            raise CheckpointError(
                f"Checkpoint {reader.prefix!r} has no value for module variables {sorted(missing)}; saved variables "
                f"are {sorted(by_name)}."
            )
        base = os.path.join(os.fspath(export_dir_base), self.name)
        os.makedirs(base, exist_ok=True)
        stamp = int(time.time())
        while os.path.exists(os.path.join(base, str(stamp))):
            stamp += 1
        target = os.path.join(base, str(stamp))
        module.export(target)
        self._garbage_collect(base)
        return target

    def _garbage_collect(self, base: str) -> None:
        if self.exports_to_keep is None:
            return
        stamps = sorted((int(n) for n in os.listdir(base) if _TIMESTAMP.match(n)), reverse=True)
        for old in stamps[self.exports_to_keep :]:
            shutil.rmtree(os.path.join(base, str(old)), ignore_errors=True)
