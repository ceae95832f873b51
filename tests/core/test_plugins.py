"""Hook specs and plugin loading: entry points, isolation of broken plugins, duplicates,
allow/deny lists, unknown names."""

import sys
import textwrap
import warnings

import pytest

import autokd
from autokd import PluginError, UnknownNameError, plugins


def make_distribution(tmp_path, dist_name, ep_name, module_name, source, version="1.2.3"):
    """A fake installed distribution with an ``autokd`` entry point, on sys.path."""
    (tmp_path / f"{module_name}.py").write_text(textwrap.dedent(source))
    info = tmp_path / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[autokd]\n{ep_name} = {module_name}\n")
    return tmp_path


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fakeplugin")]:
        del sys.modules[name]


GOOD = """
import autokd

class Sideways(autokd.Advisor):
    def ask(self):
        return next(iter(self.space.points()))

def cosine_distance(s, t):
    return 1.0

@autokd.hookimpl
def register_advisors(register):
    register("sideways", Sideways, aliases=("sw",))

@autokd.hookimpl
def register_losses(register):
    register("CosineDistance", cosine_distance, "pytorch")

@autokd.hookimpl
def register_evaluators(register):
    register("energy", lambda model, ctx: 1.0, higher_is_better=False)
"""


def test_third_party_plugin_registers_through_entry_points(site):
    make_distribution(site, "autokd-sideways", "sideways", "fakeplugin_good", GOOD)
    reg = autokd.registry()
    factory = reg.advisors.get("sideways")
    assert reg.advisors.get("SW") is factory  # aliases, case-insensitive
    assert reg.losses.get("CosineDistance", "pytorch")(None, None) == 1.0
    info = next(p for p in reg.plugins if p.name == "sideways")
    assert (info.distribution, info.version, info.error) == ("autokd-sideways", "1.2.3", None)
    assert sorted(r.name for r in info.registrations) == ["CosineDistance", "energy", "sideways"]
    assert reg.advisors.registration("sideways").plugin == "sideways"
    # evaluators may declare their direction, so configs can leave higher_is_better out
    assert autokd.known_direction("energy") is False


def test_builtin_advisors_are_registered_through_the_hooks():
    reg = autokd.registry()
    builtin = next(p for p in reg.plugins if p.name == "autokd")
    assert {r.name for r in builtin.registrations} >= {"random", "grid"}
    assert reg.advisors.get("random") is autokd.RandomAdvisor


