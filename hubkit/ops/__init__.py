"""Layer 2: the op registry and the op families (one file each).

Importing this package registers every op and the Tensor operator overloads.
"""

from hubkit.ops import assets, operators, state  # noqa: F401  (registers the Tensor operators and leaf ops)
from hubkit.ops import optimizer_ops as _optimizer_ops  # noqa: F401  (registers the fused updates)
from hubkit.ops import tf_ops as _tf_ops  # noqa: F401  (TF-exact ops of imported TF1 modules)
from hubkit.ops.api import *  # noqa: F403
from hubkit.ops.api import __all__ as _api_all
from hubkit.ops.registry import get_op, register_op, registered_ops

__all__ = [*_api_all, "get_op", "register_op", "registered_ops"]
