"""The main job's train function under budgets (multi-fidelity search, final distillation)."""

from types import SimpleNamespace
from typing import ClassVar

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
        self.args = args
        self.teacher = None
        self.calls = []
        _Recorder.made.append(self)

    def __call__(self, model, budget=None):
        self.calls.append((model, budget))
        return model


def test_every_student_and_budget_goes_to_one_built_in_train_function(monkeypatch):
    """The flash template is expanded per student by autokd-torch (tests/torch/test_stage_templates.py):
    the task hands it the config as it is and each budget unchanged."""
    import autokd
    import autokd_torch

    monkeypatch.setattr(autokd_torch, "FlashDistillationTrainFunc", _Recorder)
    _Recorder.made = []
    config = autokd.load_config(task.DEFAULT_CONFIG)
    train_func = task.TrainFunc(config, None, show_progress=False)
    (made,) = _Recorder.made
    assert made.args[0] is config
    # the students learn from the utterances and their augmented copies (augment.py)
    assert made.args[2] is task.training_data()
    assert len(made.args[2]) == (1 + task.AUGMENT_COPIES) * len(task.datasets()[0]) == 4 * 1505
    a, b = _Student(), _Student()
    train_func(a, 1 / 9)
    train_func(b, 1 / 9)
    train_func(a, [1.0, 2.0])
    train_func(b)
    assert made.calls == [(a, 1 / 9), (b, 1 / 9), (a, [1.0, 2.0]), (b, None)]
    assert len(_Recorder.made) == 1


def test_a_students_directory_does_not_depend_on_the_key_order():
    arch = {"num_hidden_layers": 2, "hidden_size": 96, "num_attention_heads": 4, "intermediate_size": 384}
    reordered = dict(sorted(arch.items()))
    assert list(reordered) != list(arch)
    assert task.student_dir("out", arch) == task.student_dir("out", reordered)
    assert task.student_dir("out", arch).endswith(
        "hidden_size96-intermediate_size384-num_attention_heads4-num_hidden_layers2"
    )
