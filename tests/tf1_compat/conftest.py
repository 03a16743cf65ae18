"""Fixtures for the TF1-compatibility tests: a private hub cache and a real registry server on 127.0.0.1."""

from tests.hub.conftest import hub_env, server_factory  # noqa: F401  (re-exported fixtures)
