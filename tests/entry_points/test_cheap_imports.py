"""Importing autokd and every installed plugin stays cheap: ``autokd plugins`` imports
each one to list it, so no plugin module, package ``__init__`` or registration may pull
in a framework or a heavy library before it is used (llm#732: 10 s for ``--help``).

One test for all: every tox env runs it over the entry points installed there."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

# Imported only when a plugin's feature is used, never at import or registration time.
HEAVY = (
    "torch",
    "tensorflow",
    "keras",
    "tf_keras",
    "transformers",
    "accelerate",
    "optuna",
    "nevergrad",
    "scipy",
    "numpy",
    "ray",
    "onnx",
    "onnxruntime",
)

PLUGINS = sorted(entry_points(group="autokd"), key=lambda ep: ep.name)


def heavy_modules_after(code: str) -> list[str]:
    """The heavy modules imported by running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_autokd_imports_no_framework():
    assert heavy_modules_after("import autokd") == []


@pytest.mark.parametrize("plugin", PLUGINS, ids=[ep.name for ep in PLUGINS])
def test_importing_a_plugin_and_its_package_imports_no_framework(plugin):
    package = plugin.value.split(":")[0].split(".")[0]
    code = f"import autokd, importlib\nimportlib.import_module({plugin.value.split(':')[0]!r})\nimport {package}"
    assert heavy_modules_after(code) == [], f"importing plugin {plugin.name!r} ({plugin.value})"


def test_loading_every_plugin_and_listing_them_imports_no_framework():
    code = "import contextlib, io, autokd\nfrom autokd.cli import main\nautokd.registry()\n"
    code += "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['plugins']) == 0"
    assert heavy_modules_after(code) == []
