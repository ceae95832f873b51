"""The nevergrad advisors driving real searches through ``AutoDistillation`` with user
train and eval functions: every registered name, seeding, several objectives, resume,
failed trials, repeated proposals and bad options."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from nevergrad_helpers import MOBILEBERT_SPACE, SPACE, accuracy, config, make_search, recorded_trials

import autokd
from autokd_nevergrad import NevergradAdvisor

NAMES = [
    ("nevergrad", "NGOpt"),
    ("ng", "NGOpt"),
    ("NGOpt", "NGOpt"),
    ("ngopt", "NGOpt"),
    ("DE", "DE"),
    ("TwoPointsDE", "TwoPointsDE"),
    ("CMA", "CMA"),
    ("OnePlusOne", "OnePlusOne"),
    ("PortfolioDiscreteOnePlusOne", "PortfolioDiscreteOnePlusOne"),
]


@pytest.mark.parametrize(("name", "optimizer"), NAMES)
def test_each_registered_name_runs_a_search(name, optimizer, tmp_path):
    registration = autokd.registry().advisors.registration(name)
    assert (registration.plugin, registration.distribution) == ("nevergrad", "autokd-nevergrad")

    search = make_search(config(name, max_trials=8, seed=5))
    best = search.search_loop(tmp_path)

    assert isinstance(search.advisor, NevergradAdvisor)
    assert search.advisor.optimizer_name == optimizer
    assert search.advisor.optimizer.name == optimizer
    records = recorded_trials(tmp_path)
    assert [r["trial"] for r in records] == list(range(8))
    assert all(r["status"] == "ok" for r in records)
    assert len({SPACE.key(r["arch"]) for r in records}) == 8  # no arch trained twice
    for r in records:
        assert SPACE.validate(r["arch"]) == r["arch"]
        assert r["metrics"]["accuracy"] == accuracy(r["arch"])
    assert best == max(records, key=lambda r: r["metrics"]["accuracy"])["arch"]
    # Every trial was told, in order, with its raw metric value.
    assert search.advisor.history == [(r["arch"], (r["metrics"]["accuracy"],)) for r in records]


@pytest.mark.parametrize(("options", "budget"), [({}, 8), ({"budget": 30}, 30)])
@pytest.mark.parametrize("name", ["nevergrad", "DE"])
def test_the_optimizer_is_told_max_trials_as_its_budget_unless_set(name, options, budget, tmp_path):
    search = make_search(config(name, max_trials=8, seed=0, **options))
    search.search_loop(tmp_path)
    assert search.advisor.optimizer.budget == budget


def _proposals(tmp_path, algorithm, seed, **options):
    search = make_search(config(algorithm, max_trials=10, seed=seed, **options))
    search.search_loop(tmp_path)
    return [r["arch"] for r in recorded_trials(tmp_path)]


@pytest.mark.parametrize(
    ("algorithm", "options"),
    [
        ("NGOpt", {}),
        ("DE", {}),
        ("CMA", {}),
        # This one draws from numpy's global RNG (np.random.randn in its mutation).
        ("nevergrad", {"optimizer": "SmoothDiscreteLognormalOnePlusOne"}),
    ],
)
def test_same_seed_same_proposals_and_the_global_rng_is_left_alone(algorithm, options, tmp_path):
    np.random.seed(1)
    before = np.random.get_state()
    first = _proposals(tmp_path / "a", algorithm, seed=11, **options)
    after = np.random.get_state()
    assert after[0] == before[0] and np.array_equal(after[1], before[1]) and after[2:] == before[2:]

    np.random.seed(2)  # a different global state must not change the proposals
    assert _proposals(tmp_path / "b", algorithm, seed=11, **options) == first
    assert _proposals(tmp_path / "c", algorithm, seed=12, **options) != first


def _de_proposals() -> list[dict]:
    advisor = autokd.registry().advisors.get("DE")(SPACE, [autokd.Objective("accuracy", True)], seed=3)
    archs = []
    for _ in range(12):
        arch = advisor.ask()
        advisor.tell(arch, [accuracy(arch)])
        archs.append(arch)
    return archs


def test_same_seed_same_proposals_in_another_process():
    # Another process with another hash seed: nothing may depend on set or dict order
    # of the process, or on state left by earlier tests.
    script = "\n".join(
        [
            "import json, sys",
            "from test_nevergrad_search import _de_proposals",
            "json.dump(_de_proposals(), sys.stdout)",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=os.path.dirname(os.path.abspath(__file__)),
        env={**os.environ, "PYTHONHASHSEED": "1"},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    here = _de_proposals()
    assert json.loads(done.stdout) == here
    assert len({SPACE.key(a) for a in here}) == 12


def _dominates(a, b):
    """(accuracy up, latency down)."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def test_two_objectives_give_the_pareto_front(tmp_path):
    search = make_search(config("NGOpt", metrics=("accuracy", "latency"), max_trials=20, seed=1))
    best = search.search_loop(tmp_path)

    records = recorded_trials(tmp_path)
    assert len(records) == 20
    points = {r["trial"]: (r["metrics"]["accuracy"], r["metrics"]["latency"]) for r in records}
    expected = [t for t, p in points.items() if not any(_dominates(q, p) for q in points.values())]
    front = [r.trial for r in search.pareto_front]
    assert front == expected
    assert len(front) >= 3
    assert best == records[max(front, key=lambda t: points[t][0])]["arch"]

    # nevergrad was told both objectives (latency as is, accuracy negated) and its own
    # front holds only archs of the search's front, with their raw values.
    advisor = search.advisor
    assert advisor.optimizer.num_objectives == 2
    by_key = {SPACE.key(r["arch"]): r for r in records}
    own_front = advisor.pareto_front()
    assert own_front
    for arch, values in own_front:
        record = by_key[SPACE.key(arch)]
        assert record["trial"] in front
        assert values == (record["metrics"]["accuracy"], record["metrics"]["latency"])


