"""Shared fixtures of the autokd-latency tests.

The same folder runs in the torch env (tox ``latency``) and in a TensorFlow env: the
tests of each framework skip themselves where it is not installed.
"""

from __future__ import annotations

import os

import pytest

# Before TensorFlow may be imported by a test module: no CUDA probing chatter.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from autokd import plugins  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    """Each test loads plugins anew, with no plugin environment variables set."""
    for var in ("AUTOKD_DISABLE_PLUGINS", "AUTOKD_LOAD_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    plugins.reset()
    yield
    plugins._extra_plugins.clear()
    plugins.reset()
