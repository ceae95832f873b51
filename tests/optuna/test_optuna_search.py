"""The BO, TPE and NSGA2 advisors running real searches through AutoDistillation."""

from __future__ import annotations

import json

import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from optuna_helpers import SPACE, accuracy, latency, make_search

import autokd
from autokd_optuna import (
    REPEAT_ATTR,
    REPLAYED_ATTR,
    BOAdvisor,
    NSGA2Advisor,
    TPEAdvisor,
    evaluation_trials,
)

# GP after 3 random trials keeps the BO runs short but exercises the GP itself.
FAST = {"BO": {"n_startup_trials": 3}, "TPE": {"n_startup_trials": 3}, "NSGA2": {"population_size": 4}}
ALGORITHMS = ["BO", "TPE", "NSGA2"]
GP_PROPOSED = "gp:relative_params:0"  # what GPSampler stores on a trial it proposed


def _records(output_dir) -> list[dict]:
    with open(output_dir / "trials.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _arch_of(trial) -> dict:
    return {name: trial.params[name] for name in SPACE}


# --- registration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [("BO", BOAdvisor), ("bo", BOAdvisor), ("bayesian", BOAdvisor), ("TPE", TPEAdvisor), ("NSGA2", NSGA2Advisor)],
)
def test_each_name_resolves_to_its_advisor_from_the_entry_point(name, cls):
    registration = autokd.registry().advisors.registration(name)
    assert registration.value is cls
    assert (registration.plugin, registration.distribution) == ("optuna", "autokd-optuna")


# --- a short search per name -------------------------------------------------------------


@pytest.mark.parametrize("name", ["BO", "bayesian", "TPE", "NSGA2"])
def test_short_search_records_every_trial_in_the_study(name, tmp_path):
    algorithm = autokd.registry().advisors.registration(name).name
    agent = make_search(name, max_trials=6, advisor_options=FAST[algorithm])
    best = agent.search_loop(tmp_path)

    records = _records(tmp_path)
    archs = [r["arch"] for r in records]
    assert len(records) == 6 and len({json.dumps(a) for a in archs}) == 6
    assert [r["metrics"]["accuracy"] for r in records] == [accuracy(a) for a in archs]
    assert best == max(archs, key=accuracy)
    # optuna holds exactly the six evaluations, in order, with the told values.
    study = agent.advisor.study
    evaluated = evaluation_trials(study)
    assert [_arch_of(t) for t in evaluated] == archs
    assert [t.values for t in evaluated] == [[accuracy(a)] for a in archs]
    if algorithm == "BO":  # trials 3..5 came from the GP, not the random start
        assert [GP_PROPOSED in t.system_attrs for t in evaluated] == [False] * 3 + [True] * 3


def test_categorical_choices_stay_categorical_values(tmp_path):
    space = {"activation": ["gelu", "relu", "silu"], "hidden_size": [128, 384, 256], "layout": [[2, 2], [4], [1, 3]]}
    agent = make_search(
        "BO",
        space=space,
        max_trials=7,
        advisor_options={"n_startup_trials": 2},
        eval_func=lambda m: {
            "accuracy": {"gelu": 0.3, "relu": 0.2, "silu": 0.1}[m["activation"]] + m["hidden_size"] / 1000
        },
    )
    agent.search_loop(tmp_path)
    study = agent.advisor.study
    # One categorical parameter per key, choices as given (lists named by their JSON).
    distributions = evaluation_trials(study)[0].distributions
    assert distributions == {
        "activation": CategoricalDistribution(["gelu", "relu", "silu"]),
        "hidden_size": CategoricalDistribution([128, 384, 256]),
        "layout": CategoricalDistribution(["[2, 2]", "[4]", "[1, 3]"]),
    }
    for record in agent.search_result:
        assert record.arch["activation"] in space["activation"]
        assert record.arch["hidden_size"] in space["hidden_size"]
        assert record.arch["layout"] in space["layout"]  # the list itself, not its label


# --- reproducibility ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_same_seed_same_proposals(algorithm, tmp_path):
    def proposals(seed, run):
        agent = make_search(algorithm, max_trials=6, seed=seed, advisor_options=FAST[algorithm])
        agent.search_loop(tmp_path / run)
        return [r.arch for r in agent.search_result]

    first = proposals(7, "a")
    assert proposals(7, "b") == first
    assert proposals(8, "c") != first