def test_resume_tells_every_recorded_trial_before_the_first_ask(tmp_path):
    def flaky_eval(model):
        if model["num_attention_heads"] == 1:
            raise RuntimeError("no kernel for one head")
        return {"accuracy": accuracy(model)}

    make_search(config("DE", max_trials=6, seed=3), flaky_eval).search_loop(tmp_path)
    first = recorded_trials(tmp_path)
    assert len(first) == 6

    resumed = make_search(config("DE", max_trials=10, seed=3), flaky_eval)
    advisor = resumed.advisor
    at_first_ask = {}
    ask = advisor.ask

    def recording_ask():
        if not at_first_ask:
            at_first_ask["history"] = list(advisor.history)
            at_first_ask["told_not_asked"] = advisor.optimizer.num_tell_not_asked
        return ask()

    advisor.ask = recording_ask
    resumed.search_loop(tmp_path, resume=True)

    replayed = [(r["arch"], (r["metrics"]["accuracy"],) if r["status"] == "ok" else None) for r in first]
    assert None in [values for _, values in replayed]  # the replay holds a failed trial too
    assert at_first_ask["history"] == replayed
    # nevergrad learned every recorded trial as a point it had not asked for.
    assert at_first_ask["told_not_asked"] == 6
    records = recorded_trials(tmp_path)
    assert records[:6] == first
    assert len(records) == 10
    assert len({SPACE.key(r["arch"]) for r in records}) == 10


def test_failed_trials_are_told_a_penalty_worse_than_every_success_so_far(tmp_path):
    def flaky_eval(model):
        if model["num_attention_heads"] == 1:
            raise RuntimeError("no kernel for one head")
        return {"accuracy": accuracy(model)}

    search = make_search(config("DE", max_trials=16, seed=2), flaky_eval)
    told = []
    search.advisor.optimizer.register_callback(
        "tell", lambda optimizer, candidate, loss: told.append((search.advisor._arch(candidate.value), loss))
    )
    search.search_loop(tmp_path)

    records = recorded_trials(tmp_path)
    failed = [r for r in records if r["status"] == "failed"]
    assert len(records) == 16
    assert failed and all(r["error"] == "RuntimeError: no kernel for one head" for r in failed)
    failed_keys = {SPACE.key(r["arch"]) for r in failed}
    successes_so_far = []
    penalties = 0
    for arch, loss in told:
        if SPACE.key(arch) in failed_keys:
            penalties += 1
            assert successes_so_far and loss > max(successes_so_far)
        else:
            assert loss == -accuracy(arch)  # higher is better: negated
            successes_so_far.append(loss)
    assert penalties >= len(failed)


def test_repeated_proposals_are_answered_without_spending_trials(tmp_path):
    space = {"layers": [2, 4, 6], "width": [64, 128]}
    search = make_search(
        config("OnePlusOne", max_trials=10, seed=0, space=space),
        lambda model: {"accuracy": model["layers"] * model["width"] / 768},
    )
    search.search_loop(tmp_path)

    records = recorded_trials(tmp_path)
    assert len(records) == 6  # the space is exhausted; nothing was trained twice
    assert len({json.dumps(r["arch"], sort_keys=True) for r in records}) == 6
    advisor = search.advisor
    assert advisor.repeats_answered > 0
    # One nevergrad tell per trial plus one per repeat answered from the told values.
    assert advisor.optimizer.num_tell == 6 + advisor.repeats_answered
    # The core answering a repeat again costs nevergrad nothing.
    advisor.tell(records[0]["arch"], [records[0]["metrics"]["accuracy"]])
    assert advisor.optimizer.num_tell == 6 + advisor.repeats_answered
    with pytest.raises(autokd.SearchExhausted):
        advisor.ask()


_REGISTRY_HINT = 'list them with python -c "import nevergrad as ng; print(sorted(ng.optimizers.registry))"'
_ADVISOR_OPTIONS = "invalid configuration: auto_distillation.search.advisor_options: "


def _registry_size():
    import nevergrad as ng

    return len(ng.optimizers.registry)


