"""On a CUDA GPU (issue #14; skipped without one, run by scripts/gpu_check.sh): the student,
its feature matchers, the teacher and the batches on the GPU, fp16 and bf16 autocast, and
the teacher-output cache in pinned host memory."""

from __future__ import annotations

import pytest
import torch
from conftest import TokenDataset, tiny_bert

import autokd
from autokd_torch import FlashDistillationTrainFunc

pytestmark = pytest.mark.cuda

CONFIG = {
    "model": {"framework": "pytorch"},
    "auto_distillation": {
        "search": {"search_space": {"hidden_size": [16]}, "metrics": ["eval_loss"], "max_trials": 1},
        "flash_distillation": {
            "block_names": ["bert.encoder.layer.1"],
            "layer_mappings_for_knowledge_transfer": [[["bert.encoder.layer.1.output", "bert.encoder.layer.1.output"]]],
            "loss_types": [["MSE"]],
            "train_steps": [3],
        },
        "regular_distillation": {"loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.5], "train_steps": [3]},
    },
    "train": {"optimizer": {"AdamW": {"learning_rate": 0.001}}, "batch_size": 8, "device": "cuda"},
}


@pytest.mark.parametrize("precision", ["no", "fp16", "bf16"])
def test_everything_trains_on_the_gpu(precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    config = autokd.load_config({**CONFIG, "train": {**CONFIG["train"], "mixed_precision": precision}})
    teacher = tiny_bert(seed=0)  # on the CPU: placed by the train function
    student = tiny_bert(seed=1, hidden_size=16, intermediate_size=20)
    seen = []
    student.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((kwargs["input_ids"].device.type, torch.is_autocast_enabled("cuda"))),
        with_kwargs=True,
    )
    train_func = FlashDistillationTrainFunc(config, teacher, TokenDataset(24), seed=0, show_progress=False)
    train_func(student)
    assert {p.device.type for p in student.parameters()} == {"cuda"}
    assert {p.device.type for p in teacher.parameters()} == {"cuda"}
    flash = train_func.last_distillers[0]
    matchers = list(flash.criterion.parameters())
    assert matchers and {p.device.type for p in matchers} == {"cuda"}  # 16 -> 32 wide
    assert set(seen) == {("cuda", precision != "no")}
    for distiller in train_func.last_distillers:
        assert all(torch.isfinite(torch.tensor(distiller.history)))


def test_cache_entries_are_pinned_host_memory():
    config = autokd.load_config(CONFIG)
    train_func = FlashDistillationTrainFunc(config, tiny_bert(seed=0), TokenDataset(24), seed=0, show_progress=False)
    train_func(tiny_bert(seed=1, hidden_size=16, intermediate_size=20))
    cache = train_func.teacher.cache
    entries = [row for rows in cache._memory.values() for row in rows.values()]
    assert entries and all(row.device.type == "cpu" and row.is_pinned() for row in entries)


def test_the_trainer_distils_on_the_gpu_out_of_the_box(tmp_path):
    from transformers import TrainingArguments

    from autokd_torch import Trainer

    trainer = Trainer(
        model=tiny_bert(seed=1),
        args=TrainingArguments(
            output_dir=str(tmp_path), per_device_train_batch_size=8, report_to=[], disable_tqdm=True
        ),
        train_dataset=TokenDataset(24, seed=1),
        eval_dataset=TokenDataset(12, seed=2),
        autodistillation_config={
            "search": {"search_space": {"hidden_size": [16]}, "metrics": ["eval_loss"], "max_trials": 1},
            "flash_distillation": {"regular_distillation": {"loss_types": [["CE", "KL"]], "train_steps": [2]}},
        },
    )
    teacher = tiny_bert(seed=0).cuda()
    trainer.autodistillation(teacher)
    (record,) = trainer.autodistillation_agent.search_result
    assert record.status == "ok" and record.extras["train"]["device"].startswith("cuda")
