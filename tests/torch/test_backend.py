"""Registration through the autokd entry point, and the pytorch backend behind `autokd run`."""

from __future__ import annotations

import json

import pytest

import autokd
from autokd.cli import main as autokd_main
from autokd.cli import run_config


def test_everything_is_registered_by_the_torch_plugin():
    reg = autokd.registry()
    by_torch = {(r.kind, r.name) for kind in reg.KINDS for r in reg.kind(kind).registrations() if r.plugin == "torch"}
    assert by_torch == {
        ("trainers", "pytorch"),
        ("criteria", "KnowledgeDistillationLoss"),
        ("criteria", "IntermediateLayersKnowledgeDistillationLoss"),
        ("losses", "KL"),
        ("losses", "CE"),
        ("losses", "MSE"),
        ("losses", "L1"),
        ("model_builders", "transformers"),
        ("evaluators", "eval_loss"),
        ("evaluators", "accuracy"),
    }
    assert reg.evaluators.direction("accuracy") is True and reg.evaluators.direction("eval_loss") is False
    backend = reg.trainers.get("pytorch")
    assert isinstance(backend, autokd.Backend) and backend.framework == "pytorch"
    from autokd_torch import IntermediateLayersKnowledgeDistillationLoss

    assert (
        reg.criteria.get("IntermediateLayersKnowledgeDistillationLoss", "pytorch").resolve()
        is IntermediateLayersKnowledgeDistillationLoss
    )


CONFIG = """
model:
  name: tiny_bert_search
  framework: pytorch
  teacher: {teacher}
  builder_options:
    model_cls: AutoModelForSequenceClassification
auto_distillation:
  search:
    search_space:
      hidden_size: [8, 16]
      intermediate_size: [12]
    search_algorithm: grid
    metrics: [accuracy, eval_loss]
    higher_is_better: [true, false]
    max_trials: 2
    seed: 11
  flash_distillation:
    block_names: ['bert.encoder.layer.1']
    layer_mappings_for_knowledge_transfer: [
      [
        ['bert.encoder.layer.1.attention.self', '1', 'bert.encoder.layer.1.attention.self', '1'],
        ['bert.encoder.layer.1.output', 'bert.encoder.layer.1.output'],
      ]
    ]
    loss_types: [['KL', 'MSE']]
    train_steps: [2]
  regular_distillation:
    loss_types: ['CE', 'KL']
    loss_weights: [0.5, 0.5]
    train_steps: [2]
train:
  optimizer:
    Adam:
      learning_rate: 0.001
  batch_size: 8
evaluation:
  batch_size: 16
data:
  train: tiny_task:train_data
  eval: tiny_task:eval_data
  options:
    size: 24
"""


def write_config(tmp_path, teacher):
    path = tmp_path / "search.yaml"
    path.write_text(CONFIG.format(teacher=teacher))
    return str(path)


def test_autokd_run_uses_the_backend_with_an_import_string_teacher(tmp_path):
    agent = run_config(write_config(tmp_path, "tiny_task:teacher"), output_dir=str(tmp_path / "out"), progress=False)
    lines = (tmp_path / "out" / "trials.jsonl").read_text().splitlines()
    trials = [json.loads(line) for line in lines]
    assert [t["arch"] for t in trials] == [
        {"hidden_size": 8, "intermediate_size": 12},
        {"hidden_size": 16, "intermediate_size": 12},
    ]
    assert [t["status"] for t in trials] == ["ok", "ok"]
    for t in trials:
        assert set(t["metrics"]) == {"accuracy", "eval_loss"}
        builder = t["extras"]["builder"]
        assert builder["model_cls"] == "BertForSequenceClassification" and builder["attn_implementation"] == "eager"
        assert [s["name"] for s in t["extras"]["stages"]] == ["flash 1/1 bert.encoder.layer.1", "regular 1/1"]
    assert agent.example_inputs["input_ids"].shape == (8, 8)
    assert len(agent.eval_data) == 12  # data.options size=24 reached the eval function


def test_a_pca_hidden_basis_is_taken_from_the_training_data(tmp_path):
    """``init_from_teacher: {width: pca_hidden}`` in YAML: the backend hands the builder the
    first training examples (the basis of the teacher's hidden states on the task's text,
    not on random tokens); ``data.options size=24`` gives 24 examples of 8 tokens."""
    text = CONFIG.replace(
        "    model_cls: AutoModelForSequenceClassification\n",
        "    model_cls: AutoModelForSequenceClassification\n    init_from_teacher: {{width: pca_hidden}}\n",
    )
    path = tmp_path / "search.yaml"
    path.write_text(text.format(teacher="tiny_task:teacher"))
    run_config(str(path), output_dir=str(tmp_path / "out"), max_trials=1, progress=False)
    (trial,) = [json.loads(line) for line in (tmp_path / "out" / "trials.jsonl").read_text().splitlines()]
    width = trial["extras"]["builder"]["init_from_teacher"]["width"]
    assert width["kind"] == "pca_hidden"
    assert width["basis_source"] == "teacher hidden states on data (3 layer outputs x 192 tokens)"


def test_autokd_run_loads_a_teacher_from_a_local_directory(tmp_path, bert_teacher):
    bert_teacher.save_pretrained(tmp_path / "teacher")
    assert (tmp_path / "teacher" / "model.safetensors").exists()
    code = autokd_main(
        [
            "run",
            write_config(tmp_path, str(tmp_path / "teacher")),
            "--output-dir",
            str(tmp_path / "out"),
            "--max-trials",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    trials = [json.loads(line) for line in (tmp_path / "out" / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 1 and trials[0]["status"] == "ok"


def test_a_missing_teacher_is_a_config_error(tmp_path, capsys):
    path = tmp_path / "search.yaml"
    path.write_text(CONFIG.replace("  teacher: {teacher}\n", ""))
    assert autokd_main(["run", str(path), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "model.teacher: missing: the built-in functions distil from a teacher" in capsys.readouterr().err


def test_a_teacher_that_is_neither_a_directory_nor_an_import_string(tmp_path):
    with pytest.raises(autokd.ConfigError) as err:
        run_config(write_config(tmp_path, "bert-base-uncased"), output_dir=str(tmp_path / "out"), progress=False)
    assert str(err.value) == (
        "invalid configuration: model.teacher: 'bert-base-uncased' is neither a local model directory nor an import "
        "string like 'package.module:function' (there is no model hub here)"
    )
