"""Class 10: regular expressions from module data run on RE2 (linear time), never on backtracking ``re``."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk

CATASTROPHIC = [r"^(a+)+$", r"(a|aa)+$", r"^(a|a?)+$", r"(x+x+)+y", r"^(([a-z])+.)+[A-Z]([a-z])+$"]


def _run(pattern: str, text: str, rewrite: str = "X") -> str:
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.string, [None])
        y = hk.text.regex_replace(x, pattern, rewrite)
        with hk.Session(graph=g) as s:
            return s.run(y, {x: np.array([text], dtype=object)})[0]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_run_in_linear_time(pattern):
    # With backtracking `re` each of these takes longer than the age of the universe on this input;
    # RE2 answers at once (the test would hang, not fail, on a regression).
    text = "a" * 5000 + "!" if "x" not in pattern else "x" * 5000
    assert _run(pattern, text) == text


def test_a_module_with_a_catastrophic_pattern_loads_and_runs(tmp_path):
    def module_fn():
        x = hk.placeholder(hk.string, [None])
        hk.add_signature(inputs=x, outputs=hk.text.regex_replace(x, r"^(a+)+$", "matched"))

    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    m = hk.Module(path)
    assert m(np.array(["a" * 30 + "!", "aaa"], dtype=object)).tolist() == ["a" * 30 + "!", "matched"]


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)", r"(?<=a)b", r"(?!a)", "(unclosed", "a{1001}", "x" * 70_000])
def test_patterns_outside_re2_are_refused_with_a_graph_error(pattern):
    with pytest.raises(hk.GraphError, match="regular expression"):
        _run(pattern, "a")


def test_unicode_classes_keep_their_meaning():
    assert _run(r"[^\w\s]", "¿qué? ünï-cödé", "") == "qué ünïcödé"
    assert _run(r"\d+", "٣ 42", "#") == "# #"
    assert _run(r"\s+", "a\u00a0b\u2003c", "_") == "a_b_c"