def test_loading_is_lazy():
    import subprocess

    code = (
        "import autokd, autokd.plugins as p, sys; "
        "assert p._registry is None; "
        "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules; "
        "autokd.registry(); assert p._registry is not None"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


BROKEN = "raise ImportError('needs libfoo')\n"


def test_broken_plugin_is_isolated_with_a_warning(site):
    make_distribution(site, "autokd-broken", "broken", "fakeplugin_broken", BROKEN)
    make_distribution(site, "autokd-sideways", "sideways", "fakeplugin_good", GOOD)
    with pytest.warns(plugins.PluginWarning) as caught:
        reg = autokd.registry()
    message = str(caught[0].message)
    assert "plugin 'broken' (distribution 'autokd-broken') failed to load: ImportError: needs libfoo" in message
    assert "AUTOKD_STRICT_PLUGINS=1" in message
    assert "sideways" in reg.advisors  # the others still load
    assert next(p for p in reg.plugins if p.name == "broken").error == "ImportError: needs libfoo"


def test_broken_plugin_is_an_error_in_strict_mode(site, monkeypatch):
    make_distribution(site, "autokd-broken", "broken", "fakeplugin_broken", BROKEN)
    monkeypatch.setenv("AUTOKD_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'broken' \\(distribution 'autokd-broken'\\) failed to load"):
        autokd.registry()


def test_hook_that_raises_is_reported_with_plugin_name(site):
    make_distribution(
        site,
        "autokd-raises",
        "raises",
        "fakeplugin_raises",
        """
        import autokd
        @autokd.hookimpl
        def register_losses(register):
            raise RuntimeError("boom")
        """,
    )
    with pytest.warns(
        plugins.PluginWarning,
        match="plugin 'raises' \\(distribution 'autokd-raises'\\): register_losses raised RuntimeError: boom",
    ):
        autokd.registry()


def test_duplicate_name_names_both_plugins(site):
    make_distribution(site, "autokd-sideways", "sideways", "fakeplugin_good", GOOD)
    make_distribution(
        site,
        "autokd-copycat",
        "copycat",
        "fakeplugin_copycat",
        """
        import autokd
        @autokd.hookimpl
        def register_advisors(register):
            register("Sideways", autokd.RandomAdvisor)
        """,
    )
    with pytest.warns(plugins.PluginWarning) as caught:
        reg = autokd.registry()
    text = str(caught[0].message)
    # entry points load in name order: copycat first, so sideways' registration is the duplicate
    assert (
        "advisor 'sideways' is registered twice: by plugin 'copycat' (distribution 'autokd-copycat') "
        "and by plugin 'sideways' (distribution 'autokd-sideways'); keeping the first" in text
    )
    assert "AUTOKD_DISABLE_PLUGINS=sideways" in text
    assert reg.advisors.get("sideways") is autokd.RandomAdvisor  # the first one is kept


def test_duplicate_is_an_error_in_strict_mode(site, monkeypatch):
    make_distribution(
        site,
        "autokd-copycat",
        "copycat",
        "fakeplugin_copycat2",
        """
        import autokd
        @autokd.hookimpl
        def register_advisors(register):
            register("random", autokd.GridAdvisor)
        """,
    )
    monkeypatch.setenv("AUTOKD_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="advisor 'random' is registered twice: by plugin 'autokd'"):
        autokd.registry()


def test_disable_and_allow_lists(site, monkeypatch):
    make_distribution(site, "autokd-sideways", "sideways", "fakeplugin_good", GOOD)
    make_distribution(site, "autokd-broken", "broken", "fakeplugin_broken", BROKEN)
    monkeypatch.setenv("AUTOKD_DISABLE_PLUGINS", "broken")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg = autokd.registry()
    assert "sideways" in reg.advisors
    assert "broken" not in [p.name for p in reg.plugins]

    plugins.reset()
    monkeypatch.delenv("AUTOKD_DISABLE_PLUGINS")
    monkeypatch.setenv("AUTOKD_LOAD_PLUGINS", "autokd-broken")  # distribution names work too
    with pytest.warns(plugins.PluginWarning):
        reg = autokd.registry()
    assert [p.name for p in reg.plugins] == ["autokd", "broken"]
    assert "random" in reg.advisors  # the core's built-ins always load


def test_unknown_name_lists_available_and_provider():
    reg = autokd.registry()
    with pytest.raises(UnknownNameError) as info:
        reg.advisors.get("BO")
    assert str(info.value) == (
        "unknown advisor 'BO'. Available: grid, random. BO is provided by autokd-optuna: pip install autokd-optuna"
    )
    with pytest.raises(UnknownNameError, match="latency is provided by autokd-latency: pip install autokd-latency"):
        reg.evaluators.get("latency")
    with pytest.raises(UnknownNameError, match="pytorch is provided by autokd-torch: pip install autokd-torch"):
        reg.trainers.get("pytorch")
    with pytest.raises(UnknownNameError, match="CosineDistance.*autokd-tensorflow"):
        reg.losses.get("CosineDistance", "tensorflow")


def test_add_plugin_and_framework_lookup():
    def torch_hinge(s, t): ...
    def tf_hinge(s, t): ...
    def any_builder(arch): ...

    class TwoFrameworks:
        @autokd.hookimpl
        def register_losses(self, register):
            register("Hinge", torch_hinge, "pytorch")
            register("Hinge", tf_hinge, "tensorflow")

        @autokd.hookimpl
        def register_model_builders(self, register):
            register("anywhere", any_builder)

    plugins.add_plugin(TwoFrameworks(), "two")
    reg = autokd.registry()
    assert reg.losses.get("hinge", "pytorch") is torch_hinge
    assert reg.losses.get("Hinge", "tensorflow") is tf_hinge
    with pytest.raises(UnknownNameError, match="registered for several frameworks"):
        reg.losses.get("Hinge")
    assert reg.model_builders.get("anywhere", "tensorflow") is any_builder  # framework=None serves all


def test_bad_framework_in_registration_is_reported():
    class Bad:
        @autokd.hookimpl
        def register_losses(self, register):
            register("X", object(), "jax")

    plugins.add_plugin(Bad(), "bad")
    with pytest.warns(plugins.PluginWarning, match="plugin 'bad' registered loss 'X' with framework='jax'"):
        autokd.registry()


def test_hook_implementation_may_take_fewer_arguments():
    calls = []

    class NoArgs:
        @autokd.hookimpl
        def register_advisors(self):
            calls.append(True)

    plugins.add_plugin(NoArgs(), "noargs")
    autokd.registry()
    assert calls == [True]


def test_every_hook_is_documented():
    """Each hook spec has a docstring and a section in the plugin-author guide."""
    import pathlib

    from autokd import hookspecs

    guide = (pathlib.Path(__file__).parents[2] / "docs" / "plugins.md").read_text()
    for name in plugins._HOOKS:
        spec = getattr(hookspecs, name)
        assert spec.__doc__ and ":param register:" in spec.__doc__
        assert f"## `{name}" in guide, name
