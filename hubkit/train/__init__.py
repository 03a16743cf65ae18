"""Training: optimizers (``hubkit.train.Adam(1e-3).minimize(loss)``) and the global step."""

from hubkit.train.optimizers import (
    Adagrad,
    Adam,
    GradientDescent,
    Momentum,
    Optimizer,
    RMSProp,
    create_global_step,
    get_global_step,
)

__all__: list[str] = [
    "Adagrad",
    "Adam",
    "GradientDescent",
    "Momentum",
    "Optimizer",
    "RMSProp",
    "create_global_step",
    "get_global_step",
]
# Names lifted into the top-level hubkit namespace.
__top_level__: list[str] = []
