"""``autokd run`` with executor ``ray`` and no address: the executor starts a local Ray
for the search; Ctrl-C stops the running trials at once, keeps what was recorded, and
shuts that Ray down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import HELPERS
from executor_helpers import wait_for_file

CONFIG = """
model: {{name: sleepy, framework: pytorch, builder: "executor_helpers:build"}}
auto_distillation:
  search:
    search_space: {{hidden: [1, 2, 3, 4, 5, 6], layers: [1, 2, 3, 4]}}
    search_algorithm: random
    metrics: [score, cost]
    higher_is_better: [true, false]
    max_trials: 4
    seed: 5
    executor:
      name: ray
      max_concurrent: 2
      init_options:
        num_cpus: 2
        include_dashboard: false
        runtime_env: {{env_vars: {{PYTHONPATH: "{path}"}}}}
train: {{function: "driver_funcs:train"}}
evaluation: {{function: "executor_helpers:evaluate"}}
"""

FUNCS = """
from executor_helpers import SleepTrain
train = SleepTrain(120, pid_dir={pid_dir!r})
"""


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_ctrl_c_stops_the_running_trials_and_the_ray_the_search_started(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    path = os.pathsep.join([HELPERS, str(tmp_path)])
    (tmp_path / "search.yaml").write_text(CONFIG.format(path=path))
    (tmp_path / "driver_funcs.py").write_text(FUNCS.format(pid_dir=str(pid_dir)))
    env = {**os.environ, "PYTHONPATH": path}
    driver = subprocess.Popen(
        [sys.executable, "-m", "autokd.cli", "run", "search.yaml", "--output-dir", "out", "--no-progress"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as a terminal's foreground job: a process started in the background by a
        # non-interactive shell (`cmd &`, as CI scripts may run the tests) inherits SIGINT
        # ignored, and Python then installs no KeyboardInterrupt handler at all
        preexec_fn=_sigint_default,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while len(os.listdir(pid_dir)) < 2:  # both actors train
            assert time.monotonic() < deadline and driver.poll() is None, driver.communicate()[1][-3000:]
            time.sleep(0.1)
        pids = [int(wait_for_file(str(pid_dir / name))) for name in os.listdir(pid_dir) if name.endswith(".pid")]
        start = time.monotonic()
        driver.send_signal(signal.SIGINT)
        try:
            # the trials sleep 120 s: exiting well before that means Ctrl-C stopped them (on
            # a loaded machine killing the actors and Ray's shutdown take tens of seconds)
            _, stderr = driver.communicate(timeout=100)
        except subprocess.TimeoutExpired:
            driver.kill()
            pytest.fail("the driver still ran 100 s after Ctrl-C:\n" + driver.communicate()[1][-3000:])
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, stderr[-3000:]
    assert "interrupted; recorded trials are kept (rerun with --resume)" in stderr
    assert time.monotonic() - start < 100
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids), "the trials' actors still run after Ctrl-C"
    assert not (tmp_path / "out" / "trials.jsonl").exists()  # no trial finished: none recorded
