"""Multi-fidelity search with user functions on a synthetic landscape: successive halving
and hyperband rungs, promotion by rank (two objectives and a constraint), continuation
of the same model, release of dropped candidates, resume mid-rung, final distillation."""

import json
import os

import pytest

import autokd
from autokd import AutoDistillation, ConfigError
from autokd.schedule import plan_brackets, rung_budgets

# Nine candidates (grid order: candidate n has w = n). Full-budget (accuracy, latency):
#   0 (.50, 1)  1 (.60, 2)  2 (.55, 3)  3 (.70, 4)  4 (.65, 5)  5 (.80, 6)
#   6 (.90, 7)  7 (.95, 8)  8 (.40, 9); constraint latency <= 6 leaves 6, 7, 8 infeasible.
# Feasible first front {0, 1, 3, 5}; crowding distances (accuracy range .3, latency 5):
# 0 and 5 infinite, 1: .2/.3 + 3/5 = 1.27, 3: .2/.3 + 4/5 = 1.47; second front {2, 4};
# then the infeasible 6, 7 (front) and 8. 0 and 5 tie on distance: the first metric
# (accuracy) puts 5 first, as it would choose the best. Rank: 5, 0, 3, 1, 2, 4, 6, 7, 8.
ACCURACY = [0.50, 0.60, 0.55, 0.70, 0.65, 0.80, 0.90, 0.95, 0.40]


class Student:
    """A model whose quality grows with what it trained."""

    def __init__(self, arch):
        self.arch = dict(arch)
        self.trained = 0.0
        self.budgets = []


def config(max_trials=9, fidelity=None, final=None, space=9, **search):
    conf = {
        "search": {
            "search_space": {"w": list(range(space))},
            "search_algorithm": "grid",
            "metrics": ["accuracy", "latency"],
            "higher_is_better": [True, False],
            "constraints": ["latency <= 6"],
            "max_trials": max_trials,
            "fidelity": fidelity or {"schedule": "successive_halving", "min_fraction": 1 / 9, "eta": 3},
            **search,
        },
        "flash_distillation": {"block_names": ["a", "b"], "train_steps": [90, 90]},
        "regular_distillation": {"train_steps": [900]},
    }
    if final is not None:
        conf["final_distillation"] = final
    return {"auto_distillation": conf}


def make_agent(conf, models, interrupt_at=None):
    agent = AutoDistillation(Student, conf)
    agent.show_progress = False
    calls = []

    def train_func(model, budget):
        calls.append(1)
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt  # the process is killed mid-trial
        trial = autokd.current_trial()
        os.makedirs(trial.checkpoint_dir, exist_ok=True)
        with open(os.path.join(trial.checkpoint_dir, "state.json"), "w") as fh:
            json.dump({"trained": model.trained}, fh)
        model.budgets.append(budget)
        model.trained += budget if isinstance(budget, float) else max(budget)
        models.setdefault(trial.candidate, []).append(model)
        return model

    def eval_func(model):
        w = model.arch["w"]
        return {"accuracy": ACCURACY[w % 9] * (0.5 + 0.5 * min(model.trained, 1.0)), "latency": w % 9 + 1.0}

    agent.train_func = train_func
    agent.eval_func = eval_func
    return agent


def read_trials(path):
    return [json.loads(line) for line in (path / "trials.jsonl").read_text().splitlines()]


def by_rung(records):
    out = {}
    for r in records:
        out.setdefault(r["rung"], []).append(r["candidate"])
    return out


def test_rung_budgets_and_brackets():
    assert rung_budgets(1 / 9, 3) == pytest.approx([1 / 9, 1 / 3, 1.0])
    assert rung_budgets(0.2, 3) == pytest.approx([0.2, 0.6, 1.0])
    assert rung_budgets(1.0, 3) == [1.0]
    assert plan_brackets("successive_halving", 3, 3, 9) == [(0, 9)]
    # hyperband, s_max = 2: 9 candidates from rung 0, 5 (ceil 4.5) from rung 1, 3 at the full budget
    assert plan_brackets("hyperband", 3, 3, 17) == [(0, 9), (1, 5), (2, 3)]
    assert plan_brackets("hyperband", 3, 3, 34) == [(0, 18), (1, 10), (2, 6)]


