"""Trials in flight: the optuna advisors are asked while earlier proposals still run (a
parallel executor), and never propose a running arch; multi-fidelity budgets reach them."""

from __future__ import annotations

import json

from optuna.trial import TrialState
from optuna_helpers import accuracy, latency, make_search

from autokd_optuna import evaluation_trials


def test_tpe_never_proposes_a_running_arch_and_sees_the_running_trials(tmp_path):
    agent = make_search("TPE", max_trials=16, executor={"max_concurrent": 4}, advisor_options={"n_startup_trials": 3})
    running_seen = []

    def train_func(model):
        study = agent.advisor.study
        running_seen.append(len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))))
        return model

    agent.train_func = train_func
    agent.search_loop(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    archs = [json.dumps(r["arch"], sort_keys=True) for r in records]
    assert len(archs) == 16 and len(set(archs)) == 16
    # four proposals in flight while a trial trains: the running trials the sampler sees
    assert max(running_seen) == 4 and running_seen[0] == 4
    assert agent.advisor.sampler._constant_liar is True
    # each running trial was told its own result: none is left running
    assert not agent.advisor.study.get_trials(states=(TrialState.RUNNING,))


def test_with_fidelity_the_advisor_learns_each_candidates_first_rung(tmp_path):
    agent = make_search(
        "TPE",
        max_trials=9,
        metrics=("accuracy", "latency"),
        fidelity={"schedule": "successive_halving", "min_fraction": 1 / 9, "eta": 3},
        advisor_options={"n_startup_trials": 3},
        train_func=lambda model, budget: model,
    )
    agent.search_loop(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 13
    # the study's evaluations (re-proposals it answered itself left out): one per candidate
    complete = evaluation_trials(agent.advisor.study)
    first = [r for r in records if r["rung"] == 0]
    assert sorted(json.dumps(t.params, sort_keys=True) for t in complete) == sorted(
        json.dumps(r["arch"], sort_keys=True) for r in first
    )
    assert all(t.values == [accuracy(t.params), latency(t.params)] for t in complete)
    assert len(agent.advisor.budget_history) == 13
