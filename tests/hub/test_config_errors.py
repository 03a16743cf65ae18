"""HubConfig.from_env refuses environment values that do not parse, and unknown override fields."""

import pytest

import hubkit as hk
from hubkit.hub import HubConfig


@pytest.mark.parametrize(("name", "raw"), [
    ("HUBKIT_RETRIES", "-1"),
    ("HUBKIT_BACKOFF", "-0.1"),
    ("HUBKIT_READ_TIMEOUT", "-5"),
    ("HUBKIT_MAX_EXTRACT_BYTES", "-1"),
])
def test_negative_numbers(name, raw):
    with pytest.raises(hk.ResolveError, match=rf"Environment variable {name}='{raw}' must not be negative"):
        HubConfig.from_env({name: raw})


@pytest.mark.parametrize(("name", "raw", "kind"), [
    ("HUBKIT_RETRIES", "2.5", "an int"),
    ("HUBKIT_MAX_EXTRACT_BYTES", "1e9", "an int"),
    ("HUBKIT_CONNECT_TIMEOUT", "ten", "a float"),
    ("HUBKIT_LOCK_POLL", "0,5", "a float"),
])
def test_numbers_that_do_not_parse(name, raw, kind):
    with pytest.raises(hk.ResolveError, match=rf"Environment variable {name}='{raw}' is not {kind}"):
        HubConfig.from_env({name: raw})


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_timeouts_must_be_finite(raw):
    with pytest.raises(hk.ResolveError, match=rf"HUBKIT_READ_TIMEOUT='{raw}' must be a finite number"):
        HubConfig.from_env({"HUBKIT_READ_TIMEOUT": raw})


@pytest.mark.parametrize("name", ["HUBKIT_OFFLINE", "HUBKIT_PROGRESS"])
def test_flags_that_are_not_booleans(name):
    with pytest.raises(hk.ResolveError, match=rf"Environment variable {name}='maybe' is not a boolean; expected one "
                                              r"of \['0', '1', 'false', 'no', 'off', 'on', 'true', 'yes'\]"):
        HubConfig.from_env({name: "maybe"})


def test_blank_numbers_mean_the_default_and_flags_parse():
    config = HubConfig.from_env({"HUBKIT_RETRIES": "  ", "HUBKIT_OFFLINE": " YES ", "HUBKIT_CONNECT_TIMEOUT": " 3 "},
                                cache_dir="/nowhere")
    assert (config.retries, config.offline, config.connect_timeout) == (HubConfig.retries, True, 3.0)


def test_unknown_override_field():
    with pytest.raises(TypeError, match=r"Unknown HubConfig fields \['cache', 'timeout'\]; expected \['backoff', "):
        HubConfig.from_env({}, cache="x", timeout=3)