# --- multi-objective ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_two_objectives_give_the_pareto_front(algorithm, tmp_path):
    agent = make_search(algorithm, metrics=("accuracy", "latency"), max_trials=8, advisor_options=FAST[algorithm])
    agent.search_loop(tmp_path)
    records = agent.search_result
    points = [(accuracy(r.arch), latency(r.arch)) for r in records]

    def dominated(p):
        return any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)

    by_hand = [r.arch for r, p in zip(records, points, strict=True) if not dominated(p)]
    assert by_hand and [r.arch for r in agent.pareto_front] == by_hand
    # optuna's own front over the same study agrees.
    study = agent.advisor.study
    assert study.directions[0].name == "MAXIMIZE" and study.directions[1].name == "MINIMIZE"
    optuna_front = {json.dumps(_arch_of(t)) for t in study.best_trials}
    assert optuna_front == {json.dumps(a) for a in by_hand}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["arch"] for r in summary["pareto_front"]] == by_hand
    if algorithm == "BO":  # the GP (logEHVI) proposed the trials after the random start
        evaluated = evaluation_trials(study)
        assert all(GP_PROPOSED in t.system_attrs or "autokd_fallback" in t.user_attrs for t in evaluated[3:])


# --- failures and repeats ----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_failed_trial_fails_the_optuna_trial_and_the_search_goes_on(algorithm, tmp_path):
    def eval_func(model):
        if model["hidden_size"] == 128:
            raise RuntimeError("out of memory")
        return {"accuracy": accuracy(model)}

    agent = make_search(algorithm, max_trials=8, eval_func=eval_func, advisor_options=FAST[algorithm], seed=3)
    agent.search_loop(tmp_path)
    records = agent.search_result
    assert len(records) == 8
    failed = [r for r in records if r.status == "failed"]
    assert failed, "seed 3 proposes a hidden_size=128 arch within 8 trials"
    assert all(r.arch["hidden_size"] == 128 and r.error == "RuntimeError: out of memory" for r in failed)
    states = {json.dumps(_arch_of(t)): t.state for t in evaluation_trials(agent.advisor.study)}
    for record in records:
        expected = TrialState.FAIL if record.arch["hidden_size"] == 128 else TrialState.COMPLETE
        assert states[json.dumps(record.arch)] == expected


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_repeated_proposals_never_reach_the_loop(algorithm, tmp_path):
    space = {"hidden_size": [128, 256], "num_feedforward_networks": [2, 4]}
    agent = make_search(algorithm, space=space, max_trials=10, advisor_options=FAST[algorithm])
    advisor = agent.advisor
    told = []
    real_tell = advisor.tell
    advisor.tell = lambda arch, values: (told.append(dict(arch)), real_tell(arch, values))[1]

    agent.search_loop(tmp_path)
    # Four points: four trials, then the advisor reports the space exhausted.
    assert len(agent.search_result) == 4
    assert len(told) == 4  # the loop never had to answer a re-proposal
    study = advisor.study
    assert len(evaluation_trials(study)) == 4
    repeats = [t for t in study.trials if REPEAT_ATTR in t.user_attrs]
    assert len(repeats) == advisor.repeated_proposals
    original = {t.number: t for t in study.trials}
    for trial in repeats:  # answered with the values of the trial it repeats
        assert trial.values == original[trial.user_attrs[REPEAT_ATTR]].values
        assert trial.params == original[trial.user_attrs[REPEAT_ATTR]].params


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_sampler_that_insists_gets_the_nearest_unevaluated_arch():
    import optuna

    class Insisting(TPEAdvisor):
        """A sampler pinned to one arch: it can only ever re-propose it, like a GP sure of
        its incumbent."""

        one_attempt_when_stuck = True  # as BO

        def _make_sampler(self):
            return optuna.samplers.PartialFixedSampler({"a": 1, "b": 1}, optuna.samplers.RandomSampler(seed=0))

    space = {"a": [1, 2, 3], "b": [1, 2, 3]}
    advisor = Insisting(space, [autokd.Objective("acc", True)], seed=0, max_repeats=2)
    advisor.tell({"a": 1, "b": 1}, [0.5])
    advisor.tell({"a": 1, "b": 2}, [0.6])
    # Three proposals of (1, 1) (max_repeats=2), then the nearest free arch: one
    # parameter away and one rank away: (2, 1).
    assert advisor.ask() == {"a": 2, "b": 1}
    assert advisor.repeated_proposals == 3
    advisor.tell({"a": 2, "b": 1}, [0.7])
    # Stuck: a single re-proposal before falling back; (1, 3) and (3, 1) are both two ranks away.
    assert advisor.ask() in ({"a": 1, "b": 3}, {"a": 3, "b": 1})
    assert advisor.repeated_proposals == 4


