"""hubkit: publish and reuse pieces of machine-learning models, TensorFlow-Hub style, on NumPy.

The public API is re-exported here through ``__all__``; everything else is private.
"""

from hubkit import graph as _graph
from hubkit import ops as _ops
from hubkit import runtime as _runtime
from hubkit.errors import *  # noqa: F403
from hubkit.errors import __all__ as _errors_all
from hubkit.graph import *  # noqa: F403
from hubkit.graph import bool_ as bool  # noqa: A001  (hubkit.bool, as tf.bool)
from hubkit.ops import *  # noqa: F403
from hubkit.runtime import *  # noqa: F403

__version__ = "0.1.0"

__all__ = [
    *_errors_all,
    *_graph.__all__,
    *_ops.__all__,
    *_runtime.__all__,
    "__version__",
    "bool",
]
