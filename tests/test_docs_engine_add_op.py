"""The "How to add an op" example of docs/engine.md runs as written and declares a working op."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops import registry
from tests.helpers_fd import check_vjp

DOC = Path(__file__).resolve().parents[1] / "docs" / "engine.md"
OP = "SoftsignDocsExample"  # a name no real op has, so the example cannot collide with one


def add_op_block() -> str:
    section = DOC.read_text().split("## 7. How to add an op", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_how_to_add_an_op_example_declares_a_working_op(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the op is gone after the test
    namespace: dict = {"__name__": "docs_engine_add_op"}
    exec(compile(add_op_block().replace("Softsign", OP), str(DOC), "exec"), namespace)  # our docs: running them is the test
    softsign = namespace["softsign"]
    assert registry.is_registered(OP)

    x = np.array([[-2.0, 0.0, 3.0]], np.float32)
    with hk.Graph().as_default():
        t = hk.placeholder(hk.float32, [None, 3], name="x")
        np.testing.assert_allclose(hk.Session().run(softsign(t), {t: x}), x / (1 + np.abs(x)), rtol=1e-6)
        ints = hk.placeholder(hk.int32, [None, 3], name="ints")
        with pytest.raises(hk.GraphError, match=rf"{OP} node '{OP}(_\d+)?': needs a float input, got 'ints:0' \[None, 3\] int32\."):
            softsign(ints)
    check_vjp(softsign, [np.array([[-2.0, -0.5, 0.5, 3.0]])], ops=[OP])
