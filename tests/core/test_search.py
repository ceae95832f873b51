"""The search loop with user functions (the design's advanced mode, no backend plugin)."""

import json
import math

import pytest
from autokd_testing import seed_dict_config
from core_helpers import synthetic_metrics

import autokd
from autokd import AutoDistillation, Objective, TrialRecord, pareto_front, select_best
from autokd.config import Constraint


def make_agent(trained, **search):
    """An agent whose builder returns the arch itself and whose train_func counts."""
    agent = AutoDistillation(lambda arch: dict(arch), seed_dict_config(**search))
    agent.show_progress = False

    def train_func(model):
        trained.append(dict(model))
        return model

    agent.train_func = train_func
    agent.eval_func = synthetic_metrics
    return agent


def test_the_functions_and_inputs_are_keywords_of_the_constructor_and_attributes(tmp_path):
    trained = []

    def train_func(model):
        trained.append(dict(model))
        return model

    agent = AutoDistillation(
        lambda arch: dict(arch),
        seed_dict_config(max_trials=2),
        train_func=train_func,
        eval_func=synthetic_metrics,
        example_inputs=[1, 2],
        eval_data="eval",
        show_progress=False,
    )
    assert (agent.train_func, agent.eval_func) == (train_func, synthetic_metrics)
    assert (agent.example_inputs, agent.eval_data, agent.show_progress) == ([1, 2], "eval", False)
    agent.search_loop(tmp_path)
    assert [r["arch"] for r in read_trials(tmp_path)] == trained and len(trained) == 2
    with pytest.raises(TypeError):
        AutoDistillation(lambda arch: arch, seed_dict_config(), None)  # keywords only: no third positional


def read_trials(path):
    return [json.loads(line) for line in (path / "trials.jsonl").read_text().splitlines()]


