"""Plugins that misbehave are named with their distribution (#13, item 17)."""

import sys
import textwrap

import pytest

import autokd
import autokd.cli
from autokd import PluginError, plugins


def make_distribution(site, dist_name, ep_name, module_name, source):
    (site / f"{module_name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist_name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[autokd]\n{ep_name} = {module_name}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fakeplugin")]:
        del sys.modules[name]


def messages(caught):
    return [str(w.message) for w in caught if issubclass(w.category, plugins.PluginWarning)]


def test_a_plugin_calling_sys_exit_at_import_is_reported_and_autokd_goes_on(site):
    make_distribution(site, "autokd-quitter", "quitter", "fakeplugin_quitter", "import sys\nsys.exit(4)\n")
    with pytest.warns(plugins.PluginWarning) as caught:
        reg = autokd.registry()
    assert messages(caught)[0].startswith(
        "plugin 'quitter' (distribution 'autokd-quitter') failed to load: called sys.exit(4) at import"
    )
    assert "random" in reg.advisors


def test_a_plugin_calling_sys_exit_is_an_error_under_strict_and_the_cli_exits_1(site, monkeypatch, capsys):
    make_distribution(site, "autokd-quitter", "quitter", "fakeplugin_quitter", "import sys\nsys.exit(4)\n")
    monkeypatch.setenv("AUTOKD_STRICT_PLUGINS", "1")
    assert autokd.cli.main(["plugins"]) == 1
    assert (
        "plugin 'quitter' (distribution 'autokd-quitter') failed to load: called sys.exit(4)" in capsys.readouterr().err
    )


PLUGIN = """
import autokd
import autokd.cli

class Adv(autokd.RandomAdvisor):
    pass

@autokd.hookimpl
def register_advisors(register):
    register("{name}", Adv)
"""


def test_two_distributions_with_one_entry_point_name_are_both_listed_and_the_clash_named(site):
    make_distribution(site, "autokd-alpha", "clash", "fakeplugin_alpha", PLUGIN.format(name="alpha"))
    make_distribution(site, "autokd-beta", "clash", "fakeplugin_beta", PLUGIN.format(name="beta"))
    with pytest.warns(plugins.PluginWarning) as caught:
        reg = autokd.registry()
    (message,) = messages(caught)
    assert message.startswith(
        "plugin 'clash' (distribution 'autokd-beta') is not loaded: plugin 'clash' (distribution 'autokd-alpha') has "
        "the same entry-point name. Uninstall one, or block one with AUTOKD_DISABLE_PLUGINS=autokd-beta"
    )
    listed = [(p.name, p.distribution, p.error) for p in reg.plugins if p.name == "clash"]
    assert listed == [
        ("clash", "autokd-beta", "entry point name 'clash' is also used by distribution 'autokd-alpha'"),
        ("clash", "autokd-alpha", None),
    ]
    assert "alpha" in reg.advisors
    assert (
        "clash  FAILED" not in autokd.cli.format_plugins() and "autokd-beta 1.0  FAILED" in autokd.cli.format_plugins()
    )


@pytest.mark.parametrize(
    ("hook", "call", "what"),
    [
        ("register_losses", 'register("Hinge", "not a function", "pytorch")', "loss 'Hinge' as str 'not a function'"),
        ("register_evaluators", 'register("energy", 42)', "evaluator 'energy' as int 42"),
        ("register_model_builders", 'register("tiny", None)', "model builder 'tiny' as NoneType None"),
        ("register_criteria", 'register("KD", 1.5, "pytorch")', "criterion 'KD' as float 1.5"),
    ],
)
def test_a_non_callable_registration_is_refused_naming_the_plugin(site, hook, call, what):
    source = f"import autokd\n\n@autokd.hookimpl\ndef {hook}(register):\n    {call}\n"
    make_distribution(site, "autokd-sloppy", "sloppy", "fakeplugin_sloppy", source)
    with pytest.warns(plugins.PluginWarning) as caught:
        reg = autokd.registry()
    assert messages(caught)[0].startswith(
        f"plugin 'sloppy' (distribution 'autokd-sloppy') registered {what}, which is not callable"
    )
    assert not next(p for p in reg.plugins if p.name == "sloppy").registrations


