"""Regularizer scales must be non-negative numbers, and a config must say which regularizer it is."""

from __future__ import annotations

import pytest

import hubkit as hk
from hubkit import regularizers


@pytest.mark.parametrize("bad", ["big", None, [0.1], {"scale": 1}])
def test_a_scale_that_is_not_a_number_is_refused(bad):
    with pytest.raises(
        hk.GraphError, match=r"Regularizer scale must be a number, got " + repr(bad).replace("[", r"\[")
    ):
        regularizers.l2(bad)
    with pytest.raises(hk.GraphError, match=r"Regularizer scale must be a number"):
        regularizers.l1(bad)


def test_each_l1_l2_term_is_checked_by_name():
    with pytest.raises(hk.GraphError, match=r"Regularizer l1 must be a number, got 'x'"):
        regularizers.l1_l2(l1="x")
    with pytest.raises(hk.GraphError, match=r"Regularizer l2 must not be negative, got -1.0"):
        regularizers.l1_l2(l2=-1)


def test_a_config_with_a_bad_scale_is_refused_when_rebuilt():
    with pytest.raises(hk.GraphError, match=r"Regularizer scale must be a number, got 'big'"):
        regularizers.get({"class_name": "l2", "config": {"scale": "big"}})


@pytest.mark.parametrize(
    "config", [{"config": {}}, {"class_name": 2, "config": {}}, {"class_name": "l2", "config": [1]}]
)
def test_a_config_without_class_name_and_config_is_refused(config):
    with pytest.raises(
        hk.GraphError, match=r"A regularizer config needs a 'class_name' string and a 'config' dict, got"
    ):
        regularizers.get(config)
