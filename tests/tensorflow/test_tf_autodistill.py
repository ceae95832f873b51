"""The design's ``TFOptimization.autodistill`` example end to end: tiny TFBert and
TFDistilBert teachers, students built from configs, a tiny in-memory dataset, 3 trials."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from tf_helpers import bert_config, distilbert_config, text_data

from autokd import ConfigError


def args_for(tmp_path):
    return types.SimpleNamespace(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=1e-3,
    )


def compute_metrics(prediction):
    predicted = np.argmax(prediction.predictions, axis=-1)
    return {"matches": float(np.sum(predicted == prediction.label_ids))}


def read_trials(output_dir):
    with open(f"{output_dir}/trials.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_seed_example_with_a_tiny_tfbert_teacher(tf, tmp_path):
    from transformers import TFAutoModelForSequenceClassification, TFBertForSequenceClassification

    from autokd_tensorflow import AutoDistillationConfig, TFDistillationConfig, TFOptimization, metrics

    tf.keras.utils.set_random_seed(0)
    teacher = TFBertForSequenceClassification(bert_config())
    train = text_data(32, seed=1)
    train_dataset = tf.data.Dataset.from_tensor_slices(
        ({"input_ids": train["input_ids"], "attention_mask": train["attention_mask"]}, train["labels"])
    ).batch(8)
    eval_dataset = text_data(16, seed=2)  # a dict of arrays, batched by TFOptimization

    optimizer = TFOptimization(
        model=teacher,
        args=args_for(tmp_path),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        compute_metrics=compute_metrics,
    )
    autodistillation_config = AutoDistillationConfig(
        search_space={"hidden_size": [16, 32], "intermediate_size": [20, 37]},
        search_algorithm="random",
        max_trials=3,
        seed=42,
        metrics=[metrics.Metric(name="eval_loss", greater_is_better=False)],
        knowledge_transfer=TFDistillationConfig(
            train_steps=[3], loss_types=["CE", "CE"], loss_weights=[0.5, 0.5], temperature=1.0
        ),
        regular_distillation=TFDistillationConfig(
            train_steps=[3], loss_types=["CE", "KL"], loss_weights=[0.5, 0.5], temperature=2.0
        ),
    )
    best_model_arch = optimizer.autodistill(
        autodistillation_config, teacher, model_cls=TFAutoModelForSequenceClassification
    )

    trials = read_trials(tmp_path / "out")
    assert len(trials) == 3 and all(t["status"] == "ok" for t in trials), trials
    archs = [t["arch"] for t in trials]
    assert len({(a["hidden_size"], a["intermediate_size"]) for a in archs}) == 3
    best = min(trials, key=lambda t: t["metrics"]["eval_loss"])
    assert best_model_arch == best["arch"]
    for trial in trials:
        m = trial["metrics"]
        assert set(m) >= {"eval_loss", "accuracy", "eval_accuracy", "matches", "eval_matches"}
        assert m["accuracy"] == pytest.approx(m["matches"] / 16)
        stages = trial["extras"]["distillation"]
        assert [(s["name"], s["train_steps"]) for s in stages] == [
            ("flash_distillation[0]", 3),
            ("regular_distillation[0]", 3),
        ]
        # The student really has the trial's architecture.
        h, i = trial["arch"]["hidden_size"], trial["arch"]["intermediate_size"]
        assert trial["extras"]["student_parameters"] == _bert_params(h, i)
    agent = optimizer.autodistillation_agent
    assert [r.arch for r in agent.search_result] == archs
    assert agent.pareto_front and agent.pareto_front[0].arch == best_model_arch


def _bert_params(h, i, vocab=99, positions=64, layers=2, labels=2):
    embeddings = (vocab + positions + 2) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
    return embeddings + layers * layer + (h * h + h) + (h * labels + labels)


def test_tfdistilbert_students_with_intermediate_layer_flash_distillation(tf, tmp_path):
    from transformers import TFDistilBertForSequenceClassification

    from autokd_tensorflow import AutoDistillationConfig, TFDistillationConfig, TFOptimization, metrics

    tf.keras.utils.set_random_seed(0)
    teacher = TFDistilBertForSequenceClassification(distilbert_config())
    optimizer = TFOptimization(
        model=teacher, args=args_for(tmp_path), train_dataset=text_data(32, seed=1), eval_dataset=text_data(16, seed=2)
    )
    config = AutoDistillationConfig(
        search_space={"hidden_size": [16, 32], "hidden_dim": [20, 37]},
        search_algorithm="grid",
        max_trials=3,
        metrics=[metrics.Metric("accuracy"), metrics.Metric("eval_loss", greater_is_better=False)],
        knowledge_transfer=TFDistillationConfig(
            train_steps=[2],
            layer_mappings=[[["hidden_states", "2", "hidden_states", "2"], ["attentions", "1", "attentions", "1"]]],
            loss_types=[["MSE", "KL"]],
            loss_weights=[[0.5, 0.5]],
        ),
        regular_distillation=TFDistillationConfig(train_steps=[2], loss_types=["CE", "MSE"], loss_weights=[0.2, 0.8]),
    )
    best = optimizer.autodistill(config, teacher, model_cls=TFDistilBertForSequenceClassification)

    trials = read_trials(tmp_path / "out")
    assert [t["arch"] for t in trials] == [
        {"hidden_size": 16, "hidden_dim": 20},
        {"hidden_size": 16, "hidden_dim": 37},
        {"hidden_size": 32, "hidden_dim": 20},
    ]
    assert all(t["status"] == "ok" for t in trials), [t["error"] for t in trials]
    assert best in [t["arch"] for t in trials]
    first = optimizer.stage_results[0]  # the last trial's flash stage
    assert first.name == "flash_distillation[0]" and first.weights_after != first.weights_before


def test_neither_model_builder_nor_model_cls_is_a_clear_error(tmp_path):
    from autokd_tensorflow import AutoDistillationConfig, TFOptimization

    optimizer = TFOptimization(model=None, args=args_for(tmp_path), train_dataset=text_data(), eval_dataset=text_data())
    with pytest.raises(
        ConfigError,
        match=r"model_cls: give model_cls to use the built-in model builder .* or pass your own "
        r"model_builder\(arch\)",
    ):
        optimizer.autodistill(AutoDistillationConfig(search_space={"hidden_size": [16]}), teacher_model=None)


def test_bad_output_distillation_weights_stop_before_the_first_trial(bert_teacher, tmp_path):
    from autokd_tensorflow import AutoDistillationConfig, TFDistillationConfig, TFOptimization

    optimizer = TFOptimization(
        model=bert_teacher, args=args_for(tmp_path), train_dataset=text_data(), eval_dataset=text_data()
    )
    config = AutoDistillationConfig(
        search_space={"hidden_size": [16]},
        search_algorithm="grid",
        max_trials=1,
        knowledge_transfer=TFDistillationConfig(train_steps=[3], loss_types=["CE", "KL"], loss_weights=[0.5, 0.6]),
    )
    with pytest.raises(
        ConfigError,
        match=r"auto_distillation.flash_distillation.loss_weights: \[0.5, 0.6\] sum to 1.1; "
        r"the weights of \[student-vs-targets, student-vs-teacher\] must sum to 1",
    ):
        optimizer.autodistill(config, bert_teacher, model_cls="TFBertForSequenceClassification")
    assert not (tmp_path / "out" / "trials.jsonl").exists()


def test_a_search_parameter_the_config_lacks_fails_the_trial_with_its_name(bert_teacher, tmp_path):
    from autokd_tensorflow import AutoDistillationConfig, TFDistillationConfig, TFOptimization

    optimizer = TFOptimization(
        model=bert_teacher, args=args_for(tmp_path), train_dataset=text_data(), eval_dataset=text_data()
    )
    config = AutoDistillationConfig(
        search_space={"hidden_sise": [16]},
        search_algorithm="grid",
        max_trials=1,
        knowledge_transfer=TFDistillationConfig(train_steps=[1]),
    )
    optimizer.autodistill(config, bert_teacher, model_cls="TFBertForSequenceClassification")
    (trial,) = read_trials(tmp_path / "out")
    assert trial["status"] == "failed"
    assert "auto_distillation.search.search_space.hidden_sise: BertConfig has no field 'hidden_sise'" in trial["error"]
