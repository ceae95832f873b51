"""``autokd run`` with a YAML config of the design's TensorFlow section: the
``tensorflow`` backend loads the teacher (PyTorch-written safetensors), the data from
import strings and builds transformers TF students."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from autokd.cli import main

DATA = os.path.join(os.path.dirname(__file__), "data")

DATA_MODULE = """
import numpy as np
import tensorflow as tf

def _data(n, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(10, 99, size=(n, 8)).astype("int32")
    labels = (np.arange(n) % 3).astype("int32")
    ids[:, 0] = labels + 1  # the label is in the first token
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}

def train():
    return _data(32, 0)  # a dict of arrays, batched by the backend

def evaluation():
    data = _data(12, 1)
    labels = data.pop("labels")
    return tf.data.Dataset.from_tensor_slices((data, labels)).batch(6)  # already batched
"""


def write_config(tmp_path, monkeypatch):
    (tmp_path / "tiny_text_data.py").write_text(DATA_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "autodistillation_tensorflow.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        model:
          name: tiny-bert
          framework: tensorflow
          teacher: {os.path.join(DATA, "pt_bert")}
          builder_options:
            model_cls: "transformers:TFAutoModelForSequenceClassification"
        data:
          train: "tiny_text_data:train"
          eval: "tiny_text_data:evaluation"

        auto_distillation:
          search:
            search_space: {{
              'hidden_size': [16, 32],
              'intermediate_size': [20, 37]
              }}
            search_algorithm: 'random'
            metrics: ['accuracy', 'eval_loss']
            max_trials: 2
            seed: 42
          flash_distillation:
            temperature: 1.0
            loss_types: ['CE', 'CE']
            loss_weights: [0.5, 0.5]
            train_steps: [2]

        train:
          optimizer: {{Adam: {{learning_rate: 0.001}}}}
          batch_size: 8
        """)
    )
    return str(config)


def test_autokd_run_with_the_tensorflow_backend(tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path, monkeypatch)
    out = tmp_path / "out"
    assert main(["run", config, "--output-dir", str(out), "--no-progress"]) == 0
    with open(out / "trials.jsonl", encoding="utf-8") as fh:
        trials = [json.loads(line) for line in fh]
    assert len(trials) == 2 and all(t["status"] == "ok" for t in trials), [t.get("error") for t in trials]
    for trial in trials:
        assert set(trial["metrics"]) >= {"accuracy", "eval_loss"}
        assert trial["extras"]["distillation"][0]["train_steps"] == 2
        assert trial["metrics"]["accuracy"] * 12 == pytest.approx(round(trial["metrics"]["accuracy"] * 12))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_model_arch"] in [t["arch"] for t in trials]
    assert "best trial" in capsys.readouterr().out


def test_a_missing_teacher_is_a_config_error(tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path, monkeypatch)
    text = open(config).read().replace(f"  teacher: {os.path.join(DATA, 'pt_bert')}\n", "")
    open(config, "w").write(text)
    assert main(["run", config, "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 2
    assert (
        "model.teacher: required by the tensorflow backend's built-in train function and builder"
        in capsys.readouterr().err
    )