def test_successive_halving_promotes_by_constraint_rank_and_crowding(tmp_path):
    models = {}
    agent = make_agent(config(), models)
    best = agent.search_loop(tmp_path)
    records = read_trials(tmp_path)
    assert [r["trial"] for r in records] == list(range(13))
    assert all(r["phase"] == "search" for r in records)
    assert by_rung(records) == {0: list(range(9)), 1: [5, 0, 3], 2: [5]}
    budgets = {r["rung"]: r["budget"] for r in records}
    assert budgets == pytest.approx({0: 1 / 9, 1: 1 / 3, 2: 1.0})
    # candidate 5 went on from the same model object: increments 1/9, 2/9, 6/9 add up to 1
    assert len({id(m) for m in models[5]}) == 1
    assert models[5][0].budgets == pytest.approx([1 / 9, 2 / 9, 6 / 9])
    assert sum(models[5][0].budgets) == pytest.approx(1.0)
    assert models[0][0].budgets == pytest.approx([1 / 9, 2 / 9]) and models[1][0].budgets == pytest.approx([1 / 9])
    # the front and the best come from full-budget evaluations only
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [t["trial"] for t in summary["pareto_front"]] == [12]
    assert summary["best_trial"] == 12 and best == {"w": 5} and summary["candidates"] == 9
    assert summary["rung_budgets"] == pytest.approx([1 / 9, 1 / 3, 1.0])
    # dropped candidates were released: models and checkpoint directories
    assert agent.runner.held() == [5]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["candidate-5"]
    assert agent.trained_model(5) is models[5][0] and agent.trained_model(0) is None
    # the advisor learnt every candidate's first evaluation, and heard of every evaluation
    assert [h[0]["w"] for h in agent.advisor.history] == list(range(9))
    assert len(agent.advisor.budget_history) == 13


def test_one_objective_ranks_by_value_and_hyperband_brackets(tmp_path):
    values = [(7 * w) % 17 / 17 for w in range(17)]
    conf = config(
        max_trials=17,
        space=17,
        fidelity={"schedule": "hyperband", "min_fraction": 1 / 9, "eta": 3},
        metrics=["accuracy"],
        higher_is_better=[True],
        constraints=[],
    )
    agent = make_agent(conf, {})
    agent.eval_func = lambda model: {"accuracy": values[model.arch["w"]] * min(model.trained, 1.0)}
    agent.search_loop(tmp_path)
    records = read_trials(tmp_path)
    assert len(records) == 9 + 3 + 1 + 5 + 1 + 3

    def top(candidates, k):
        return sorted(sorted(candidates, key=lambda c: -values[c])[:k])

    at = {}
    for r in records:
        at.setdefault((r["candidate"], r["rung"]), r)
    first = list(range(9))  # bracket 0: 9 at 1/9, 3 at 1/3, 1 at 1
    assert sorted(c for c, rung in at if rung == 0) == first
    assert sorted(c for c in first if (c, 1) in at) == top(first, 3)
    assert sorted(c for c in first if (c, 2) in at) == top(top(first, 3), 1)
    second = list(range(9, 14))  # bracket 1: 5 at 1/3, 1 at 1
    assert all(at[(c, 1)]["budget"] == pytest.approx(1 / 3) for c in second)
    assert sorted(c for c in second if (c, 2) in at) == top(second, 1)
    third = [14, 15, 16]  # bracket 2: 3 at the full budget
    assert all(at[(c, 2)]["budget"] == 1.0 for c in third)
    summary = json.loads((tmp_path / "summary.json").read_text())
    full = [r for r in records if r["budget"] == 1.0]
    assert summary["best_trial"] == max(full, key=lambda r: r["metrics"]["accuracy"])["trial"]


