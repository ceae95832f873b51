"""A torch distillation trial (tiny BERT teacher and students) run in the ``processes``
executor's workers records the same metrics as the same trial in process, the teacher cache
filled once on disk and shared read-only by the workers."""

from __future__ import annotations

import json
import os

import pytest
from test_backend import CONFIG

from autokd.cli import run_config

HERE = os.path.dirname(os.path.abspath(__file__))


def run_search(tmp_path, name, executor, monkeypatch):
    text = CONFIG.format(teacher="tiny_task:teacher").replace(
        "    seed: 11\n", f"    seed: 11\n    executor: {executor}\n"
    )
    # the teacher cache filled once, on disk, then mapped read-only by every worker
    text = text.replace(
        "  batch_size: 8\n", "  batch_size: 8\n  teacher_cache: {prefill: true, memory_budget_mb: 0}\n", 1
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    # the workers import tiny_task (and its conftest) by name, as the driver does
    monkeypatch.setenv("PYTHONPATH", HERE)
    run_config(str(path), output_dir=str(tmp_path / name), progress=False)
    lines = (tmp_path / name / "trials.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda t: t["trial"])


@pytest.mark.slow
def test_a_tiny_bert_distillation_in_worker_processes_records_the_in_process_metrics(tmp_path, monkeypatch):
    here = run_search(tmp_path, "local", "local", monkeypatch)
    there = run_search(tmp_path, "processes", "{name: processes, max_concurrent: 2, threads_per_trial: 1}", monkeypatch)
    assert [t["arch"] for t in there] == [t["arch"] for t in here]
    assert [t["status"] for t in there] == ["ok", "ok"]
    for a, b in zip(here, there, strict=True):
        assert set(b["metrics"]) == {"accuracy", "eval_loss"}
        assert b["metrics"]["eval_loss"] == pytest.approx(a["metrics"]["eval_loss"], rel=1e-5)
        assert b["metrics"]["accuracy"] == pytest.approx(a["metrics"]["accuracy"], abs=1e-9)
        assert [s["name"] for s in b["extras"]["stages"]] == [s["name"] for s in a["extras"]["stages"]]
        assert b["extras"]["teacher_cache"]["misses"] == 0 and b["extras"]["teacher_cache"]["hits"] > 0
    # the first worker filled the cache (24 examples) under the lock; the other only read it
    assert sorted(t["extras"]["teacher_cache"]["prefilled"] for t in there) == [0, 24]
    assert [t["extras"]["teacher_cache"]["prefilled"] for t in here] == [24, 0]
