"""``Trainer.autodistillation`` trains as its ``TrainingArguments`` say (issue #14): each
setting is asserted on what runs, the config's ``train`` overrides only what it sets, and
losses and metrics reach the Trainer's log history and callbacks."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TokenDataset, tiny_bert
from transformers import BertForSequenceClassification, TrainerCallback, TrainingArguments

import autokd
from autokd.config import LRSchedulerConfig
from autokd_torch import Trainer

CONFIG = {
    "search": {
        "search_space": {"hidden_size": [16], "intermediate_size": [20]},
        "search_algorithm": "grid",
        "metrics": ["eval_loss"],
        "max_trials": 1,
    },
    "flash_distillation": {
        "regular_distillation": {"loss_types": [["CE", "KL"]], "loss_weights": [[0.5, 0.5]], "train_steps": [4]}
    },
}


def args(tmp_path, **overrides):
    options = dict(
        output_dir=str(tmp_path / "search"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=16,
        learning_rate=0.02,
        weight_decay=0.01,
        optim="sgd",
        lr_scheduler_type="cosine",
        warmup_steps=2,
        gradient_accumulation_steps=2,
        bf16=True,
        max_grad_norm=0.5,
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        seed=7,
    )
    options.update(overrides)
    return TrainingArguments(**options)


def trainer(tmp_path, config=CONFIG, **overrides):
    return Trainer(
        model=tiny_bert(seed=1),
        args=args(tmp_path, **overrides),
        train_dataset=TokenDataset(32, seed=1),
        eval_dataset=TokenDataset(12, seed=2),
        autodistillation_config=config,
    )


def test_the_training_arguments_become_the_train_settings(tmp_path):
    train = trainer(tmp_path).autodistillation_train_config()
    assert train.optimizer == {"SGD": {"learning_rate": 0.02, "weight_decay": 0.01}}
    assert (train.device, train.mixed_precision, train.gradient_accumulation_steps, train.max_grad_norm) == (
        "cpu",
        "bf16",
        2,
        0.5,
    )
    assert train.lr_scheduler == LRSchedulerConfig("cosine", warmup_steps=2)
    assert train.batch_size == 4 and train.group_by_length is False
    grouped = trainer(tmp_path, train_sampling_strategy="group_by_length").autodistillation_train_config()
    assert grouped.group_by_length is True
    adam = trainer(
        tmp_path,
        optim="adamw_torch",
        adam_beta1=0.8,
        adam_beta2=0.9,
        adam_epsilon=1e-6,
        warmup_steps=0.25,
        lr_scheduler_type="linear",
        bf16=False,
        max_grad_norm=0.0,
    ).autodistillation_train_config()
    assert adam.optimizer == {"AdamW": {"learning_rate": 0.02, "weight_decay": 0.01, "betas": [0.8, 0.9], "eps": 1e-6}}
    assert adam.lr_scheduler == LRSchedulerConfig("linear", warmup_ratio=0.25)
    assert (adam.mixed_precision, adam.max_grad_norm) == ("no", None)
    factor = trainer(tmp_path, optim="adafactor").autodistillation_train_config()
    assert factor.optimizer == {
        "Adafactor": {"learning_rate": 0.02, "weight_decay": 0.01, "scale_parameter": False, "relative_step": False}
    }


def test_the_config_train_section_overrides_only_what_it_sets(tmp_path):
    config = {
        "auto_distillation": {"search": CONFIG["search"], **CONFIG["flash_distillation"]},
        "train": {"gradient_accumulation_steps": 3, "lr_scheduler": {"type": "linear"}},
    }
    train = trainer(tmp_path, config=config).autodistillation_train_config()
    assert train.gradient_accumulation_steps == 3 and train.lr_scheduler == LRSchedulerConfig("linear")
    assert train.optimizer == {"SGD": {"learning_rate": 0.02, "weight_decay": 0.01}}  # from the arguments
    assert (train.mixed_precision, train.max_grad_norm, train.batch_size) == ("bf16", 0.5, 4)


def test_unsupported_arguments_are_refused_with_the_fix(tmp_path):
    with pytest.raises(autokd.ConfigError) as err:
        trainer(tmp_path, optim="adamw_bnb_8bit").autodistillation_train_config()
    assert str(err.value).startswith(
        "invalid configuration: TrainingArguments.optim: 'adamw_bnb_8bit' is not supported by autokd's distillation; "
        "use one of adamw_torch, adamw_torch_fused"
    )
    with pytest.raises(autokd.ConfigError, match="TrainingArguments.train_sampling_strategy: 'sequential' is not"):
        trainer(tmp_path, train_sampling_strategy="sequential").autodistillation_train_config()
    with pytest.raises(autokd.ConfigError) as err:
        trainer(tmp_path, lr_scheduler_type="warmup_stable_decay").autodistillation_train_config()
    assert "train.lr_scheduler: {type: warmup_stable_decay, decay_ratio: 0.2}" in str(err.value)


class Recorder(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_the_search_runs_as_the_arguments_say(tmp_path):
    from transformers import get_scheduler

    search = trainer(tmp_path)
    recorder = Recorder()
    search.add_callback(recorder)
    forwards = []

    def record(module, inputs, kwargs):
        if module.training:
            forwards.append(
                (kwargs["input_ids"].shape[0], torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
            )

    def builder(arch):
        student = search.model_builder_builtin(arch, teacher_model=teacher)
        student.register_forward_pre_hook(record, with_kwargs=True)
        return student

    teacher = tiny_bert(seed=0)
    search.autodistillation(teacher, model_builder=builder)

    # 4 optimizer steps of 2 micro-batches of 4 examples, under bf16 autocast
    assert forwards == [(4, True, torch.bfloat16)] * 8
    train_func = search.autodistillation_agent.train_func.train_func
    (regular,) = train_func.last_distillers
    assert type(regular.optimizer) is torch.optim.SGD
    assert regular.optimizer.param_groups[0]["weight_decay"] == 0.01
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    schedule = get_scheduler("cosine", reference, num_warmup_steps=2, num_training_steps=4)
    expected = []
    for _ in range(4):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        schedule.step()
    assert regular.learning_rates == pytest.approx(expected)

    (record_,) = [json.loads(line) for line in open(tmp_path / "search" / "trials.jsonl")]
    assert record_["extras"]["train"] == {
        "device": "cpu",
        "mixed_precision": "bf16",
        "num_processes": 1,
        "gradient_accumulation_steps": 2,
        "max_grad_norm": 0.5,
        "lr_scheduler": {"type": "cosine", "warmup_steps": 2},
        "effective_batch_size": 8,
    }
    stage_log = [h for h in search.state.log_history if "autokd/regular 1/1/last_loss" in h]
    assert len(stage_log) == 1 and stage_log[0]["autokd/regular 1/1/steps"] == 4
    assert stage_log[0]["autokd/regular 1/1/last_loss"] == pytest.approx(regular.history[-1])
    metrics_log = [h for h in search.state.log_history if "autokd/eval_loss" in h]
    assert metrics_log[0]["autokd/eval_loss"] == pytest.approx(record_["metrics"]["eval_loss"])
    # the callbacks (TensorBoard, W&B, ...) saw the same logs
    seen = [log for log in recorder.logs if any(k.startswith("autokd") for k in log)]
    assert [log["autokd/regular 1/1/last_loss"] for log in seen if "autokd/regular 1/1/last_loss" in log] == [
        stage_log[0]["autokd/regular 1/1/last_loss"]
    ]
    # (the second eval_loss, if any, is the teacher's, measured for the saved student's card)
    assert [log["autokd/eval_loss"] for log in seen if "autokd/eval_loss" in log] == [
        log["autokd/eval_loss"] for log in metrics_log
    ]


def test_a_teacher_on_another_device_is_moved_to_the_students(tmp_path):
    """The teacher and the student train on the device of the arguments (the CPU here)."""
    search = trainer(tmp_path, bf16=False)
    teacher = tiny_bert(seed=0)
    search.autodistillation(teacher)
    assert {p.device.type for p in teacher.parameters()} == {"cpu"}
    assert isinstance(search.model, BertForSequenceClassification)