def test_resume_in_the_middle_of_a_rung_trains_no_candidate_twice(tmp_path):
    # The 11th evaluation is candidate 0's at rung 1: killed then; 5 has its rung-1 record
    with pytest.raises(KeyboardInterrupt):
        make_agent(config(), {}, interrupt_at=11).search_loop(tmp_path)
    before = read_trials(tmp_path)
    assert [(r["candidate"], r["rung"]) for r in before][-2:] == [(8, 0), (5, 1)]

    models = {}
    agent = make_agent(config(), models)
    agent.search_loop(tmp_path, resume=True)
    records = read_trials(tmp_path)
    assert records[: len(before)] == before
    pairs = [(r["candidate"], r["rung"]) for r in records]
    assert len(pairs) == len(set(pairs)) == 13  # nothing trained twice, nothing lost
    assert sorted(r["trial"] for r in records) == list(range(13))
    assert by_rung(records) == {0: list(range(9)), 1: [5, 0, 3], 2: [5]}
    # the resumed process held no model: 5 (recorded at rung 1) was trained from scratch
    # to the full budget, 0 and 3 (rung 1 not recorded) to 1/3
    assert models[5][0].budgets == pytest.approx([1.0])
    full = records[-1]
    assert full["candidate"] == 5 and full["extras"].get("retrained_from_scratch") is True
    assert full["extras"].get("continued_from") is None
    resumed_0 = next(r for r in records if (r["candidate"], r["rung"]) == (0, 1))
    assert resumed_0["extras"]["retrained_from_scratch"] is True and models[0][0].budgets == pytest.approx([1 / 3])
    assert resumed_0["trial"] == 10  # the number the killed trial had


