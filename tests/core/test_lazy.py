"""The one lazy-import helper of every plugin (``autokd.lazy_object``,
``autokd.lazy_module_attrs``): nothing is imported before it is used, then the real
object is used."""

import sys
import textwrap

import pytest

import autokd


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``lazypkg`` whose submodule ``heavy`` records that it was imported."""
    root = tmp_path / "lazypkg"
    root.mkdir()
    (root / "__init__.py").write_text(
        textwrap.dedent(
            """
            import autokd
            _EXPORTS = {"Heavy": "heavy", "double": "heavy", "heavy": None}
            __all__ = sorted(_EXPORTS)
            __getattr__, __dir__ = autokd.lazy_module_attrs(__name__, _EXPORTS)
            """
        )
    )
    (root / "heavy.py").write_text(
        "IMPORTS = []\nIMPORTS.append(1)\nclass Heavy:\n    pass\ndef double(x):\n    return 2 * x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "lazypkg"
    for name in [m for m in sys.modules if m.split(".")[0] == "lazypkg"]:
        del sys.modules[name]


def test_a_package_imports_each_name_from_its_module_on_first_access(package):
    import lazypkg

    assert "lazypkg.heavy" not in sys.modules
    assert {"Heavy", "double", "heavy"} <= set(dir(lazypkg))
    assert "lazypkg.heavy" not in sys.modules  # listing imports nothing
    assert lazypkg.double(21) == 42
    assert lazypkg.Heavy is sys.modules["lazypkg.heavy"].Heavy
    assert lazypkg.heavy is sys.modules["lazypkg.heavy"]  # a submodule export
    assert "double" in vars(lazypkg)  # kept: the next access is a plain attribute
    with pytest.raises(AttributeError, match="module 'lazypkg' has no attribute 'nope'"):
        _ = lazypkg.nope


def test_a_lazy_registration_imports_its_target_only_when_called(package):
    double = autokd.lazy_object("lazypkg.heavy:double")
    assert (double.__name__, double.__module__, repr(double)) == (
        "double",
        "lazypkg.heavy",
        "<lazy lazypkg.heavy:double>",
    )
    assert "lazypkg.heavy" not in sys.modules
    assert double(4) == 8
    assert sys.modules["lazypkg.heavy"].IMPORTS == [1]
    assert autokd.resolve_lazy(double) is sys.modules["lazypkg.heavy"].double
    assert autokd.resolve_lazy(len) is len
    heavy_cls = autokd.lazy_object("lazypkg.heavy:Heavy")
    assert isinstance(heavy_cls(), sys.modules["lazypkg.heavy"].Heavy)
    with pytest.raises(ValueError, match="'package.module:attribute'"):
        autokd.lazy_object("lazypkg.heavy.double")
