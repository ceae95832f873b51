"""The non-transformers case: an MLP teacher and MLP students on scikit-learn's digits, through
the same API as the transformers models (AutoDistillation with the built-in functions, and
`autokd run` with the pytorch backend)."""

from __future__ import annotations

import json

import torch
from digits_case import accuracy, build_mlp, eval_data, teacher, train_data

import autokd
from autokd.cli import run_config
from autokd_torch import EvalFunc, FlashDistillationTrainFunc

SEARCH = {
    "search": {
        "search_space": {"hidden": [4, 32]},
        "search_algorithm": "grid",
        "metrics": ["accuracy"],
        "max_trials": 2,
        "seed": 0,
    },
    "flash_distillation": {
        # only the first layer trains, to match the teacher's hidden activations (width 128)
        "block_names": ["0"],
        "layer_mappings_for_knowledge_transfer": [[["1", "1"]]],
        "loss_types": [["MSE"]],
        "train_steps": [60],
    },
    "regular_distillation": {
        "loss_types": ["CE", "KL"],
        "loss_weights": [0.5, 0.5],
        "temperature": 2.0,
        "train_steps": [150],
    },
}


def test_the_teacher_is_a_good_digits_classifier():
    assert accuracy(teacher(), eval_data()) >= 0.95


def test_a_search_over_mlp_students_with_the_builtin_functions(tmp_path):
    config = autokd.load_config(SEARCH)
    agent = autokd.AutoDistillation(build_mlp, config)
    agent.train_func = FlashDistillationTrainFunc(
        config,
        teacher(),
        train_data(),
        batch_size=32,
        optimizer={"Adam": {"learning_rate": 1e-2}},
        seed=0,
        show_progress=False,
    )
    agent.eval_func = EvalFunc(eval_data(), metrics=["accuracy"])
    agent.show_progress = False
    best = agent.search_loop(str(tmp_path / "out"))

    trials = [json.loads(line) for line in (tmp_path / "out" / "trials.jsonl").read_text().splitlines()]
    assert [t["arch"] for t in trials] == [{"hidden": 4}, {"hidden": 32}]
    narrow, wide = (t["metrics"]["accuracy"] for t in trials)
    assert wide >= 0.9  # 210 steps of distillation from the 128-wide teacher
    assert narrow < wide and best == {"hidden": 32}
    assert set(trials[1]["metrics"]) == {"accuracy", "eval_loss"}
    stages = trials[1]["extras"]["stages"]
    assert [s["name"] for s in stages] == ["flash 1/1 0", "regular 1/1"]
    assert stages[0]["last_loss"] < stages[0]["first_loss"]  # the matched hidden activations got closer


def test_the_same_search_through_autokd_run(tmp_path):
    config = {
        "model": {
            "name": "digits",
            "framework": "pytorch",
            "builder": "digits_case:build_mlp",
            "teacher": "digits_case:teacher",
        },
        "auto_distillation": {
            **SEARCH,
            "search": {**SEARCH["search"], "search_space": {"hidden": [16]}, "max_trials": 1},
        },
        "train": {"optimizer": {"Adam": {"learning_rate": 1e-2}}, "batch_size": 32},
        "data": {"train": "digits_case:train_data", "eval": "digits_case:eval_data"},
    }
    import yaml

    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(config))
    agent = run_config(str(path), output_dir=str(tmp_path / "out"), progress=False)
    trial = agent.search_result[0]
    assert trial.ok and trial.arch == {"hidden": 16}
    assert trial.metrics["accuracy"] >= 0.85
    assert torch.equal(agent.example_inputs, train_data().tensors[0][:32])  # inputs only, no labels
