"""Layer 3: variables, the executor (``Session``) and reverse-mode autodiff."""

from hubkit.runtime import control_flow as _control_flow  # noqa: F401  (registers If, While and Scan)
from hubkit.runtime.executor import Session
from hubkit.runtime.gradients import IndexedSlices, gradients
from hubkit.runtime.partitioned import (
    PartitionedVariable,
    fixed_size_partitioner,
    min_max_variable_partitioner,
    variable_axis_size_partitioner,
)
from hubkit.runtime.scopes import AUTO_REUSE, VariableScope, get_variable, get_variable_scope, variable_scope
from hubkit.runtime.variables import Variable

__all__ = [
    "AUTO_REUSE",
    "IndexedSlices",
    "PartitionedVariable",
    "Session",
    "Variable",
    "VariableScope",
    "fixed_size_partitioner",
    "get_variable",
    "get_variable_scope",
    "gradients",
    "min_max_variable_partitioner",
    "variable_axis_size_partitioner",
    "variable_scope",
]
