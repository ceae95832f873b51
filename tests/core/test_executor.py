"""The executor hook and the loop with trials in flight: a third-party executor from a
plugin, pending points, asynchronous successive halving, resume after a kill, and the
incremental front against the from-scratch rules."""

import concurrent.futures as cf
import json
import random
import threading
import time

import pytest
from autokd_testing import seed_dict_config
from core_helpers import synthetic_metrics

import autokd
from autokd import AutoDistillation, ConfigError, Objective, TrialRecord, pareto_front, plugins, select_best
from autokd.config import Constraint
from autokd.front import IncrementalFront


class ThreadExecutor(autokd.Executor):
    """The example of docs/plugins.md."""

    name = "threads"

    def __init__(self, runner, *, max_concurrent=1, **options):
        super().__init__(runner, max_concurrent=max_concurrent, **options)
        self._pool = cf.ThreadPoolExecutor(max_concurrent)
        self._futures = set()

    def submit(self, task):
        self._futures.add(self._pool.submit(self.runner, task))

    def wait(self, timeout=None):
        done, self._futures = cf.wait(self._futures, timeout, return_when=cf.FIRST_COMPLETED)
        return [future.result() for future in done]

    @property
    def running(self):
        return len(self._futures)

    def shutdown(self, cancel=True):
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class ThreadsPlugin:
    @autokd.hookimpl
    def register_executors(self, register):
        register("threads", ThreadExecutor)


SPACE = {"hidden_size": [64, 128, 256, 512], "num_attention_heads": [1, 2, 4, 8]}


def agent_for(executor, *, max_trials=8, sleep=0.0, interrupt=None, **search):
    conf = seed_dict_config(max_trials=max_trials, search_space=SPACE, executor=executor, **search)
    agent = AutoDistillation(lambda arch: dict(arch), conf)
    agent.show_progress = False
    live = {"now": 0, "most": 0}
    lock = threading.Lock()

    def train_func(model):
        with lock:
            live["now"] += 1
            live["most"] = max(live["most"], live["now"])
        try:
            if interrupt is not None and model == interrupt:
                raise KeyboardInterrupt
            time.sleep(sleep)
        finally:
            with lock:
                live["now"] -= 1
        return model

    agent.train_func = train_func
    agent.eval_func = synthetic_metrics
    agent.live = live
    return agent


def read_trials(path):
    return [json.loads(line) for line in (path / "trials.jsonl").read_text().splitlines()]


def keys(records):
    return [json.dumps(r["arch"], sort_keys=True) for r in records]


def test_a_plugin_executor_runs_trials_two_at_a_time(tmp_path):
    plugins.add_plugin(ThreadsPlugin(), "threads")
    serial = agent_for({"name": "local"}, sleep=0.05, search_algorithm="grid")
    start = time.perf_counter()
    serial.search_loop(tmp_path / "serial")
    serial_s = time.perf_counter() - start
    parallel = agent_for({"name": "threads", "max_concurrent": 2}, sleep=0.05, search_algorithm="grid")
    start = time.perf_counter()
    parallel.search_loop(tmp_path / "parallel")
    parallel_s = time.perf_counter() - start
    records = read_trials(tmp_path / "parallel")
    assert sorted(r["trial"] for r in records) == list(range(8))
    assert len(set(keys(records))) == 8  # no arch ran twice
    # the same archs as the serial grid search, each with the number it was proposed with
    by_trial = {r["trial"]: r["arch"] for r in records}
    assert [by_trial[i] for i in range(8)] == [r["arch"] for r in read_trials(tmp_path / "serial")]
    assert parallel.live["most"] == 2 and serial.live["most"] == 1
    assert parallel_s < 0.8 * serial_s


def test_an_unknown_executor_or_bad_options_are_config_errors(tmp_path):
    with pytest.raises(
        ConfigError, match=r"auto_distillation.search.executor.name: unknown executor 'ray'.*Available: local"
    ):
        agent_for({"name": "ray"}).search_loop(tmp_path / "a")
    with pytest.raises(
        ConfigError, match="auto_distillation.search.executor: local: executor 'local' takes no options"
    ):
        agent_for({"name": "local", "threads_per_trial": 2}).search_loop(tmp_path / "b")
    with pytest.raises(ConfigError, match="executor.max_concurrent: must be >= 1"):
        agent_for({"max_concurrent": 0})


class Stubborn(autokd.Advisor):
    """Proposes the first untold point, ignoring points in flight (no pending support)."""

    asked = 0

    def ask(self):
        Stubborn.asked += 1
        told = self._told_keys()
        return next(p for p in self.space.points() if self.space.key(p) not in told)


def test_an_advisor_that_ignores_pending_points_never_makes_an_arch_run_twice(tmp_path):
    agent = agent_for({"max_concurrent": 3}, max_trials=6)
    agent.advisor = Stubborn(agent.search_space, agent.objectives)
    agent.search_loop(tmp_path)
    records = read_trials(tmp_path)
    assert len(records) == 6 and len(set(keys(records))) == 6
    # the loop asked again while the proposal was running, then proposed a free arch
    assert Stubborn.asked > 6


