"""Searches (AutoDistillation and ``autokd run``) whose trials run in the ``processes``
executor: the speed-up, the same archs as a serial search of the same seed, a worker killed
mid-trial, and the driver killed then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from executor_helpers import SleepTrain, build, evaluate, first_start, search_config, wait_for_file

from autokd import AutoDistillation

HERE = os.path.dirname(os.path.abspath(__file__))


def search(tmp_path, name, train, **config):
    agent = AutoDistillation(build, search_config(**config))
    agent.train_func, agent.eval_func = train, evaluate
    agent.show_progress = False
    start = time.perf_counter()
    agent.search_loop(str(tmp_path / name))
    return agent, time.perf_counter() - start


def records(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh.read().splitlines()]


@pytest.mark.slow
def test_processes_search_matches_the_serial_search_of_the_same_seed_in_less_time(tmp_path):
    """8 trials of 2 s: serial 16 s; two workers 8 s, under 0.6 x serial = 9.6 s. The
    workers' start (a new interpreter importing autokd: 0.3 s on an idle machine, several
    on a loaded one) is paid once per search: the clock starts at the first training."""
    serial, serial_s = search(tmp_path, "serial", SleepTrain(2.0))
    starts = str(tmp_path / "starts")
    executor = {"name": "processes", "max_concurrent": 2, "threads_per_trial": 1}
    begun = time.time()
    parallel, parallel_s = search(tmp_path, "parallel", SleepTrain(2.0, start_log=starts), executor=executor)
    start_s = first_start(starts) - begun
    assert parallel_s - start_s <= 0.6 * serial_s, (parallel_s, start_s, serial_s)
    serial_trials = records(tmp_path / "serial" / "trials.jsonl")
    parallel_trials = records(tmp_path / "parallel" / "trials.jsonl")
    key = lambda t: (t["arch"]["hidden"], t["arch"]["layers"])
    assert sorted(map(key, parallel_trials)) == sorted(map(key, serial_trials))
    assert len(set(map(key, parallel_trials))) == 8  # no arch twice
    assert sorted(t["trial"] for t in parallel_trials) == list(range(8))
    assert all(t["status"] == "ok" for t in parallel_trials)
    assert parallel.best_model_arch == serial.best_model_arch


def test_a_worker_killed_mid_trial_fails_that_trial_and_the_search_records_the_others(tmp_path):
    # the seed's first proposal trains for 60 s and its worker is killed
    long_arch = dict(AutoDistillation(build, search_config(max_trials=8, seed=3)).model_arch_proposition())
    killed = {}

    def kill_when_started():
        killed["pid"] = int(wait_for_file(str(tmp_path / f"{long_arch['hidden']}-{long_arch['layers']}.pid")))
        os.kill(killed["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_when_started, daemon=True)
    killer.start()
    train = SleepTrain(0.2, pid_dir=str(tmp_path), long_arch=long_arch)
    search(tmp_path, "out", train, executor={"name": "processes", "max_concurrent": 2, "threads_per_trial": 1})
    killer.join(timeout=5)
    trials = records(tmp_path / "out" / "trials.jsonl")
    assert sorted(t["trial"] for t in trials) == list(range(8))
    (failed,) = [t for t in trials if t["status"] != "ok"]
    assert failed["arch"] == long_arch and failed["trial"] == 0
    assert failed["error"].startswith(f"WorkerLost: worker process {killed['pid']} (slot ")
    assert failed["error"].endswith("killed by SIGKILL: killed (out of memory, or kill -9) while running trial 0")
    assert len({(t["arch"]["hidden"], t["arch"]["layers"]) for t in trials}) == 8


DRIVER = """
model: {{name: sleepy, framework: pytorch, builder: "executor_helpers:build"}}
auto_distillation:
  search:
    search_space: {{hidden: [1, 2, 3, 4, 5, 6], layers: [1, 2, 3, 4]}}
    search_algorithm: random
    metrics: [score, cost]
    higher_is_better: [true, false]
    max_trials: 8
    seed: 5
    executor: {{name: processes, max_concurrent: 2, threads_per_trial: 1}}
train: {{function: "driver_funcs:train"}}
evaluation: {{function: "executor_helpers:evaluate"}}
"""

DRIVER_FUNCS = """
from executor_helpers import SleepTrain
train = SleepTrain(0.8, log_path={log!r})
"""


def test_a_killed_driver_resumes_running_only_the_trials_without_a_record(tmp_path):
    log = tmp_path / "trainings.log"
    (tmp_path / "search.yaml").write_text(DRIVER.format())
    (tmp_path / "driver_funcs.py").write_text(textwrap.dedent(DRIVER_FUNCS.format(log=str(log))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, str(tmp_path)])}
    command = [sys.executable, "-m", "autokd.cli", "run", "search.yaml", "--output-dir", "out", "--no-progress"]
    driver = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials_path = tmp_path / "out" / "trials.jsonl"
    deadline = time.monotonic() + 120
    while not (trials_path.exists() and len(trials_path.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline and driver.poll() is None, "the driver recorded no 3 trials"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(1.5)  # its workers notice the driver is gone and end
    before = records(trials_path)
    trained_before = log.read_text().split()
    assert 3 <= len(before) < 8
    log.write_text("")

    resumed = subprocess.run(
        [*command, "--resume"], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    after = records(trials_path)
    assert after[: len(before)] == before  # nothing recorded is lost or changed
    assert sorted(t["trial"] for t in after) == list(range(8))
    archs = [f"{t['arch']['hidden']}-{t['arch']['layers']}" for t in after]
    assert len(set(archs)) == 8
    trained_after = log.read_text().split()
    recorded_before = {f"{t['arch']['hidden']}-{t['arch']['layers']}" for t in before}
    # only the trials without a record ran again: none of the recorded ones
    assert len(trained_after) == 8 - len(before)
    assert not recorded_before & set(trained_after)
    assert set(trained_before) - recorded_before <= set(archs)  # those cut off were tried again or replaced


def test_a_bad_executor_option_is_a_config_error_naming_the_field_before_any_trial(tmp_path):
    from autokd.errors import ConfigError

    agent = AutoDistillation(build, search_config(executor={"name": "processes", "max_concurrent": 2, "gpus": 1}))
    agent.train_func, agent.eval_func, agent.show_progress = SleepTrain(0), evaluate, False
    with pytest.raises(ConfigError) as info:
        agent.search_loop(str(tmp_path / "out"))
    assert str(info.value) == (
        "invalid configuration: auto_distillation.search.executor: executor 'processes' has no option 'gpus'; "
        "its options are devices_per_trial, threads_per_trial, devices"
    )
    assert not (tmp_path / "out" / "trials.jsonl").exists()
