"""The public op functions of every family, gathered in one namespace."""

from hubkit.ops import sparse as _sparse  # noqa: F401  (registers its ops; public in hubkit.nn, hubkit.text)
from hubkit.ops.control_flow import *  # noqa: F403
from hubkit.ops.control_flow import __all__ as _control_flow_all
from hubkit.ops.conv import *  # noqa: F403
from hubkit.ops.conv import __all__ as _conv_all
from hubkit.ops.elementwise import *  # noqa: F403
from hubkit.ops.elementwise import __all__ as _elementwise_all
from hubkit.ops.integer import *  # noqa: F403
from hubkit.ops.integer import __all__ as _integer_all
from hubkit.ops.nn import *  # noqa: F403
from hubkit.ops.nn import __all__ as _nn_all
from hubkit.ops.ragged_value import *  # noqa: F403
from hubkit.ops.ragged_value import __all__ as _ragged_all
from hubkit.ops.reduce import *  # noqa: F403
from hubkit.ops.reduce import __all__ as _reduce_all
from hubkit.ops.shape import *  # noqa: F403
from hubkit.ops.shape import __all__ as _shape_all
from hubkit.ops.sparse_tensor import *  # noqa: F403
from hubkit.ops.sparse_tensor import __all__ as _sparse_tensor_all
from hubkit.ops.state import assign, assign_add, assign_sub, group, scatter_sub
from hubkit.ops.text import *  # noqa: F403
from hubkit.ops.text import __all__ as _text_all

__all__ = [
    *_control_flow_all,
    *_conv_all,
    *_elementwise_all,
    *_integer_all,
    *_nn_all,
    *_reduce_all,
    *_ragged_all,
    *_shape_all,
    *_sparse_tensor_all,
    *_text_all,
    "assign",
    "assign_add",
    "assign_sub",
    "group",
    "scatter_sub",
]