def test_random_and_grid_skip_pending_points_themselves(tmp_path):
    space = autokd.SearchSpace(SPACE)
    pending = list(space.points())[:15]
    grid = autokd.GridAdvisor(space, [Objective("accuracy", True)])
    assert grid.ask_pending(pending) == list(space.points())[15]
    rnd = autokd.RandomAdvisor(space, [Objective("accuracy", True)], seed=1)
    assert all(rnd.ask_pending(pending) == list(space.points())[15] for _ in range(5))
    with pytest.raises(autokd.SearchExhausted, match="evaluated or being evaluated"):
        grid.ask_pending(list(space.points()))


def test_asynchronous_successive_halving_promotes_as_results_arrive(tmp_path):
    # local executor, 3 in flight: after candidates 0-2 report, the best of them (1: on the
    # two-member front {0, 1} both crowding distances are infinite, and accuracy, the first
    # metric, decides) goes on before candidates 5-8 are proposed
    conf = seed_dict_config(
        max_trials=9,
        search_space={"w": list(range(9))},
        search_algorithm="grid",
        executor={"max_concurrent": 3},
        fidelity={"schedule": "successive_halving", "min_fraction": 1 / 9, "eta": 3},
    )
    accuracy = [0.50, 0.60, 0.55, 0.70, 0.65, 0.80, 0.90, 0.95, 0.40]
    agent = AutoDistillation(lambda arch: {"arch": arch, "trained": 0.0}, conf)
    agent.show_progress = False

    def train_func(model, budget):
        model["trained"] += budget
        return model

    agent.train_func = train_func
    agent.eval_func = lambda m: {"accuracy": accuracy[m["arch"]["w"]] * m["trained"], "latency": m["arch"]["w"] + 1.0}
    agent.search_loop(tmp_path)
    records = read_trials(tmp_path)
    at = {(r["candidate"], r["rung"]): r for r in records}
    assert len(at) == len(records)  # no candidate trained twice at a rung
    assert at[(1, 1)]["trial"] == 5 and at[(5, 0)]["trial"] > 5
    full = [r for r in records if r["rung"] == 2]
    assert full and all(r["budget"] == 1.0 for r in full)
    # at least the synchronous quotas went on: 3 of 9 to rung 1, 1 to the full budget
    assert sum(1 for c, rung in at if rung == 1) >= 3


def test_resume_after_a_kill_with_trials_in_flight_reruns_only_unrecorded_trials(tmp_path):
    plugins.add_plugin(ThreadsPlugin(), "threads")
    victim = list(autokd.SearchSpace(SPACE).points())[3]
    killed = agent_for({"name": "threads", "max_concurrent": 2}, sleep=0.05, interrupt=victim, search_algorithm="grid")
    with pytest.raises(KeyboardInterrupt):
        killed.search_loop(tmp_path)
    before = read_trials(tmp_path)
    assert 3 not in [r["trial"] for r in before]
    resumed = agent_for({"name": "threads", "max_concurrent": 2}, search_algorithm="grid")
    resumed.search_loop(tmp_path, resume=True)
    records = read_trials(tmp_path)
    assert records[: len(before)] == before
    assert sorted(r["trial"] for r in records) == list(range(8))
    assert len(set(keys(records))) == 8


@pytest.mark.parametrize("n_objectives", [2, 3])
def test_the_incremental_front_is_the_from_scratch_front(n_objectives):
    objectives = [Objective("accuracy", True), Objective("latency", False), Objective("size", False)][:n_objectives]
    # a constraint on a metric that is not an objective: a best outside the front
    constraints = [Constraint.parse("latency <= 6"), Constraint.parse("memory <= 1")]
    for seed in range(20):
        rng = random.Random(seed)
        records = []
        front = IncrementalFront(objectives, constraints)
        kept = set()
        for trial in range(60):
            status = "failed" if rng.random() < 0.1 else "ok"
            metrics = {
                "accuracy": rng.choice([0.5, 0.6, 0.7, 0.8]),
                "latency": rng.randint(1, 9),
                "size": rng.randint(1, 3),
            }
            metrics["memory"] = rng.randint(1, 3)
            record = TrialRecord(trial, {"i": trial}, metrics, status)
            records.append(record)
            kept.add(trial)
            kept -= {r.trial for r in front.add(record)}
            expected_front = pareto_front(records, objectives)
            assert [r.trial for r in front.front] == [r.trial for r in expected_front]
            best, feasible = select_best(records, objectives, constraints)
            assert front.best() == (best, feasible)
            # what add() lets go is exactly what is neither on the front nor best
            assert kept == {r.trial for r in expected_front} | ({best.trial} if best else set())


def test_an_advisor_overriding_only_ask_is_asked_through_it_while_trials_run():
    from autokd.advisor import propose

    space = autokd.SearchSpace(SPACE)
    first = next(iter(space.points()))

    class Sub(autokd.RandomAdvisor):  # written before ask_pending existed
        def ask(self):
            return first

    class Both(Sub):
        def ask_pending(self, pending):
            return "pending-aware"

    objectives = [Objective("accuracy", True)]
    assert propose(Sub(space, objectives), [first]) == first  # its own ask, not RandomAdvisor's ask_pending
    assert propose(Both(space, objectives), [first]) == "pending-aware"
    assert propose(autokd.GridAdvisor(space, objectives), [first]) != first
    assert propose(autokd.GridAdvisor(space, objectives), []) == first
