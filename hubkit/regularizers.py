"""Weight regularizers, declarative as initializers are: ``hubkit.regularizers.l2(1e-4)``.

A regularizer is called on a variable's tensor and returns a scalar loss tensor; :func:`get`
accepts a name, a config dict or a regularizer. The implementations live in
:mod:`hubkit.runtime.regularizers` (``get_variable`` resolves regularizers without reaching up).
"""

from hubkit.runtime import regularizers as _impl
from hubkit.runtime.regularizers import *  # noqa: F403 -- the public names are exactly _impl.__all__

__all__ = _impl.__all__