def test_a_trainer_without_search_functions_is_refused(site):
    source = "import autokd\n\n@autokd.hookimpl\ndef register_trainers(register):\n    register('pytorch', object())\n"
    make_distribution(site, "autokd-sloppy", "sloppy", "fakeplugin_sloppy", source)
    with pytest.warns(
        plugins.PluginWarning,
        match="registered a pytorch trainer backend <object object at .*> without a search_functions method",
    ):
        autokd.registry()


MISSPELT = """
import autokd
import autokd.cli

def hinge(s, t):
    return 0.0

@autokd.hookimpl
def registre_losses(register):
    register("Hinge", hinge, "pytorch")
"""


def test_a_misspelt_hook_is_reported_by_pluggys_check_pending(site):
    make_distribution(site, "autokd-typo", "typo", "fakeplugin_typo", MISSPELT)
    with pytest.warns(plugins.PluginWarning) as caught:
        reg = autokd.registry()
    assert messages(caught) == [
        "plugin 'typo' (distribution 'autokd-typo') implements unknown hooks 'registre_losses' (did you mean "
        "'register_losses'?); known: ['register_advisors', 'register_model_builders', 'register_criteria', "
        "'register_losses', 'register_trainers', 'register_evaluators', 'register_executors'] "
        "(set AUTOKD_STRICT_PLUGINS=1 to make this an error)"
    ]
    assert "Hinge" not in reg.losses


def test_a_misspelt_hook_is_an_error_under_strict(site, monkeypatch):
    make_distribution(site, "autokd-typo", "typo", "fakeplugin_typo", MISSPELT)
    monkeypatch.setenv("AUTOKD_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="implements unknown hooks 'registre_losses'"):
        autokd.registry()


@pytest.mark.parametrize("var", ["AUTOKD_LOAD_PLUGINS", "AUTOKD_DISABLE_PLUGINS"])
def test_unknown_names_in_the_plugin_variables_are_named(site, monkeypatch, var):
    make_distribution(site, "autokd-alpha", "alpha", "fakeplugin_alpha", PLUGIN.format(name="alpha"))
    monkeypatch.setenv(var, "alpha,optunaa")
    with pytest.warns(plugins.PluginWarning) as caught:
        autokd.registry()
    assert messages(caught) == [
        f"{var} names 'optunaa', which no installed plugin or distribution is called (installed: alpha, autokd, "
        f"autokd-alpha, none) (set AUTOKD_STRICT_PLUGINS=1 to make this an error)"
    ]


def test_an_advisor_from_a_distribution_is_named_with_it(site, tmp_path):
    source = PLUGIN.format(name="alpha").replace("    pass", "    def ask(self):\n        return 'not a point'")
    make_distribution(site, "autokd-alpha", "alpha", "fakeplugin_alpha", source)
    agent = autokd.AutoDistillation(
        lambda arch: arch,
        {"search": {"search_space": {"x": [1, 2]}, "search_algorithm": "alpha", "metrics": ["accuracy"]}},
    )
    agent.show_progress = False
    agent.train_func = agent.eval_func = lambda model: {"accuracy": 1.0}
    with pytest.raises(autokd.errors.AdvisorError) as info:
        agent.search_loop(tmp_path / "out")
    assert str(info.value) == (
        "advisor 'alpha' (plugin 'alpha', distribution 'autokd-alpha') proposed str 'not a point' from ask(); "
        "an advisor must return a dict of one choice per parameter of the search space ['x']"
    )


def test_load_plugins_none_loads_only_the_builtins_without_a_warning(site, monkeypatch, recwarn):
    make_distribution(site, "autokd-alpha", "alpha", "fakeplugin_alpha", PLUGIN.format(name="alpha"))
    monkeypatch.setenv("AUTOKD_LOAD_PLUGINS", "none")
    reg = autokd.registry()
    assert [p.name for p in reg.plugins] == ["autokd"] and not messages(recwarn)
