"""The built-in train function starts feature matchers from the init-from-teacher basis (#9, item 2)."""

import torch
import transformers
from transformers import BertConfig

from autokd_torch.builder import transformers_builder
from autokd_torch.train import basis_matcher_initializer


def teacher_bert():
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37, vocab_size=99)
    return transformers.BertModel(config).eval()


def test_matchers_start_from_the_basis_of_the_students_initialisation():
    teacher = teacher_bert()
    student = transformers_builder(
        {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2},
        teacher=teacher,
        init_from_teacher={"width": "pca_embeddings"},
        seed=0,
    )
    report = student.autokd_init_report
    initialize = basis_matcher_initializer(torch.nn.Sequential(student))  # found on a submodule too
    matcher = torch.nn.Linear(16, 32)
    initialize(None, matcher)
    torch.testing.assert_close(matcher.weight, report.basis)
    torch.testing.assert_close(matcher.bias, torch.zeros(32))
    # a matcher between other widths keeps its own initialisation
    other = torch.nn.Linear(16, 20)
    before = other.weight.clone()
    initialize(None, other)
    torch.testing.assert_close(other.weight, before)


def test_random_students_have_no_basis():
    teacher = teacher_bert()
    student = transformers_builder({"hidden_size": 16, "num_attention_heads": 2}, teacher=teacher, seed=0)
    assert basis_matcher_initializer(student) is None