def test_final_distillation_continues_the_best_and_is_chosen(tmp_path):
    models = {}
    agent = make_agent(config(final={"candidates": 1, "multiplier": 3}), models)
    best = agent.search_loop(tmp_path)
    records = read_trials(tmp_path)
    final = [r for r in records if r["phase"] == "final"]
    assert len(final) == 1 and final[0]["trial"] == 13 and final[0]["candidate"] == 5
    assert final[0]["budget"] == 3.0 and final[0]["rung"] is None
    assert final[0]["extras"]["continued_from"] == 1.0
    assert models[5][-1] is models[5][0] and models[5][0].budgets[-1] == pytest.approx(2.0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_trial"] == 13 and summary["best_phase"] == "final" and best == {"w": 5}
    assert [t["trial"] for t in summary["pareto_front"]] == [12]  # the search's front
    assert [r["trial"] for r in summary["final"]] == [13]


def test_final_distillation_of_two_with_steps_per_stage(tmp_path):
    models = {}
    # every candidate reaches the full budget (min_fraction 1): the front (over every
    # full-budget evaluation, as without fidelity) is {0, 1, 3, 5, 6, 7}
    conf = config(
        fidelity={"schedule": "successive_halving", "min_fraction": 1.0, "eta": 3},
        final={"candidates": 2, "train_steps": [180, 180, 1800]},
    )
    agent = make_agent(conf, models)
    agent.search_loop(tmp_path)
    final = [r for r in read_trials(tmp_path) if r["phase"] == "final"]
    # the best (feasible, most accurate: 5), then the front's next by the same rule (3)
    assert [r["candidate"] for r in final] == [5, 3]
    assert all(r["budget"] == [2.0, 2.0, 2.0] for r in final)
    assert models[5][0].budgets == [1.0, [1.0, 1.0, 1.0]]
    assert agent.best_model_arch == {"w": 5}
    assert sorted(agent.runner.held()) == [0, 1, 3, 5, 6, 7]  # the front's models, for saving


def test_refused_configs_name_the_field():
    def refused(**fidelity):
        with pytest.raises(ConfigError) as info:
            AutoDistillation(Student, config(fidelity={"schedule": "successive_halving", **fidelity}))
        return str(info.value)

    assert "auto_distillation.search.fidelity.eta: must be >= 2" in refused(eta=1)
    assert "auto_distillation.search.fidelity.min_fraction: must be in (0, 1]" in refused(min_fraction=0)
    assert "auto_distillation.search.fidelity.min_fraction: must be in (0, 1]" in refused(min_fraction=1.5)
    assert "fidelity.schedule: 'bogus' is not one of ['successive_halving', 'hyperband']" in refused(schedule="bogus")
    with pytest.raises(ConfigError, match="final_distillation: give exactly one of train_steps"):
        AutoDistillation(Student, config(final={"multiplier": 2, "train_steps": [1, 1, 1]}))
    with pytest.raises(ConfigError, match=r"final_distillation.train_steps: 2 values for 3 stages"):
        AutoDistillation(Student, config(final={"train_steps": [1, 1]}))


def test_a_train_function_without_budget_is_refused_with_the_fix(tmp_path):
    agent = AutoDistillation(Student, config())

    def train_func(model):
        return model

    with pytest.raises(ConfigError) as info:
        agent.train_func = train_func
    message = str(info.value)
    assert "auto_distillation.search.fidelity: the train function" in message
    assert "takes no `budget` parameter" in message and "train_func(model, budget)" in message
    agent.train_func = lambda model, budget: model  # accepted
    agent.train_func = lambda model, *args: model  # accepted
    # the same rule for a train function given to the constructor
    with pytest.raises(ConfigError, match="takes no `budget` parameter"):
        AutoDistillation(Student, config(), train_func=train_func)


def test_a_final_distillation_killed_midway_is_resumed_alone(tmp_path):
    conf = config(final={"candidates": 1, "multiplier": 3})
    # evaluations 1-13 are the search; the 14th train call is the final distillation
    with pytest.raises(KeyboardInterrupt):
        make_agent(conf, {}, interrupt_at=14).search_loop(tmp_path)
    assert len(read_trials(tmp_path)) == 13
    models = {}
    agent = make_agent(conf, models)
    assert agent.search_loop(tmp_path, resume=True) == {"w": 5}
    records = read_trials(tmp_path)
    assert len(records) == 14 and records[-1]["phase"] == "final" and records[-1]["trial"] == 13
    # only the final ran, rebuilt (the search's model went with the killed process): 3 x from scratch
    assert list(models) == [5] and models[5][0].budgets == [3.0]
    assert records[-1]["extras"]["retrained_from_scratch"] is True


@pytest.mark.slow
def test_successive_halving_and_a_final_distillation_through_worker_processes(tmp_path):
    import fidelity_helpers

    conf = config(final={"candidates": 1, "multiplier": 2})
    conf["auto_distillation"]["search"]["executor"] = {"name": "processes", "max_concurrent": 2, "threads_per_trial": 1}
    agent = AutoDistillation(fidelity_helpers.build, conf)
    agent.show_progress = False
    agent.train_func, agent.eval_func = fidelity_helpers.train, fidelity_helpers.evaluate
    agent.search_loop(tmp_path)
    records = read_trials(tmp_path)
    pairs = [(r["candidate"], r["rung"]) for r in records if r["phase"] == "search"]
    assert len(pairs) == len(set(pairs))  # no candidate trained twice at a rung
    assert sorted(c for c, rung in pairs if rung == 0) == list(range(9))
    assert sum(1 for _, rung in pairs if rung == 1) >= 3 and any(rung == 2 for _, rung in pairs)
    assert sorted(r["trial"] for r in records) == list(range(len(records)))
    # a promoted candidate continued its model in the worker that held it
    promoted = [r for r in records if r["phase"] == "search" and r["rung"] > 0]
    assert all(
        r["extras"].get("continued_from") == pytest.approx(r["budget"] - (2 / 9 if r["rung"] == 1 else 2 / 3))
        for r in promoted
        if not r["extras"].get("retrained_from_scratch")
    )
    assert any("continued_from" in r["extras"] for r in promoted)
    (final,) = [r for r in records if r["phase"] == "final"]
    assert final["budget"] == 2.0 and agent.best_model_arch == final["arch"]
