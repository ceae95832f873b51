"""The autokd-optuna tests load only this distribution's plugin, through its entry point."""

from __future__ import annotations

import pytest

from autokd import plugins


@pytest.fixture(autouse=True)
def _optuna_plugin_only(monkeypatch):
    """Load only this distribution's plugin (through its entry point) and the core's."""
    monkeypatch.delenv("AUTOKD_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv("AUTOKD_LOAD_PLUGINS", "optuna")
    monkeypatch.setenv("AUTOKD_STRICT_PLUGINS", "1")
    plugins.reset()
    yield
    plugins.reset()
