"""TPE driving a search whose trials run in worker processes (the ``processes`` executor):
asked while other trials run, it never proposes a running arch."""

from __future__ import annotations

import json
import os
import sys

import autokd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core"))
from executor_helpers import SleepTrain, build, evaluate, search_config


def test_tpe_never_proposes_an_arch_running_in_a_worker(tmp_path):
    config = search_config(max_trials=8, seed=0, algorithm="TPE", executor={"name": "processes", "max_concurrent": 2})
    config["auto_distillation"]["search"]["advisor_options"] = {"n_startup_trials": 2}
    agent = autokd.AutoDistillation(build, config)
    agent.train_func, agent.eval_func, agent.show_progress = SleepTrain(0.3), evaluate, False
    asked = []
    ask_pending = agent.advisor.ask_pending

    def recording(pending):
        arch = ask_pending(pending)
        asked.append((dict(arch), [dict(p) for p in pending]))
        return arch

    agent.advisor.ask_pending = recording
    agent.search_loop(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    archs = [json.dumps(r["arch"], sort_keys=True) for r in records]
    assert len(archs) == 8 and len(set(archs)) == 8 and all(r["status"] == "ok" for r in records)
    assert any(pending for _, pending in asked)  # it was asked while a worker trained
    assert all(arch not in pending for arch, pending in asked)