def test_search_with_user_functions_records_every_trial(tmp_path):
    trained = []
    agent = make_agent(trained, max_trials=3)
    best = agent.search_loop(tmp_path)
    records = read_trials(tmp_path)
    assert [r["trial"] for r in records] == [0, 1, 2]
    assert [r["arch"] for r in records] == trained
    assert len({json.dumps(a, sort_keys=True) for a in trained}) == 3
    for r in records:
        assert r["status"] == "ok" and r["error"] is None and r["duration_s"] >= 0
        assert r["metrics"] == synthetic_metrics(r["arch"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_model_arch"] == best == agent.best_model_arch
    assert summary["trials"] == 3 and summary["failed"] == 0
    # accuracy and latency both grow with size: every trial is on the front
    assert [t["trial"] for t in summary["pareto_front"]] == [0, 1, 2]
    best_record = max(agent.search_result, key=lambda r: r.metrics["accuracy"])
    assert best == best_record.arch


def test_search_stops_when_space_is_exhausted(tmp_path):
    trained = []
    agent = make_agent(trained, max_trials=10)  # the space has 4 points
    agent.search_loop(tmp_path)
    assert len(trained) == 4 and len(read_trials(tmp_path)) == 4


class Repeater(autokd.Advisor):
    """Proposes the same two points over and over, like a converged optimiser."""

    def __init__(self, space, objectives, seed=None, **options):
        super().__init__(space, objectives, seed, **options)
        self.asked = 0

    def ask(self):
        self.asked += 1
        points = list(self.space.points())
        return points[self.asked % 2]


def test_repeated_proposals_are_answered_from_results_not_retrained(tmp_path):
    trained = []
    agent = make_agent(trained, max_trials=3)
    agent.advisor = Repeater(agent.search_space, agent.objectives)
    agent.search_loop(tmp_path)
    keys = [agent.search_space.key(a) for a in trained]
    assert len(trained) == 3 and len(set(keys)) == 3  # never trained twice
    # the advisor was told the recorded values of its repeats
    repeats = [h for h in agent.advisor.history if agent.search_space.key(h[0]) == keys[0]]
    assert len(repeats) > 1 and len({r[1] for r in repeats}) == 1


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    def eval_func(model):
        if model["hidden_size"] == 256 and model["num_attention_heads"] == 4:
            raise RuntimeError("out of memory")
        if model["hidden_size"] == 128 and model["num_attention_heads"] == 2:
            return {"accuracy": math.nan, "latency": 1.0}
        return synthetic_metrics(model)

    agent = make_agent([], max_trials=4, search_algorithm="grid")
    agent.eval_func = eval_func
    agent.search_loop(tmp_path)
    records = {json.dumps(r["arch"], sort_keys=True): r for r in read_trials(tmp_path)}
    assert len(records) == 4
    oom = records[json.dumps({"hidden_size": 256, "num_attention_heads": 4}, sort_keys=True)]
    assert oom["status"] == "failed" and oom["error"] == "RuntimeError: out of memory" and oom["metrics"] == {}
    nan = records[json.dumps({"hidden_size": 128, "num_attention_heads": 2}, sort_keys=True)]
    assert nan["status"] == "failed" and nan["error"].startswith(
        "FloatingPointError: non-finite or non-numeric metric accuracy=nan"
    )
    assert sum(r["status"] == "ok" for r in records.values()) == 2
    assert agent.advisor.history[0][1] is None  # the advisor is told the failure


def test_resume_after_k_trials_loses_and_repeats_nothing(tmp_path):
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    make_agent([], max_trials=4, search_algorithm="random").search_loop(full_dir)

    first = []
    make_agent(first, max_trials=2, search_algorithm="random").search_loop(part_dir)
    second = []
    resumed = make_agent(second, max_trials=4, search_algorithm="random")
    resumed.search_loop(part_dir, resume=True)
    assert len(first) == 2 and len(second) == 2
    assert [r.trial for r in resumed.search_result] == [0, 1, 2, 3]
    archs = [r["arch"] for r in read_trials(part_dir)]
    assert len({json.dumps(a, sort_keys=True) for a in archs}) == 4
    assert archs[:2] == first
    # the advisor's history holds the replayed trials before its first new proposal
    assert [h[0] for h in resumed.advisor.history[:2]] == first


def test_resume_drops_a_trial_cut_off_mid_write(tmp_path):
    make_agent([], max_trials=2).search_loop(tmp_path)
    with open(tmp_path / "trials.jsonl", "a") as fh:
        fh.write('{"trial": 2, "arch": {"hidden')  # a crash during the write
    again = []
    agent = make_agent(again, max_trials=3)
    agent.search_loop(tmp_path, resume=True)
    assert len(again) == 1
    assert [r["trial"] for r in read_trials(tmp_path)] == [0, 1, 2]


def test_a_directory_with_trials_is_not_overwritten_without_resume(tmp_path):
    make_agent([], max_trials=1).search_loop(tmp_path)
    with pytest.raises(autokd.AutoKDError, match="already holds trials: resume them with resume=True"):
        make_agent([], max_trials=2).search_loop(tmp_path)


def test_same_seed_same_proposals(tmp_path):
    space = {"hidden_size": [64, 128, 256, 512], "num_attention_heads": [1, 2, 4, 8]}

    def proposals(seed, out):
        trained = []
        make_agent(trained, max_trials=6, seed=seed, search_space=space).search_loop(out)
        return trained

    assert proposals(3, tmp_path / "a") == proposals(3, tmp_path / "b")
    assert proposals(3, tmp_path / "c") != proposals(4, tmp_path / "d")


def test_grid_visits_points_in_order(tmp_path):
    trained = []
    make_agent(trained, max_trials=4, search_algorithm="grid").search_loop(tmp_path)
    assert trained == list(autokd.SearchSpace(seed_dict_config()["search"]["search_space"]).points())


def test_single_number_from_eval_func_is_the_first_metric(tmp_path):
    agent = make_agent([], max_trials=1, metrics=["accuracy"], higher_is_better=[True])
    agent.eval_func = lambda model: 0.75
    agent.search_loop(tmp_path)
    assert agent.search_result[0].metrics == {"accuracy": 0.75}


def test_metric_that_nobody_computes_stops_the_search_with_a_clear_error(tmp_path):
    agent = make_agent([], max_trials=2, metrics=["accuracy", "energy"], higher_is_better=[True, False])
    with pytest.raises(
        autokd.AutoKDError,
        match="metric 'energy' is neither returned by eval_func \\(it returned \\['accuracy', 'latency'\\]\\) nor a registered evaluator",
    ):
        agent.search_loop(tmp_path)


def test_registered_evaluator_fills_missing_metrics_with_options_and_extras(tmp_path):
    seen = {}

    class Energy:
        @autokd.hookimpl
        def register_evaluators(self, register):
            def energy(model, ctx):
                seen["ctx"] = ctx
                ctx.extras["energy"] = {"joules": 3}
                return model["hidden_size"] / 10

            register("energy", energy, higher_is_better=False)

    autokd.plugins.add_plugin(Energy(), "energy")
    conf = seed_dict_config(metrics=["accuracy", "energy"], higher_is_better=None, max_trials=1)
    conf = {"auto_distillation": conf, "evaluation": {"energy": {"scale": 2}}}
    agent = AutoDistillation(lambda arch: dict(arch), conf)
    agent.show_progress = False
    agent.train_func = lambda m: m
    agent.eval_func = lambda m: {"accuracy": 0.5}
    agent.example_inputs = "batch"
    agent.search_loop(tmp_path)
    record = agent.search_result[0]
    assert record.metrics["energy"] == record.arch["hidden_size"] / 10
    assert record.extras["energy"] == {"joules": 3}
    assert seen["ctx"].options == {"scale": 2} and seen["ctx"].example_inputs == "batch"


def test_an_advisor_with_a_budget_option_gets_max_trials_unless_its_options_set_it(tmp_path):
    built = []

    class Budgeted(autokd.RandomAdvisor):
        budget_option = "budget"

        def __init__(self, space, objectives, seed=None, **options):
            built.append(options)
            super().__init__(space, objectives, seed)

    class Plugin:
        @autokd.hookimpl
        def register_advisors(self, register):
            register("budgeted", Budgeted)

    autokd.plugins.add_plugin(Plugin(), "budgeted")
    for options in ({}, {"budget": 50}):
        conf = seed_dict_config(search_algorithm="budgeted", max_trials=3, advisor_options=options)
        agent = AutoDistillation(lambda arch: dict(arch), conf)
        agent.show_progress = False
        agent.train_func = lambda m: m
        agent.eval_func = lambda m: {"accuracy": 0.5, "latency": 1.0}
        agent.search_loop(tmp_path / str(len(built)))
    assert built == [{"budget": 3}, {"budget": 50}]
    assert autokd.Advisor.budget_option is None  # advisors without one get no extra option


def test_record_extra_lands_in_the_trial_record(tmp_path):
    def builder(arch):
        autokd.record_extra("builder", {"init": "random"})
        return dict(arch)

    agent = make_agent([], max_trials=1)
    agent.model_builder = builder
    agent.search_loop(tmp_path)
    assert read_trials(tmp_path)[0]["extras"] == {"builder": {"init": "random"}}


# --- Pareto front and the best-arch rule on hand-made results ---------------------------

OBJ = [Objective("accuracy", True), Objective("latency", False)]


def rec(i, acc, lat, status="ok", **extra):
    return TrialRecord(i, {"i": i}, {"accuracy": acc, "latency": lat, **extra}, status)


def test_pareto_front_on_hand_made_results():
    records = [
        rec(0, 0.80, 10.0),
        rec(1, 0.85, 20.0),
        rec(2, 0.70, 12.0),  # dominated by 0
        rec(3, 0.90, 40.0),
        rec(4, 0.85, 25.0),  # dominated by 1
        rec(5, 0.95, 5.0, status="failed"),  # failed trials never count
        rec(6, 0.60, 4.0),
    ]
    assert [r.trial for r in pareto_front(records, OBJ)] == [0, 1, 3, 6]
    lower_acc = [Objective("accuracy", False), Objective("latency", False)]
    assert [r.trial for r in pareto_front(records, lower_acc)] == [6]


def test_best_is_first_metric_on_front_subject_to_constraints():
    records = [rec(0, 0.80, 10.0), rec(1, 0.85, 20.0), rec(3, 0.90, 40.0), rec(6, 0.60, 4.0), rec(7, 0.90, 30.0)]
    best, ok = select_best(records, OBJ)
    assert (best.trial, ok) == (7, True)  # tie on accuracy broken by latency, never a sum
    best, ok = select_best(records, OBJ, [Constraint.parse("latency <= 20")])
    assert (best.trial, ok) == (1, True)
    best, ok = select_best(records, OBJ, [Constraint.parse("latency < 1")])
    assert (best.trial, ok) == (7, False)  # nothing feasible: the unconstrained choice, flagged


def test_constraints_in_config_reach_summary(tmp_path):
    agent = make_agent([], max_trials=4, search_algorithm="grid", constraints=["latency <= 5"])
    agent.search_loop(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["constraints"] == ["latency <= 5"]
    # latency = hidden_size * heads / 100: only 128 x 2 (2.56) meets latency <= 5, although
    # 256 x 4 is the most accurate
    assert summary["best_model_arch"] == {"hidden_size": 128, "num_attention_heads": 2}
    assert summary["best_meets_constraints"] is True
    assert summary["best_metrics"] == {"accuracy": 1 - 100 / 256, "latency": 2.56}


def test_train_and_eval_func_must_be_set(tmp_path):
    agent = AutoDistillation(lambda arch: arch, seed_dict_config(max_trials=1))
    agent.show_progress = False
    agent.search_loop(tmp_path)
    (record,) = agent.search_result
    assert record.status == "failed" and "train_func and eval_func must be set" in record.error
