"""The ``ray`` executor driven directly with TrialTasks and a sleeping runner, on a local
Ray with 2 CPUs: parallel speed-up, a worker killed mid-trial (retried, then failed),
affinity of a candidate's rungs, Ctrl-C, and bad options."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from executor_helpers import SleepRunner, wait_for_file

from autokd.errors import ConfigError
from autokd.executor import LocalExecutor, TrialTask
from autokd_ray import RayExecutor


def tasks(n, **arch):
    return [TrialTask(trial=i, arch={"x": i, **arch}, candidate=i) for i in range(n)]


def run(executor, todo):
    """Keep up to max_concurrent tasks running, as the loop does."""
    todo, records = list(todo), []
    while todo or executor.running:
        while todo and executor.running < executor.max_concurrent:
            executor.submit(todo.pop(0))
        records += executor.wait(timeout=60)
    return records


@pytest.fixture
def make(local_ray):
    made = []

    def factory(runner, **options):
        executor = RayExecutor(runner, **options)
        made.append(executor)
        return executor

    yield factory
    for executor in made:
        executor.shutdown(cancel=True)


def test_two_actors_run_eight_sleeping_trials_in_at_most_0_6_of_the_serial_time(make):
    """The actors' start is paid once per search and left out of the clock, as for the
    processes executor; benchmarks/parallel.py reports it."""
    start = time.perf_counter()
    serial = run(LocalExecutor(SleepRunner(sleep=1.0), max_concurrent=1), tasks(8))
    serial_s = time.perf_counter() - start

    executor = make(SleepRunner(sleep=1.0), max_concurrent=2)
    warm = [TrialTask(trial=100 + i, arch={"x": 0, "sleep": 0}, candidate=100 + i) for i in range(2)]
    assert len(run(executor, warm)) == 2  # actors up
    start = time.perf_counter()
    parallel = run(executor, tasks(8))
    parallel_s = time.perf_counter() - start

    assert parallel_s <= 0.6 * serial_s, (parallel_s, serial_s)
    assert sorted(r.trial for r in parallel) == list(range(8))
    assert [r.arch for r in sorted(parallel, key=lambda r: r.trial)] == [r.arch for r in serial]
    assert all(r.ok for r in parallel)
    pids = {r.extras["pid"] for r in parallel}
    assert len(pids) == 2 and os.getpid() not in pids
    assert {r.extras["omp_threads"] for r in parallel} == {"1"}  # resources_per_trial cpu: 1


def test_a_worker_killed_mid_trial_without_retries_fails_that_trial_with_the_reason(make, tmp_path):
    executor = make(SleepRunner(sleep=0.2, pid_dir=str(tmp_path)), max_concurrent=2, max_retries=0)
    todo = tasks(5)
    todo[1] = TrialTask(trial=1, arch={"x": 1, "sleep": 60}, candidate=1)
    executor.submit(todo[0])
    executor.submit(todo[1])
    pid = int(wait_for_file(str(tmp_path / "trial-1.pid")))
    os.kill(pid, signal.SIGKILL)
    records = {r.trial: r for r in run(executor, todo[2:]) + run(executor, [])}
    while executor.running:
        records.update({r.trial: r for r in executor.wait(timeout=60)})
    assert sorted(records) == list(range(5))
    lost = records[1]
    assert lost.status == "failed"
    assert lost.error.startswith("WorkerLost: Ray worker of slot ")
    assert "lost while running trial 1 (tried 1 time): " in lost.error
    assert lost.extras["worker_lost"] is True and lost.duration_s < 60
    assert all(records[t].ok for t in (0, 2, 3, 4))
    assert pid not in {records[t].extras["pid"] for t in (2, 3, 4)}  # a new actor took the slot


def test_a_worker_lost_once_is_retried_with_max_retries(make, tmp_path):
    executor = make(SleepRunner(sleep=0.2, pid_dir=str(tmp_path)), max_concurrent=1, max_retries=1)
    executor.submit(TrialTask(trial=0, arch={"x": 0, "sleep": 3}, candidate=0))
    pid = int(wait_for_file(str(tmp_path / "trial-0.pid")))
    os.remove(tmp_path / "trial-0.pid")
    os.kill(pid, signal.SIGKILL)
    records = run(executor, [])
    assert len(records) == 1 and records[0].ok and records[0].metrics == {"score": 0.0}
    assert records[0].extras["pid"] != pid  # ran again on the restarted actor


def test_a_candidates_next_rung_goes_to_the_actor_holding_its_model(make):
    executor = make(SleepRunner(sleep=0.05), max_concurrent=2)
    rung0 = [TrialTask(trial=i, arch={"x": i}, candidate=i, budget=1 / 3, rung=0) for i in range(4)]
    first = {r.trial: r for r in run(executor, rung0)}
    rung1 = [
        TrialTask(trial=4 + k, arch={"x": c}, candidate=c, budget=2 / 3, done=1 / 3, rung=1)
        for k, c in enumerate((3, 1))
    ]
    second = {r.trial: r for r in run(executor, rung1)}
    for trial, candidate in ((4, 3), (5, 1)):
        assert second[trial].extras["continued"] is True
        assert second[trial].extras["trained"] == pytest.approx(1.0)
        assert second[trial].extras["pid"] == first[candidate].extras["pid"]
    executor.release(3)
    again = run(executor, [TrialTask(trial=6, arch={"x": 3}, candidate=3, budget=1 / 3, rung=0)])
    assert again[0].extras["continued"] is False


def test_shutdown_with_cancel_stops_running_trials_at_once(make, tmp_path):
    executor = make(SleepRunner(sleep=120, pid_dir=str(tmp_path)), max_concurrent=2)
    for task in tasks(2):
        executor.submit(task)
    pids = [int(wait_for_file(str(tmp_path / f"trial-{i}.pid"))) for i in range(2)]
    start = time.perf_counter()
    executor.shutdown(cancel=True)
    assert time.perf_counter() - start < 10
    deadline = time.monotonic() + 20
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive.discard(pid)
        time.sleep(0.1)
    assert not alive, f"actor processes {alive} still run after shutdown"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gpus": 1}, "executor 'ray' has no option 'gpus'; its options are address, resources_per_trial, max_retries"),
        ({"max_retries": -1}, "auto_distillation.search.executor.max_retries: must be an integer >= 0, got -1"),
        ({"resources_per_trial": {"cpu": "two"}}, "resources_per_trial.cpu: must be a number >= 0, got 'two'"),
        ({"address": "cluster"}, "address: 'cluster' is not 'auto', 'ray://host:port' or 'host:port'"),
    ],
)
def test_bad_options_are_refused_naming_the_field(local_ray, options, message):
    with pytest.raises(ConfigError) as info:
        RayExecutor(SleepRunner(), max_concurrent=2, **options)
    assert message in str(info.value)


def test_a_trial_needing_more_than_the_cluster_has_waits_with_a_warning(local_ray, caplog):
    executor = RayExecutor(SleepRunner(), max_concurrent=1, resources_per_trial={"cpu": 1, "gpu": 1})
    executor.shutdown()
    assert "a trial needs GPU=1 but the Ray cluster has GPU=0" in caplog.text


@pytest.mark.slow
def test_a_search_through_ray_matches_the_serial_search_of_the_same_seed_in_less_time(local_ray, tmp_path):
    """8 trials of 2 s through AutoDistillation: serial 16 s; two actors 8 s, under
    0.6 x serial. The actors' start is paid once per search: the clock starts at the
    first training."""
    from executor_helpers import SleepTrain, build, evaluate, first_start, search_config

    from autokd import AutoDistillation

    def search(name, train, **config):
        agent = AutoDistillation(build, search_config(**config))
        agent.train_func, agent.eval_func, agent.show_progress = train, evaluate, False
        start = time.perf_counter()
        agent.search_loop(str(tmp_path / name))
        lines = (tmp_path / name / "trials.jsonl").read_text().splitlines()
        return agent, time.perf_counter() - start, [json.loads(line) for line in lines]

    serial, serial_s, serial_trials = search("serial", SleepTrain(2.0))
    starts = str(tmp_path / "starts")
    begun = time.time()
    train = SleepTrain(2.0, start_log=starts)
    parallel, parallel_s, parallel_trials = search("ray", train, executor={"name": "ray", "max_concurrent": 2})
    start_s = first_start(starts) - begun
    assert parallel_s - start_s <= 0.6 * serial_s, (parallel_s, start_s, serial_s)
    key = lambda t: (t["arch"]["hidden"], t["arch"]["layers"])
    assert sorted(map(key, parallel_trials)) == sorted(map(key, serial_trials))
    assert len(set(map(key, parallel_trials))) == 8
    assert sorted(t["trial"] for t in parallel_trials) == list(range(8))
    assert parallel.best_model_arch == serial.best_model_arch
    assert local_ray.is_initialized()  # a Ray the caller started is left running
