"""Shape and dtype rules of EmbeddingLookupSparse (numbers are checked in tests/text)."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def test_float_ids_are_refused_and_data_ids_become_int64():
    g = hk.Graph()
    with g.as_default():
        table = hk.constant([[1.0, 0.0], [0.0, 1.0]])
        with pytest.raises(hk.GraphError, match=r"ids must be integer, got .* float32"):
            hk.nn.embedding_lookup_sparse(table, (hk.constant([0.0]), [0], 1))
        out = hk.nn.embedding_lookup_sparse(table, ([1, 0], [0, 0], 1), weights=[2, 1], combiner="sum")
    node = out.node
    assert [t.dtype for t in node.inputs] == [hk.float32, hk.int64, hk.int64, hk.int64, hk.float32]
    np.testing.assert_allclose(hk.Session(g).run(out), [[1.0, 2.0]])
