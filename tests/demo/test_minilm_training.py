"""The main job's train function under budgets (multi-fidelity search, final distillation)."""

from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch

from autokd_minilm import task


class _Student(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=2, hidden_size=96, num_attention_heads=4, intermediate_size=384)


class _Recorder:
    """Stands in for autokd-torch's train function: records who it trains with what budget."""

    supports_budget = True
    made: ClassVar[list] = []

    def __init__(self, *args, **kwargs):
        self.calls = []
        _Recorder.made.append(self)

    def __call__(self, model, budget=None):
        self.calls.append((model, budget))
        return model


def test_a_student_keeps_its_train_function_across_budgets(monkeypatch):
    import autokd
    import autokd_torch

    monkeypatch.setattr(autokd_torch, "FlashDistillationTrainFunc", _Recorder)
    monkeypatch.setattr(task, "expand_stages", lambda config, arch: {})
    monkeypatch.setattr(task, "load_config", lambda doc: None)
    _Recorder.made = []
    config = autokd.load_config(task.DEFAULT_CONFIG)
    train_func = task.TrainFunc(config, None, show_progress=False)
    a, b = _Student(), _Student()
    train_func(a, 1 / 9)
    train_func(b, 1 / 9)
    train_func(a, 2 / 9)
    train_func(a, [1.0, 2.0])  # a final distillation: one fraction per configured stage
    assert len(_Recorder.made) == 2
    # the flash template's fraction goes to each of the student's two per-layer stages
    assert _Recorder.made[0].calls == [(a, 1 / 9), (a, 2 / 9), (a, [1.0, 1.0, 2.0])]
    assert _Recorder.made[1].calls == [(b, 1 / 9)]
    train_func(b)  # no budget: a plain run, nothing kept for it
    train_func(b)
    assert len(_Recorder.made) == 2 and _Recorder.made[1].calls[1:] == [(b, None), (b, None)]


def test_a_train_function_without_budgets_is_refused_with_the_fix(monkeypatch):
    import autokd
    import autokd_torch

    class Old(_Recorder):
        supports_budget = False

    monkeypatch.setattr(autokd_torch, "FlashDistillationTrainFunc", Old)
    monkeypatch.setattr(task, "expand_stages", lambda config, arch: {})
    monkeypatch.setattr(task, "load_config", lambda doc: None)
    config = autokd.load_config(task.DEFAULT_CONFIG)
    with pytest.raises(autokd.ConfigError, match="cannot continue a student with a budget; upgrade autokd-torch"):
        task.TrainFunc(config, None, show_progress=False)(_Student(), 0.5)


def test_a_students_directory_does_not_depend_on_the_key_order():
    arch = {"num_hidden_layers": 2, "hidden_size": 96, "num_attention_heads": 4, "intermediate_size": 384}
    reordered = dict(sorted(arch.items()))
    assert list(reordered) != list(arch)
    assert task.student_dir("out", arch) == task.student_dir("out", reordered)
    assert task.student_dir("out", arch).endswith(
        "hidden_size96-intermediate_size384-num_attention_heads4-num_hidden_layers2"
    )
