"""Bad advisor options and storage settings give an error naming the field and the fix."""

from __future__ import annotations

import pytest
from optuna_helpers import SPACE, make_search

import autokd


def _error(algorithm: str, **search) -> str:
    with pytest.raises(autokd.ConfigError) as info:
        _ = make_search(algorithm, **search).advisor
    return str(info.value)


def test_unknown_option_lists_the_accepted_ones():
    assert _error("BO", advisor_options={"n_startup": 3}) == (
        "invalid configuration: auto_distillation.search.advisor_options: BO does not accept ['n_startup']; "
        "accepted: ['deterministic_objective', 'max_repeats', 'n_startup_trials', 'storage', 'study_name']"
    )


def test_option_of_the_wrong_type_names_the_option_and_what_it_must_be():
    assert _error("TPE", advisor_options={"n_startup_trials": "ten"}) == (
        "invalid configuration: auto_distillation.search.advisor_options.n_startup_trials: "
        "must be an integer >= 0, got 'ten'"
    )


def test_every_bad_option_is_reported_at_once():
    assert _error("NSGA2", advisor_options={"population_size": 1, "crossover_prob": 1.5}) == (
        "invalid configuration (2 problems):\n"
        "  - auto_distillation.search.advisor_options.population_size: must be an integer >= 2, got 1\n"
        "  - auto_distillation.search.advisor_options.crossover_prob: must be a number between 0 and 1, got 1.5"
    )


def test_options_optuna_itself_rejects_carry_optunas_reason():
    assert _error("TPE", advisor_options={"group": True, "multivariate": False}) == (
        "invalid configuration: auto_distillation.search.advisor_options: optuna.samplers.TPESampler rejected "
        "{'group': True, 'multivariate': False}: ``group`` option can only be enabled when ``multivariate`` "
        "is enabled."
    )


def test_storage_needs_a_study_name(tmp_path):
    url = f"journal://{tmp_path}/study.log"
    assert _error("TPE", advisor_options={"storage": url}) == (
        f"invalid configuration: auto_distillation.search.advisor_options.study_name: missing: advisor_options.storage is set ({url!r}), "
        "so name the study, with the same name in every process that works on this search"
    )


def test_a_plain_path_is_not_a_storage_url(tmp_path):
    message = _error("TPE", advisor_options={"storage": str(tmp_path / "study.log"), "study_name": "s"})
    assert message.startswith(
        f"invalid configuration: auto_distillation.search.advisor_options.storage: {str(tmp_path / 'study.log')!r} is not a storage "
        "URL this plugin knows; write journal:///absolute/path/study.log for a journal file"
    )


def test_journal_in_a_missing_directory_is_refused_not_created(tmp_path):
    missing = tmp_path / "not-mounted"
    message = _error("TPE", advisor_options={"storage": f"journal://{missing}/study.log", "study_name": "s"})
    assert message == (
        f"invalid configuration: auto_distillation.search.advisor_options.storage: the directory of the journal file "
        f"'{missing}/study.log' does not exist ({missing}); create it (on a file system every worker mounts) "
        "or fix the path"
    )
    assert not missing.exists()


def test_a_shared_study_of_another_search_is_refused(tmp_path):
    url = f"journal://{tmp_path}/study.log"
    _ = make_search("TPE", advisor_options={"storage": url, "study_name": "mobilebert"}).advisor  # creates the study
    other_space = {**SPACE, "hidden_size": [128, 256]}
    message = _error("TPE", advisor_options={"storage": url, "study_name": "mobilebert"}, space=other_space)
    assert message.startswith(
        f"invalid configuration: auto_distillation.search.advisor_options.study_name: study 'mobilebert' in {url!r} was created "
        "for the search space {'hidden_size': [128, 256, 384, 512],"
    )
    assert message.endswith("; use another advisor_options.study_name for a different search")
    message = _error(
        "TPE", advisor_options={"storage": url, "study_name": "mobilebert"}, metrics=("accuracy", "latency")
    )
    assert message == (
        f"invalid configuration: auto_distillation.search.advisor_options.study_name: study 'mobilebert' in {url!r} optimises "
        "['maximize'], this search ['maximize', 'minimize']; use another advisor_options.study_name for a different search"
    )


def test_bo_without_its_extra_names_the_extra(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "scipy") else find_spec(name, *a)
    )
    assert _error("BO") == (
        "invalid configuration: auto_distillation.search.search_algorithm: BO needs torch, scipy "
        "(optuna.samplers.GPSampler), which is not installed: pip install 'autokd-optuna[bo]' "
        "(install torch==2.13.0 or your CUDA build of torch first)"
    )


def test_tpe_needs_neither_torch_nor_scipy(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "scipy") else find_spec(name, *a)
    )
    assert make_search("TPE").advisor.name == "TPE"


def test_the_old_spelling_search_storage_still_opens_the_shared_study(tmp_path):
    url = f"journal://{tmp_path}/study.log"
    with pytest.warns(DeprecationWarning) as caught:
        old = make_search("TPE", storage=url, study_name="moved").advisor
    assert [str(w.message) for w in caught] == [
        "auto_distillation.search.storage is deprecated: write it as "
        "auto_distillation.search.advisor_options.storage (read from there now)",
        "auto_distillation.search.study_name is deprecated: write it as "
        "auto_distillation.search.advisor_options.study_name (read from there now)",
    ]
    assert old.options["storage"] == url and old.options["study_name"] == "moved"
    import optuna

    from autokd_optuna import open_storage

    # Read, not ignored: the study was created in the journal, not in memory.
    assert optuna.get_all_study_names(storage=open_storage(url)) == ["moved"]