def test_exhausted_space_raises_search_exhausted():
    advisor = TPEAdvisor({"a": [1, 2]}, [autokd.Objective("acc", True)], seed=0)
    advisor.tell({"a": 1}, [0.1])
    advisor.tell({"a": 2}, None)
    with pytest.raises(autokd.SearchExhausted, match="all 2 points of the search space were evaluated"):
        advisor.ask()


# --- warm start on resume ----------------------------------------------------------------


def _fail_256_128(model):
    if model["hidden_size"] == 256 and model["intra_bottleneck_size"] == 128:
        raise RuntimeError("diverged")
    return {"accuracy": accuracy(model)}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_resume_tells_every_recorded_trial_before_the_first_ask(algorithm, tmp_path):
    options = {"BO": {"n_startup_trials": 4}, "TPE": {"n_startup_trials": 4}, "NSGA2": {"population_size": 4}}[
        algorithm
    ]
    first = make_search(algorithm, max_trials=5, seed=1, advisor_options=options, eval_func=_fail_256_128)
    first.search_loop(tmp_path)
    recorded = [(r.arch, r.values(first.objectives)) for r in first.search_result]

    resumed = make_search(algorithm, max_trials=8, seed=1, advisor_options=options, eval_func=_fail_256_128)
    trained = []
    resumed.train_func = lambda model: trained.append(dict(model)) or model
    advisor = resumed.advisor
    history_at_first_ask = []
    real_ask = advisor.ask
    advisor.ask = lambda: (
        (history_at_first_ask.append(list(advisor.history)) if not history_at_first_ask else None) or real_ask()
    )
    resumed.search_loop(tmp_path, resume=True)

    assert history_at_first_ask[0] == recorded
    assert len(trained) == 3 and all(arch not in [a for a, _ in recorded] for arch in trained)
    records = _records(tmp_path)
    assert len(records) == 8 and len({json.dumps(r["arch"]) for r in records}) == 8
    study = advisor.study
    replayed = [t for t in study.trials if REPLAYED_ATTR in t.user_attrs]
    assert [(_arch_of(t), None if t.state == TrialState.FAIL else tuple(t.values)) for t in replayed] == recorded
    assert [t.number for t in replayed] == [0, 1, 2, 3, 4]  # all before the first new trial
    if algorithm == "BO":  # four replayed trials complete the random start: the GP proposes at once
        assert GP_PROPOSED in evaluation_trials(study)[5].system_attrs


def test_resume_against_a_persistent_study_tells_it_nothing_twice(tmp_path):
    url = f"journal://{tmp_path}/study.log"
    options = {"n_startup_trials": 3, "storage": url, "study_name": "resumed"}
    first = make_search("TPE", max_trials=4, advisor_options=options)
    first.search_loop(tmp_path / "out")

    resumed = make_search("TPE", max_trials=7, advisor_options=options)
    resumed.search_loop(tmp_path / "out", resume=True)

    records = _records(tmp_path / "out")
    study = resumed.advisor.study
    evaluated = evaluation_trials(study)
    # The four recorded trials were found in the journal, not added again.
    assert [_arch_of(t) for t in evaluated] == [r["arch"] for r in records]
    assert [t.values for t in evaluated] == [[r["metrics"]["accuracy"]] for r in records]
    assert len(records) == 7
    assert not any(REPLAYED_ATTR in t.user_attrs for t in study.trials)
    assert len(resumed.advisor.history) == 7
