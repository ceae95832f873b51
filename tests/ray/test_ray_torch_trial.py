"""A torch distillation trial (tiny BERT teacher and students) run in Ray actors records
the same metrics as the same trial in process."""

from __future__ import annotations

import pytest
import torch
from bert_task import run_search


@pytest.mark.slow
def test_a_tiny_bert_distillation_through_ray_records_the_in_process_metrics(local_ray, tmp_path):
    torch.set_num_threads(1)  # as the actors (resources_per_trial cpu: 1)
    here = run_search(tmp_path, "local", "local")
    there = run_search(tmp_path, "ray", "{name: ray, max_concurrent: 2, resources_per_trial: {cpu: 1}}")
    assert [t["arch"] for t in there] == [t["arch"] for t in here]
    assert [t["status"] for t in there] == ["ok", "ok"]
    for a, b in zip(here, there, strict=True):
        assert set(b["metrics"]) == {"accuracy", "eval_loss"}
        assert b["metrics"]["eval_loss"] == pytest.approx(a["metrics"]["eval_loss"], rel=1e-5)
        assert b["metrics"]["accuracy"] == pytest.approx(a["metrics"]["accuracy"], abs=1e-9)
        assert [s["name"] for s in b["extras"]["stages"]] == [s["name"] for s in a["extras"]["stages"]]
