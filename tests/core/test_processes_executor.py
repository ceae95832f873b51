"""The ``processes`` executor driven directly with TrialTasks and a sleeping runner:
parallel speed-up, a worker killed mid-trial, affinity of a candidate's rungs, pinning,
and bad options."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from executor_helpers import SleepRunner, wait_all, wait_for_file

from autokd.errors import ConfigError
from autokd.executor import LocalExecutor, TrialTask
from autokd.processes import ProcessesExecutor


def tasks(n, **arch):
    return [TrialTask(trial=i, arch={"x": i, **arch}, candidate=i) for i in range(n)]


@pytest.fixture
def make():
    made = []

    def factory(runner, **options):
        executor = ProcessesExecutor(runner, **options)
        made.append(executor)
        return executor

    yield factory
    for executor in made:
        executor.shutdown(cancel=True)


def run(executor, todo):
    """Keep up to max_concurrent tasks running, as the loop does."""
    todo, records = list(todo), []
    while todo or executor.running:
        while todo and executor.running < executor.max_concurrent:
            executor.submit(todo.pop(0))
        records += executor.wait(timeout=30)
    return records


def test_two_workers_run_eight_sleeping_trials_in_at_most_0_6_of_the_serial_time(make):
    """The workers' start (a new interpreter importing autokd: 0.3 s on an idle machine,
    3 s on a loaded one) is paid once per search, so it is left out of the clock here;
    benchmarks/parallel.py reports it."""
    runner = SleepRunner(sleep=0.6)
    start = time.perf_counter()
    serial = run(LocalExecutor(runner, max_concurrent=1), tasks(8))
    serial_s = time.perf_counter() - start

    executor = make(SleepRunner(sleep=0.6), max_concurrent=2, threads_per_trial=1)
    warm = [TrialTask(trial=100 + i, arch={"x": 0, "sleep": 0}, candidate=100 + i) for i in range(2)]
    assert len(run(executor, warm)) == 2
    start = time.perf_counter()
    parallel = run(executor, tasks(8))
    parallel_s = time.perf_counter() - start

    assert parallel_s <= 0.6 * serial_s, (parallel_s, serial_s)
    assert sorted(r.trial for r in parallel) == list(range(8))
    assert [r.arch for r in sorted(parallel, key=lambda r: r.trial)] == [r.arch for r in serial]
    assert all(r.ok for r in parallel)
    assert {r.metrics["score"] for r in parallel} == {float(i) for i in range(8)}
    pids = {r.extras["pid"] for r in parallel}
    assert len(pids) == 2 and os.getpid() not in pids  # persistent workers, none is the driver


def test_a_worker_killed_mid_trial_fails_that_trial_with_the_reason_and_the_others_are_recorded(make, tmp_path):
    executor = make(SleepRunner(sleep=0.2, pid_dir=str(tmp_path)), max_concurrent=2, threads_per_trial=1)
    todo = tasks(6)
    todo[1] = TrialTask(trial=1, arch={"x": 1, "sleep": 30}, candidate=1)
    executor.submit(todo[0])
    executor.submit(todo[1])
    pid = int(wait_for_file(str(tmp_path / "trial-1.pid")))
    os.kill(pid, signal.SIGKILL)
    records = run(executor, todo[2:]) + wait_all(executor)
    by_trial = {r.trial: r for r in records}
    assert sorted(by_trial) == list(range(6))
    lost = by_trial[1]
    assert lost.status == "failed"
    assert lost.error.startswith(f"WorkerLost: worker process {pid} (slot ")
    assert lost.error.endswith("killed by SIGKILL: killed (out of memory, or kill -9) while running trial 1")
    assert lost.duration_s < 30
    assert lost.extras["worker_lost"] is True and lost.extras["exitcode"] == -signal.SIGKILL
    assert all(by_trial[t].ok for t in (0, 2, 3, 4, 5))
    # the dead worker was replaced: trials after the kill ran in a new process as well
    assert pid not in {by_trial[t].extras["pid"] for t in (2, 3, 4, 5)}
    assert len(executor._workers) == 2 and all(w.process.is_alive() for w in executor._workers)


@pytest.mark.parametrize(
    ("crash", "reason"),
    [("segv", "killed by SIGSEGV: segmentation fault"), ("exit", "exited with status 3")],
)
def test_a_trial_that_crashes_its_worker_fails_and_the_search_goes_on(make, crash, reason):
    executor = make(SleepRunner(sleep=0.05), max_concurrent=1, threads_per_trial=1)
    todo = tasks(3)
    todo[1] = TrialTask(trial=1, arch={"x": 1, "crash": crash}, candidate=1)
    records = {r.trial: r for r in run(executor, todo)}
    assert records[1].status == "failed" and records[1].error.endswith(f"{reason} while running trial 1")
    assert records[0].ok and records[2].ok
    assert records[0].extras["pid"] != records[2].extras["pid"]


def test_a_candidates_next_rung_goes_to_the_worker_holding_its_model(make):
    executor = make(SleepRunner(sleep=0.05), max_concurrent=2, threads_per_trial=1)
    rung0 = [TrialTask(trial=i, arch={"x": i}, candidate=i, budget=1 / 3, rung=0) for i in range(4)]
    first = {r.trial: r for r in run(executor, rung0)}  # rung 0: trial == candidate
    # promote candidates 3 and 1 (in that order): each goes back to its own worker
    rung1 = [
        TrialTask(trial=4 + k, arch={"x": c}, candidate=c, budget=2 / 3, done=1 / 3, rung=1)
        for k, c in enumerate((3, 1))
    ]
    second = {r.trial: r for r in run(executor, rung1)}
    for trial, candidate in ((4, 3), (5, 1)):
        assert second[trial].extras["continued"] is True
        assert second[trial].extras["trained"] == pytest.approx(1.0)
        assert second[trial].extras["pid"] == first[candidate].extras["pid"]
    # released: the worker dropped the model; a later task for it starts from scratch
    executor.release(3)
    again = run(executor, [TrialTask(trial=6, arch={"x": 3}, candidate=3, budget=1 / 3, rung=0)])
    assert again[0].extras["continued"] is False


def test_each_worker_is_pinned_to_its_threads_and_devices(make):
    executor = make(SleepRunner(sleep=0.3), max_concurrent=2, threads_per_trial=1, devices_per_trial=1, devices=[3, 5])
    records = run(executor, tasks(2))
    assert {r.extras["omp_threads"] for r in records} == {"1"}
    assert sorted(r.extras["cuda_visible_devices"] for r in records) == ["3", "5"]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ or os.environ["CUDA_VISIBLE_DEVICES"] not in ("3", "5")


def test_devices_per_trial_zero_hides_the_gpus():
    executor = ProcessesExecutor(SleepRunner(sleep=0.0), max_concurrent=1, devices_per_trial=0, threads_per_trial=1)
    try:
        assert run(executor, tasks(1))[0].extras["cuda_visible_devices"] == ""
    finally:
        executor.shutdown()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"gpus": 1},
            "executor 'processes' has no option 'gpus'; its options are devices_per_trial, threads_per_trial, devices",
        ),
        (
            {"threads_per_trial": 0},
            "auto_distillation.search.executor.threads_per_trial: must be a positive integer, got 0",
        ),
        (
            {"devices_per_trial": 2, "devices": ["0", "1", "2"]},
            (
                "max_concurrent=2 trials with devices_per_trial=2 need 4 GPUs, but only 3 are available (0, 1, 2); "
                "lower max_concurrent or devices_per_trial"
            ),
        ),
        ({"devices": [0]}, "auto_distillation.search.executor.devices: given without devices_per_trial"),
    ],
)
def test_bad_options_are_refused_naming_the_field(options, message):
    with pytest.raises(ConfigError, match=None) as info:
        ProcessesExecutor(SleepRunner(), max_concurrent=2, **options)
    assert message in str(info.value)


def test_trial_functions_that_cannot_be_pickled_are_refused_with_the_fix():
    runner = SleepRunner()
    runner.train_func = lambda model: model
    with pytest.raises(ConfigError) as info:
        ProcessesExecutor(runner, max_concurrent=2)
    assert "cannot be pickled" in str(info.value)
    assert "at module level of an importable module (no lambdas or closures), or use executor 'local'" in str(
        info.value
    )


def test_shutdown_with_cancel_kills_running_trials_at_once(make, tmp_path):
    executor = make(SleepRunner(sleep=60, pid_dir=str(tmp_path)), max_concurrent=2, threads_per_trial=1)
    for task in tasks(2):
        executor.submit(task)
    pids = [int(wait_for_file(str(tmp_path / f"trial-{i}.pid"))) for i in range(2)]
    start = time.perf_counter()
    executor.shutdown(cancel=True)
    assert time.perf_counter() - start < 10
    assert not any(w.process.is_alive() for w in executor._workers)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_workers_end_when_the_driver_is_killed(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path[:0] = {[os.path.dirname(__file__)]!r}
        from executor_helpers import SleepRunner
        from autokd.executor import TrialTask
        from autokd.processes import ProcessesExecutor
        if __name__ == "__main__":
            executor = ProcessesExecutor(SleepRunner(sleep=60, pid_dir={str(tmp_path)!r}), max_concurrent=1)
            executor.submit(TrialTask(trial=0, arch={{"x": 0}}, candidate=0))
            time.sleep(120)
        """
    )
    driver = subprocess.Popen([sys.executable, "-c", script])
    try:
        pid = int(wait_for_file(str(tmp_path / "trial-0.pid"), timeout=60))
    finally:
        driver.kill()
        driver.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker {pid} outlived its driver")
