"""``IndexedSlices``: the sparse gradient some ops' gradient rules return (gather, embedding lookups).

It lives with the ops because their ``vjp`` rules build it; the runtime's autodiff and the
optimizers consume it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubkit.graph import Tensor

__all__ = ["IndexedSlices"]


@dataclass(frozen=True)
class IndexedSlices:
    """A sparse gradient: ``dense[indices[i]] += values[i]``; only these rows are non-zero.

    Attributes:
        values: tensor of shape ``[n, *row_shape]``.
        indices: int tensor of shape ``[n]`` (may repeat).
        dense: the tensor whose gradient this is (gives the dense shape and dtype).
    """

    values: Tensor
    indices: Tensor
    dense: Tensor

    @property
    def dtype(self):
        return self.values.dtype

    def to_dense(self) -> Tensor:
        from hubkit.ops import api

        return api.scatter_to_dense(self.values, self.indices, self.dense)
