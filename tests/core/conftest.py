import pytest

from autokd import plugins


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    """Each test loads plugins anew, with no plugin environment variables set."""
    for var in ("AUTOKD_STRICT_PLUGINS", "AUTOKD_DISABLE_PLUGINS", "AUTOKD_LOAD_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    # The core's tests see only the core and the fake plugins they install themselves,
    # even in an environment where real plugins are installed.
    real = plugins._entry_points
    monkeypatch.setattr(plugins, "_entry_points", lambda: (ep for ep in real() if ep.value.startswith("fakeplugin")))
    plugins.reset()
    yield
    plugins._extra_plugins.clear()
    plugins.reset()
