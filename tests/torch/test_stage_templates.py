"""A tiny-BERT search whose flash stage is a {i}/{t} template: autokd-torch's built-in
train function expands it per student (one stage per layer, paired with the uniform
teacher layers), drops attention maps where the head counts differ, records both in the
trial, and continues the per-layer stages across rungs and into the final distillation."""

from __future__ import annotations

import json

from autokd.cli import run_config

CONFIG = """
model:
  name: tiny_bert_templates
  framework: pytorch
  teacher: tiny_task:deep_teacher
  builder_options:
    model_cls: AutoModelForSequenceClassification
auto_distillation:
  search:
    search_space:
      num_hidden_layers: [2, 3]
      num_attention_heads: [1, 2]
      hidden_size: [16]
    search_algorithm: grid
    metrics: [eval_loss]
    higher_is_better: [false]
    max_trials: 4
    seed: 3
    fidelity: {schedule: successive_halving, min_fraction: 0.34, eta: 3}
  flash_distillation:
    block_names: ['bert.encoder.layer.{i}']
    layer_mappings_for_knowledge_transfer:
      - - ['bert.encoder.layer.{i}', '', 'bert.encoder.layer.{t}', '']
        - ['bert.encoder.layer.{i}.attention.self', '1', 'bert.encoder.layer.{t}.attention.self', '1']
    loss_types: [['MSE', 'KL']]
    train_steps: [3]
  regular_distillation:
    loss_types: ['CE', 'KL']
    loss_weights: [0.5, 0.5]
    train_steps: [3]
  final_distillation: {candidates: 1, train_steps: [6, 3]}
train:
  optimizer: {Adam: {learning_rate: 0.001}}
  batch_size: 8
data:
  train: tiny_task:train_data
  eval: tiny_task:eval_data
"""

PAIRS = {2: [1, 3], 3: [1, 2, 3]}  # select_teacher_layers(n, 4, "uniform")


def test_a_template_runs_per_student_layer_against_the_uniform_teacher_layers(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text(CONFIG)
    run_config(str(path), output_dir=str(tmp_path / "out"), progress=False)
    trials = [json.loads(line) for line in (tmp_path / "out" / "trials.jsonl").read_text().splitlines()]
    assert [t["status"] for t in trials] == ["ok"] * len(trials)
    rung0 = [t for t in trials if t.get("phase", "search") == "search" and t.get("rung") == 0]
    assert sorted((t["arch"]["num_hidden_layers"], t["arch"]["num_attention_heads"]) for t in rung0) == [
        (2, 1),
        (2, 2),
        (3, 1),
        (3, 2),
    ]
    for t in trials:
        layers, heads = t["arch"]["num_hidden_layers"], t["arch"]["num_attention_heads"]
        extras = t["extras"]
        assert extras["teacher_layers"] == PAIRS[layers]
        names = [s["name"] for s in extras["stages"]]
        flash = [f"flash {i + 1}/{layers} bert.encoder.layer.{i}" for i in range(layers)]
        if heads == 1:  # the teacher has 2 heads: its attention maps cannot be matched
            assert extras["attention_maps_not_distilled"] == {
                "reason": "student has 1 heads, teacher 2",
                "layers": [f"bert.encoder.layer.{i}.attention.self" for i in range(layers)],
            }
        else:
            assert "attention_maps_not_distilled" not in extras
        if t in rung0:  # round(0.34 * 3) = 1 step of every stage
            assert names == [*flash, "regular 1/1"]
            assert [s["steps_done"] for s in extras["stages"]] == [1] * (layers + 1)
    # the best candidate continues at the full budget: every per-layer stage to its 3 steps
    (full,) = [t for t in trials if t.get("phase", "search") == "search" and t.get("rung") == 1]
    layers = full["arch"]["num_hidden_layers"]
    assert [s["steps_done"] for s in full["extras"]["stages"]] == [3] * (layers + 1)
    # final distillation: train_steps [6, 3] for the configured stages -> each flash layer to 6
    (final,) = [t for t in trials if t.get("phase") == "final"]
    assert final["arch"] == full["arch"]
    assert [(s["name"], s["steps_done"]) for s in final["extras"]["stages"]] == [
        (f"flash {i + 1}/{layers} bert.encoder.layer.{i}", 6) for i in range(layers)
    ]
