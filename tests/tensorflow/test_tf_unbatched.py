"""Unbatched ``tf.data`` datasets (as Hugging Face's TF examples hand them over) are
batched by the arguments' per-device batch sizes, and ``autodistill`` takes
``train_func`` / ``eval_func`` in the order of autokd-torch's ``autodistillation``."""

from __future__ import annotations

import json
import types

import numpy as np
from tf_helpers import text_data


def unbatched(tf, n, seed):
    data = text_data(n, seed=seed)
    features = {"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]}
    return tf.data.Dataset.from_tensor_slices((features, data["labels"]))


def test_an_unbatched_dataset_is_batched_by_the_batch_size_of_its_use(tf):
    from autokd_tensorflow.data import as_dataset, is_unbatched

    dataset = unbatched(tf, 20, 0)
    assert is_unbatched(dataset) and not is_unbatched(dataset.batch(4))
    shapes = [batch[0]["input_ids"].shape.as_list() for batch in as_dataset(dataset, 8)]
    assert shapes == [[8, 8], [8, 8], [4, 8]]
    assert as_dataset(dataset.batch(4), 8).element_spec == dataset.batch(4).element_spec  # batched: as it is

    ragged = tf.data.Dataset.from_generator(
        lambda: ({"input_ids": np.arange(1, n + 1, dtype="int32")} for n in (3, 5, 2)),
        output_signature={"input_ids": tf.TensorSpec((None,), tf.int32)},
    )
    (batch,) = list(as_dataset(ragged, 3))
    assert batch["input_ids"].numpy().tolist() == [[1, 2, 3, 0, 0], [1, 2, 3, 4, 5], [1, 2, 0, 0, 0]]


def test_autodistill_with_unbatched_datasets_and_per_device_batch_sizes(tf, bert_teacher, tmp_path):
    from autokd_tensorflow import AutoDistillationConfig, TFDistillationConfig, TFOptimization

    args = types.SimpleNamespace(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, per_device_eval_batch_size=16
    )
    optimizer = TFOptimization(
        model=bert_teacher, args=args, train_dataset=unbatched(tf, 32, 1), eval_dataset=unbatched(tf, 16, 2)
    )
    config = AutoDistillationConfig(
        search_space={"hidden_size": [16]},
        search_algorithm="grid",
        max_trials=1,
        regular_distillation=TFDistillationConfig(train_steps=[2], loss_types=["CE", "KL"], loss_weights=[0.5, 0.5]),
    )
    optimizer.autodistill(config, bert_teacher, model_cls="TFBertForSequenceClassification")
    with open(tmp_path / "out" / "trials.jsonl", encoding="utf-8") as fh:
        (trial,) = [json.loads(line) for line in fh]
    assert trial["status"] == "ok", trial.get("error")
    assert trial["extras"]["train"]["effective_batch_size"] == 8
    assert trial["extras"]["distillation"][0]["steps_done"] == 2
    # a tf.data dataset carries no example indices: the cache says why it is off
    assert "carries no example indices" in trial["extras"]["teacher_cache"]["reason"]
    assert 0.0 <= trial["metrics"]["accuracy"] <= 1.0


def test_train_func_then_eval_func_as_in_torchs_autodistillation(bert_teacher, tmp_path):
    from autokd_tensorflow import AutoDistillationConfig, TFOptimization

    calls = []

    def train(model):
        calls.append("train")
        return model

    def evaluate(model):
        calls.append("eval")
        return {"eval_loss": 1.0}

    args = types.SimpleNamespace(output_dir=str(tmp_path / "out"))
    optimizer = TFOptimization(model=bert_teacher, args=args)
    config = AutoDistillationConfig(search_space={"hidden_size": [16]}, search_algorithm="grid", max_trials=1)
    optimizer.autodistill(config, bert_teacher, None, "TFBertForSequenceClassification", train, evaluate)
    # train then eval for the trial; then eval once more, of the teacher, for the saved student's card
    assert calls == ["train", "eval", "eval"]
    calls.clear()
    args.output_dir = str(tmp_path / "design")  # the design's order, by keyword
    optimizer.autodistill(
        config, bert_teacher, model_cls="TFBertForSequenceClassification", eval_func=evaluate, train_func=train
    )
    assert calls == ["train", "eval", "eval"]