@pytest.mark.parametrize(
    ("algorithm", "options", "message"),
    [
        (
            "nevergrad",
            {"optimizer": "NoSuchOptimizer"},
            "unknown nevergrad optimizer 'NoSuchOptimizer' in search.advisor_options.optimizer. autokd registers "
            "NGOpt, DE, TwoPointsDE, CMA, OnePlusOne, PortfolioDiscreteOnePlusOne as search_algorithm names; any "
            "of nevergrad's {n} optimizers works through search_algorithm: nevergrad, " + _REGISTRY_HINT,
        ),
        (
            "nevergrad",
            {"budget": 0},
            "nevergrad advisor: search.advisor_options.budget must be a positive integer, got 0",
        ),
        (
            "nevergrad",
            {"optimizer": "BFGS", "num_workers": 2},
            (
                "nevergrad optimizer 'BFGS' runs one evaluation at a time: set search.advisor_options.num_workers "
                "to 1 (got 2) or choose another optimizer"
            ),
        ),
        (
            "DE",
            {"optimizer": "CMA"},
            (
                "search_algorithm 'DE' is the nevergrad optimizer DE; it does not take "
                "search.advisor_options.optimizer='CMA'. Use search_algorithm: nevergrad with "
                "advisor_options.optimizer: CMA instead"
            ),
        ),
        (
            "NGOpt",
            {"population": 20},
            (
                "NevergradAdvisor: unknown search.advisor_options ['population']; accepted: ['budget', "
                "'deterministic', 'failure_values', 'max_concurrent', 'max_repeats', 'num_workers', 'optimizer']"
            ),
        ),
        (
            "NGOpt",
            {"failure_values": [0.0, 100.0]},
            (
                "nevergrad advisor: search.advisor_options.failure_values has 2 values, expected one per metric "
                "['accuracy']"
            ),
        ),
        (
            "NGOpt",
            {"deterministic": "yes"},
            "nevergrad advisor: search.advisor_options.deterministic must be true or false, got 'yes'",
        ),
    ],
)
def test_bad_options_give_a_clear_error(algorithm, options, message):
    search = make_search(config(algorithm, **options))
    with pytest.raises(autokd.ConfigError) as excinfo:
        _ = search.advisor  # built on first use
    assert str(excinfo.value) == _ADVISOR_OPTIONS + message.format(n=_registry_size())


def test_a_misspelt_optimizer_is_matched_or_named(tmp_path):
    search = make_search(config("nevergrad", optimizer="twopointsde"))
    assert search.advisor.optimizer_name == "TwoPointsDE"  # unique case-insensitive match
    with pytest.raises(autokd.ConfigError, match=r"unknown nevergrad optimizer 'NGOptt' .* Did you mean NGOpt, "):
        _ = make_search(config("nevergrad", optimizer="NGOptt")).advisor


def test_shared_storage_is_refused_with_the_way_out():
    conf = config("NGOpt")
    conf["auto_distillation"]["search"].setdefault("advisor_options", {})["storage"] = "journal:///tmp/study.log"
    with pytest.raises(autokd.ConfigError) as excinfo:
        _ = make_search(conf).advisor
    assert str(excinfo.value) == _ADVISOR_OPTIONS + (
        "nevergrad advisors keep their state in one process and cannot share a search through "
        "advisor_options.storage: remove it, or use an autokd-optuna advisor (BO, TPE, NSGA2) to run one search "
        "from several processes"
    )


def test_the_search_space_of_the_seed_is_searched_as_categories():
    advisor = NevergradAdvisor(MOBILEBERT_SPACE, [autokd.Objective("accuracy", True)], seed=0)
    import nevergrad as ng

    params = advisor.parametrization
    assert isinstance(params, ng.p.Dict)
    for name, values in MOBILEBERT_SPACE.items():
        assert isinstance(params[name], ng.p.Choice)
        assert list(params[name].choices.value) == list(range(len(values)))
    arch = advisor.ask()
    assert SPACE.validate(arch) == arch


def test_trials_in_flight_become_nevergrad_workers_and_never_run_twice(tmp_path):
    conf = {
        "search": {
            "search_space": MOBILEBERT_SPACE,
            "search_algorithm": "DE",
            "metrics": ["accuracy"],
            "higher_is_better": [True],
            "max_trials": 12,
            "seed": 0,
            "executor": {"max_concurrent": 3},
        }
    }
    agent = autokd.AutoDistillation(lambda arch: dict(arch), conf)
    agent.show_progress = False
    agent.train_func = lambda model: model
    agent.eval_func = lambda model: {"accuracy": accuracy(model)}
    agent.search_loop(tmp_path)
    assert agent.advisor.optimizer.num_workers == 3 and agent.advisor.num_workers == 3
    archs = [json.dumps(r.arch, sort_keys=True) for r in agent.search_result]
    assert len(archs) == 12 and len(set(archs)) == 12
    # an optimizer that runs one evaluation at a time gets one worker, not a refusal
    conf["search"]["search_algorithm"] = "nevergrad"
    conf["search"]["advisor_options"] = {"optimizer": "BO"}
    no_parallel = autokd.AutoDistillation(lambda arch: dict(arch), conf)
    assert no_parallel.advisor.num_workers == 1
