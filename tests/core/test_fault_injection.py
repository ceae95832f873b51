"""Fault injection: a search whose process is killed with SIGKILL at 20 random moments
and resumed each time loses and duplicates nothing, and its summary equals one
recomputed from the records (#13; the counts are in docs/reliability.md)."""

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from autokd import Objective
from autokd.config import Constraint
from autokd.results import ResultStore, pareto_front, select_best

USER = """
import random, time
def build(arch):
    return dict(arch)
def train(model):
    # 10-80 ms per trial: kills land before, inside and after appends and summary writes
    time.sleep(random.Random(str(sorted(model.items()))).uniform(0.01, 0.08))
    return model
def evaluate(model):
    size = model["hidden_size"] * model["heads"]
    return {"accuracy": 1 - 100.0 / size + model["layers"] / 1000, "latency": size / 100.0 + model["layers"]}
"""

CONFIG = """
model: {name: kill, builder: "killfuncs:build"}
auto_distillation:
  search:
    search_space: {hidden_size: [64, 128, 256, 512], heads: [1, 2, 4, 8], layers: [1, 2, 3, 4]}
    search_algorithm: random
    metrics: [accuracy, latency]
    constraints: ["latency <= 30"]
    max_trials: 40
    seed: 3
train: {function: "killfuncs:train"}
evaluation: {function: "killfuncs:evaluate"}
"""

KILLS = 20
MAX_TRIALS = 40


def read(out):
    if not (out / "trials.jsonl").exists():
        return []
    return [(r.trial, json.dumps(r.arch, sort_keys=True)) for r in ResultStore(out).load(repair=False)]


@pytest.mark.slow
def test_twenty_sigkills_lose_and_duplicate_nothing(tmp_path):
    (tmp_path / "killfuncs.py").write_text(USER)
    (tmp_path / "search.yaml").write_text(CONFIG)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "autokd.cli", "run", "search.yaml", "--output-dir", "out", "--resume", "--no-progress"]
    rng = random.Random(2026)
    lost = duplicated = 0
    kills = 0
    before = []
    while kills < KILLS:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Wait until this run holds the directory, then kill it at a random moment.
        pid_file = out / ".autokd.lock.pid"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if pid_file.exists() and pid_file.read_text().strip() == str(proc.pid):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:  # finished before the kill: the search is complete
            assert proc.returncode == 0, proc.stderr.read()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        kills += 1
        after = read(out)
        lost += sum(1 for r in before if r not in after)
        duplicated += (len(after) - len({t for t, _ in after})) + (len(after) - len({a for _, a in after}))
        assert [t for t, _ in after] == list(range(len(after))), f"kill {kills}: trial numbers {after}"
        before = after
    final = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    records = ResultStore(out).load()
    print(f"kills={kills} lost={lost} duplicated={duplicated} trials={len(records)}")
    assert kills == KILLS and lost == 0 and duplicated == 0
    assert [r.trial for r in records] == list(range(MAX_TRIALS))
    assert len({json.dumps(r.arch, sort_keys=True) for r in records}) == MAX_TRIALS
    assert all(r.ok for r in records)
    assert [(r.trial, json.dumps(r.arch, sort_keys=True)) for r in records][: len(before)] == before

    summary = json.loads((out / "summary.json").read_text())
    objectives = [Objective("accuracy", True), Objective("latency", False)]
    best, feasible = select_best(records, objectives, [Constraint.parse("latency <= 30")])
    assert summary["trials"] == MAX_TRIALS and summary["failed"] == 0
    assert summary["pareto_front"] == [r.to_json() for r in pareto_front(records, objectives)]
    assert (summary["best_trial"], summary["best_model_arch"], summary["best_meets_constraints"]) == (
        best.trial,
        best.arch,
        feasible,
    )
