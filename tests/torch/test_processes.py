"""Several processes (issue #14): ``torchrun --nproc-per-node 2`` runs a search in which each
process trains on its shard of every batch, only the main process writes ``trials.jsonl``,
and the records equal a one-process run's in archs and count."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

CONFIG = """
model:
  framework: pytorch
  teacher: tiny_task:teacher
  builder_options:
    model_cls: AutoModelForSequenceClassification
auto_distillation:
  search:
    search_space:
      hidden_size: [8, 16]
      intermediate_size: [12, 20]
    search_algorithm: random
    metrics: [accuracy, eval_loss]
    higher_is_better: [true, false]
    max_trials: 3
    seed: 5
  regular_distillation:
    loss_types: ['CE', 'KL']
    loss_weights: [0.5, 0.5]
    train_steps: [3]
train:
  device: cpu
  optimizer: {Adam: {learning_rate: 0.001}}
  batch_size: 8
  gradient_accumulation_steps: 2
data:
  train: tiny_task:train_data
  eval: tiny_task:eval_data
  options: {size: 24}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path, name: str, processes: int) -> list[dict]:
    config = tmp_path / "search.yaml"
    config.write_text(CONFIG)
    out = tmp_path / name
    here = os.path.dirname(__file__)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={processes}",
        f"--master-port={_free_port()}",
        "-m",
        "autokd.cli",
        "run",
        str(config),
        "--output-dir",
        str(out),
        "--no-progress",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_record_the_trials_of_one_once(tmp_path):
    one = _run(tmp_path, "one", 1)
    two = _run(tmp_path, "two", 2)
    assert len(one) == len(two) == 3  # no record written twice
    assert [t["arch"] for t in two] == [t["arch"] for t in one]
    assert len({json.dumps(t["arch"], sort_keys=True) for t in two}) == 3
    assert [t["status"] for t in two] == ["ok"] * 3
    # the best student is saved once, by the main process, with the trial's metrics
    saved = json.loads((tmp_path / "two" / "best" / "metrics.json").read_text())
    assert saved["weights"] is not None and saved["trial"] in [t["trial"] for t in two]
    assert [t["extras"]["train"]["num_processes"] for t in one] == [1] * 3
    assert [t["extras"]["train"]["num_processes"] for t in two] == [2] * 3
    # each process trained on 4 of every 8 examples, 2 micro-batches per step
    assert two[0]["extras"]["train"]["effective_batch_size"] == 16
    assert [s["steps"] for s in two[0]["extras"]["stages"]] == [3]
    # data-parallel over halves of each batch is the one-process run up to float rounding
    for a, b in zip(one, two):
        assert b["metrics"]["eval_loss"] == pytest.approx(a["metrics"]["eval_loss"], rel=1e-4)
        assert b["extras"]["stages"][0]["last_loss"] == pytest.approx(a["extras"]["stages"][0]["last_loss"], rel=1e-4)
