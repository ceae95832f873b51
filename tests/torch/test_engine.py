"""The training engine (issue #14): gradient accumulation, learning-rate schedules,
clipping, bf16 autocast, ``extras.train``, settings this machine cannot run, and budgets
that continue a student's stages (issue #15)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TokenDataset, tiny_bert

import autokd
from autokd_torch import Distillation, EvalFunc, FlashDistillationTrainFunc

KD = {"KnowledgeDistillationLoss": {"temperature": 2.0, "loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.5]}}


def distiller(student, teacher, data, **train):
    options = {
        "optimizer": {"SGD": {"learning_rate": 0.5}},
        "criterion": KD,
        "device": "cpu",
        "teacher_cache": {"enabled": False},
        **train,
    }
    run = Distillation({"distillation": {"train": options}})
    run.student_model, run.teacher_model, run.train_dataset = student, teacher, data
    run.show_progress = False
    return run


def pair():
    return tiny_bert(seed=0), tiny_bert(seed=1, hidden_size=16, intermediate_size=20)


def weights(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_four_micro_batches_of_8_make_the_update_of_one_batch_of_32():
    data = TokenDataset(32, seed=3)
    teacher, accumulated = pair()
    _, whole = pair()
    before = weights(whole)
    distiller(accumulated, teacher, data, batch_size=8, gradient_accumulation_steps=4, train_steps=1).fit()
    distiller(whole, teacher, data, batch_size=32, train_steps=1).fit()
    after_whole, after_accumulated = weights(whole), weights(accumulated)
    moved = max(float((after_whole[k] - before[k]).abs().max()) for k in before)
    assert moved > 1e-3  # the step did change the student
    for name in before:
        torch.testing.assert_close(after_accumulated[name], after_whole[name], rtol=1e-4, atol=1e-6)


def rates_of_ten_steps(schedule, accumulation=1):
    """The learning rate of every step of a 10-step stage trained with ``schedule``."""
    teacher, student = pair()
    run = distiller(
        student,
        teacher,
        TokenDataset(16),
        optimizer={"AdamW": {"learning_rate": 0.01}},
        batch_size=4,
        train_steps=10,
        gradient_accumulation_steps=accumulation,
        lr_scheduler=schedule,
    )
    run.fit()
    return run.learning_rates


@pytest.mark.parametrize(
    ("schedule", "accumulation", "warmup"),
    [({"type": "linear", "warmup_ratio": 0.2}, 1, 2), ({"type": "cosine", "warmup_steps": 3}, 2, 3)],
)
def test_the_learning_rate_of_every_step_is_get_schedulers(schedule, accumulation, warmup):
    from transformers import get_scheduler

    rates = rates_of_ten_steps(schedule, accumulation)
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = get_scheduler(schedule["type"], reference, num_warmup_steps=warmup, num_training_steps=10)
    expected = []
    for _ in range(10):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        scheduler.step()
    assert expected[0] == 0.0 and max(expected) == pytest.approx(0.01)
    assert rates == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_warmup_stable_decay_warms_up_holds_then_decays_linearly_to_0():
    rates = rates_of_ten_steps({"type": "warmup_stable_decay", "warmup_steps": 2, "decay_ratio": 0.3})
    # 2 warm-up steps, 5 stable, 3 decaying: the last step's rate is a third of the way to 0 from the full one
    assert rates == pytest.approx([0.0, 0.005] + [0.01] * 6 + [0.01 * 2 / 3, 0.01 / 3], rel=1e-9)


def test_clipping_bounds_the_update():
    data = TokenDataset(8)
    teacher, clipped = pair()
    _, free = pair()
    before = weights(free)

    def update(model):
        return math.sqrt(sum(float((p.detach() - before[k]).pow(2).sum()) for k, p in model.named_parameters()))

    distiller(free, teacher, data, batch_size=8, train_steps=1, optimizer={"SGD": {"learning_rate": 1.0}}).fit()
    distiller(
        clipped,
        teacher,
        data,
        batch_size=8,
        train_steps=1,
        optimizer={"SGD": {"learning_rate": 1.0}},
        max_grad_norm=0.01,
    ).fit()
    assert update(free) > 0.1
    assert update(clipped) == pytest.approx(0.01, rel=1e-3)  # lr 1: the update is the clipped gradient


SEARCH = {
    "model": {"framework": "pytorch"},
    "auto_distillation": {
        "search": {
            "search_space": {"hidden_size": [8, 16], "intermediate_size": [12]},
            "search_algorithm": "grid",
            "metrics": ["eval_loss"],
            "max_trials": 2,
            "seed": 3,
        },
        "flash_distillation": {
            "block_names": ["bert.encoder.layer.1"],
            "layer_mappings_for_knowledge_transfer": [[["bert.encoder.layer.1.output", "bert.encoder.layer.1.output"]]],
            "loss_types": [["MSE"]],
            "train_steps": [6],
        },
        "regular_distillation": {"loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.5], "train_steps": [6]},
    },
    "train": {
        "optimizer": {"AdamW": {"learning_rate": 0.003}},
        "batch_size": 8,
        "device": "cpu",
        "lr_scheduler": {"type": "linear", "warmup_ratio": 0.2},
    },
}


def search_config(**train):
    return autokd.load_config({**SEARCH, "train": {**SEARCH["train"], **train}})


def student(hidden_size=16):
    return tiny_bert(seed=1, hidden_size=hidden_size, intermediate_size=12)


def search(tmp_path, config, teacher):
    from conftest import bert_config
    from transformers import BertForSequenceClassification

    from autokd_torch.builder import transformers_builder

    data = TokenDataset(24, seed=1)
    agent = autokd.AutoDistillation(
        lambda arch: transformers_builder(
            arch, base_config=bert_config(), model_cls=BertForSequenceClassification, seed=1
        ),
        config,
    )
    agent.train_func = FlashDistillationTrainFunc(config, teacher, data, seed=0, show_progress=False)
    agent.eval_func = EvalFunc(TokenDataset(12, seed=2), metrics=["eval_loss"], engine=agent.train_func.engine)
    agent.show_progress = False
    agent.search_loop(str(tmp_path))
    return agent.search_result


def test_a_bf16_search_stays_within_tolerance_of_fp32_and_says_how_it_trained(tmp_path):
    teacher = tiny_bert(seed=0)
    fp32 = search(tmp_path / "fp32", search_config(), teacher)
    bf16 = search(tmp_path / "bf16", search_config(mixed_precision="bf16"), teacher)
    assert [r.status for r in fp32 + bf16] == ["ok"] * 4
    for a, b in zip(fp32, bf16):
        for stage_a, stage_b in zip(a.extras["stages"], b.extras["stages"]):
            assert stage_b["first_loss"] == pytest.approx(stage_a["first_loss"], rel=0.03, abs=1e-3)
            assert stage_b["last_loss"] == pytest.approx(stage_a["last_loss"], rel=0.05, abs=2e-3)
            assert stage_b["first_loss"] != stage_a["first_loss"]  # bf16 did run
        assert b.metrics["eval_loss"] == pytest.approx(a.metrics["eval_loss"], rel=0.03)
    assert bf16[0].extras["train"] == {
        "device": "cpu",
        "mixed_precision": "bf16",
        "num_processes": 1,
        "gradient_accumulation_steps": 1,
        "max_grad_norm": None,
        "lr_scheduler": {"type": "linear", "warmup_ratio": 0.2},
        "effective_batch_size": 8,
    }
    assert fp32[0].extras["train"]["mixed_precision"] == "no"


def test_a_budget_of_a_third_then_two_thirds_trains_as_one_call():
    """One stage, so the increments are the one run cut in two. (With several stages each
    increment runs every stage in turn: the regular stage's first steps then come before
    the flash stage's last ones, a different run by design.)"""
    config = autokd.load_config(
        {**SEARCH, "auto_distillation": {**SEARCH["auto_distillation"], "flash_distillation": None}}
    )
    teacher, data = tiny_bert(seed=0), TokenDataset(24, seed=1)
    stepwise = FlashDistillationTrainFunc(config, teacher, data, seed=0, show_progress=False)
    at_once = FlashDistillationTrainFunc(config, teacher, data, seed=0, show_progress=False)
    assert stepwise.supports_budget
    a, b = student(), student()

    stepwise(a, budget=1 / 3)
    (regular,) = stepwise.last_distillers
    first, optimizer = list(regular.history), regular.optimizer
    assert len(first) == 2 and {int(s["step"]) for s in optimizer.state.values()} == {2}
    stepwise(a, budget=2 / 3)
    # the same stage continues: its step counter, optimizer and optimizer state carry over
    assert stepwise.last_distillers == [regular] and regular.steps_done == 6
    assert regular.optimizer is optimizer and {int(s["step"]) for s in optimizer.state.values()} == {6}

    at_once(b)
    (whole,) = at_once.last_distillers
    assert first + regular.history == pytest.approx(whole.history, rel=1e-5)
    assert regular.learning_rates == pytest.approx(whole.learning_rates[2:], rel=1e-9)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_budgets_of_several_stages_add_up_to_their_steps():
    import gc

    config = search_config()
    train_func = FlashDistillationTrainFunc(config, tiny_bert(seed=0), TokenDataset(24, seed=1), show_progress=False)
    model = student()
    for budget in (1 / 9, 2 / 9, 6 / 9):
        train_func(model, budget=budget)
    assert [d.steps_done for d in train_func.last_distillers] == [6, 6]
    assert [len(d.history) for d in train_func.last_distillers] == [4, 4]  # round(6) - round(6 / 3)
    assert len(train_func._progress) == 1
    del model
    train_func.last_distillers = []
    gc.collect()
    assert len(train_func._progress) == 0  # a student dropped by the search takes its progress with it


def test_per_stage_budgets_and_a_final_distillation_past_the_full_budget():
    config = search_config()
    train_func = FlashDistillationTrainFunc(config, tiny_bert(seed=0), TokenDataset(24, seed=1), show_progress=False)
    model = student()
    train_func(model, budget=[0.5, 0.0])  # flash half, regular not yet
    assert [d.name for d in train_func.last_distillers] == ["flash 1/1 bert.encoder.layer.1"]
    assert train_func.last_distillers[0].steps_done == 3
    train_func(model, budget=[0.5, 1.5])  # the rest of flash; regular 1.5 x its steps
    assert [d.steps_done for d in train_func.last_distillers] == [6, 9]
    regular = train_func.last_distillers[1]
    assert regular.schedule_steps == 9  # the schedule spans the longer run
    assert regular.learning_rates[-1] > 0


def test_a_final_distillation_goes_on_along_a_schedule_over_all_its_steps():
    config = search_config(lr_scheduler={"type": "linear"})
    train_func = FlashDistillationTrainFunc(config, tiny_bert(seed=0), TokenDataset(24, seed=1), show_progress=False)
    model = student()
    train_func(model, budget=1.0)  # the full budget: 6 regular steps, the rate 0.003 * (6 - s) / 6 at step s
    regular = train_func.last_distillers[1]
    assert regular.learning_rates == pytest.approx([0.003 * (6 - s) / 6 for s in range(6)])
    train_func(model, budget=0.5)  # 1.5x: the schedule now spans 9 steps and goes on from step 6, not from 0
    assert regular.learning_rates == pytest.approx([0.003 * (9 - s) / 9 for s in (6, 7, 8)])


def test_a_final_distillation_with_warmup_stable_decay_holds_the_rate_then_cools_down_again():
    config = search_config(lr_scheduler={"type": "warmup_stable_decay", "decay_ratio": 0.5})
    train_func = FlashDistillationTrainFunc(config, tiny_bert(seed=0), TokenDataset(24, seed=1), show_progress=False)
    model = student()
    train_func(model, budget=1.0)  # the full budget cools down over its last 3 of 6 steps
    regular = train_func.last_distillers[1]
    assert regular.learning_rates == pytest.approx([0.003] * 4 + [0.002, 0.001])
    train_func(model, budget=1.0)  # 2x: 12 steps, the last 6 decaying, so back to the full rate at step 6
    assert regular.learning_rates == pytest.approx([0.003 * (12 - s) / 6 for s in range(6, 12)])


def test_impossible_settings_are_refused_before_training():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    teacher, data = tiny_bert(seed=0), TokenDataset(8)
    with pytest.raises(autokd.ConfigError) as err:
        FlashDistillationTrainFunc(search_config(device="cuda"), teacher, data)
    assert str(err.value) == (
        "invalid configuration: train.device: 'cuda', but this machine has no CUDA GPU (torch.cuda.is_available() "
        "is False); use 'auto' or 'cpu'"
    )
    with pytest.raises(autokd.ConfigError) as err:
        FlashDistillationTrainFunc(search_config(device="auto", mixed_precision="fp16"), teacher, data)
    assert str(err.value) == (
        "invalid configuration: train.mixed_precision: fp16 needs a CUDA GPU and training runs on 'cpu' here; "
        "use bf16 or no"
    )


def test_autokd_run_refuses_a_gpu_setting_before_loading_the_teacher(tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from autokd.cli import run_config

    # The teacher resolves (import strings are checked at load) but must never be called.
    (tmp_path / "never_loaded.py").write_text("def teacher():\n    raise AssertionError('the teacher was loaded')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "search.yaml"
    text = (
        "model: {framework: pytorch, teacher: 'never_loaded:teacher'}\n"
        "auto_distillation:\n"
        "  search: {search_space: {hidden_size: [8]}, search_algorithm: grid, metrics: [eval_loss], max_trials: 1}\n"
        "  regular_distillation: {train_steps: [1]}\n"
        "train: {device: 'cuda:1'}\n"
        "data: {train: 'tiny_task:train_data', eval: 'tiny_task:eval_data'}\n"
    )
    path.write_text(text)
    with pytest.raises(autokd.ConfigError, match=r"train\.device: 'cuda:1', but this machine has no CUDA GPU"):
        run_config(str(path), output_dir=str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out" / "trials.jsonl").exists()


def test_epochs_count_batches_not_optimizer_steps():
    teacher, student = pair()
    run = distiller(student, teacher, TokenDataset(32), batch_size=8, gradient_accumulation_steps=2, epochs=2)
    run.fit()
    assert len(run.history) == 4  # 2 epochs of 4 batches, 2 batches per optimizer step
