"""The transformers model builder."""

from __future__ import annotations

import pytest
import torch
from conftest import bert_config, mobilebert_config, tiny_bert

import autokd
from autokd_torch.builder import build_student_config, transformers_builder


def test_a_student_of_the_teachers_family_copies_the_teachers_config():
    teacher = tiny_bert()
    student = transformers_builder(
        {"hidden_size": 16, "num_hidden_layers": 1, "intermediate_size": 20}, teacher=teacher
    )
    assert type(student).__name__ == "BertForSequenceClassification"
    assert (student.config.hidden_size, student.config.num_hidden_layers, student.config.intermediate_size) == (
        16,
        1,
        20,
    )
    assert student.config.num_labels == 3 and student.config.vocab_size == 99  # the rest is the teacher's
    assert teacher.config.hidden_size == 32  # the teacher's config is not touched
    assert student.bert.encoder.layer[0].attention.self.query.weight.shape == (16, 16)


def test_a_mobilebert_student_from_a_bert_teacher_derives_its_fields_again():
    teacher = tiny_bert()
    base = mobilebert_config()  # the Trainer's model's config: true_hidden_size 16
    student = transformers_builder(
        {"intra_bottleneck_size": 24, "num_attention_heads": 4, "hidden_size": 40}, base_config=base, teacher=teacher
    )
    assert type(student).__name__ == "MobileBertForSequenceClassification"  # the teacher's task, the base's family
    assert student.config.true_hidden_size == 24  # derived from intra_bottleneck_size, not the stale 16
    assert student.mobilebert.encoder.layer[0].attention.self.query.weight.shape == (24, 24)
    logits = student(input_ids=torch.ones(2, 5, dtype=torch.long)).logits
    assert logits.shape == (2, 3)


def test_the_class_default_of_a_field_is_derived_again_too():
    # 128 is MobileBertConfig's own default intra_bottleneck_size: comparing against
    # defaults alone would miss that true_hidden_size depends on it
    config = build_student_config(mobilebert_config(), {"intra_bottleneck_size": 128})
    assert config.true_hidden_size == 128


def test_an_arch_parameter_the_config_does_not_have_is_refused():
    with pytest.raises(autokd.ConfigError) as err:
        build_student_config(bert_config(), {"hidden_sizes": 16, "layer_num": 2})
    assert str(err.value) == (
        "invalid configuration: auto_distillation.search.search_space: 'hidden_sizes' (did you mean hidden_size?), "
        "'layer_num' are not fields of BertConfig; the search space names fields of the student's config"
    )


def test_a_student_config_that_contradicts_itself_is_not_built():
    with pytest.raises(autokd.ConfigError) as err:
        transformers_builder({"hidden_size": 246, "num_attention_heads": 4}, base_config=bert_config())
    assert str(err.value) == (
        "invalid configuration: the student config contradicts itself: hidden_size 246 is not a multiple of "
        "num_attention_heads 4; take search space choices whose widths the head counts divide"
    )
    with pytest.raises(autokd.ConfigError, match="true_hidden_size 96 is not a multiple of num_attention_heads 5"):
        transformers_builder({"intra_bottleneck_size": 96, "num_attention_heads": 5}, base_config=mobilebert_config())


def test_eager_attention_when_attention_maps_are_distilled():
    layers = ["bert.encoder.layer.0.attention.self", "bert.encoder.layer.0.output"]
    eager = transformers_builder({"hidden_size": 16}, base_config=bert_config(), distilled_layers=layers)
    assert eager.config._attn_implementation == "eager"
    default = transformers_builder({"hidden_size": 16}, base_config=bert_config(), distilled_layers=layers[1:])
    assert default.config._attn_implementation == "sdpa"


def test_the_seed_fixes_the_weights_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = transformers_builder({"hidden_size": 16}, base_config=bert_config(), seed=5)
    b = transformers_builder({"hidden_size": 16}, base_config=bert_config(), seed=5)
    c = transformers_builder({"hidden_size": 16}, base_config=bert_config(), seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    wa, wb, wc = (m.base_model.embeddings.word_embeddings.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_model_cls_by_name_and_base_config_as_a_mapping():
    student = transformers_builder(
        {"hidden_size": 16},
        base_config={"model_type": "bert", "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 50},
        model_cls="AutoModelForMaskedLM",
    )
    assert type(student).__name__ == "BertForMaskedLM" and student.config.vocab_size == 50


def test_unknown_builder_options_are_named():
    with pytest.raises(autokd.ConfigError) as err:
        transformers_builder({}, base_config=bert_config(), model_class="x")
    assert str(err.value) == (
        "invalid configuration: model.builder_options: unknown option(s) model_class of the transformers builder; "
        "it takes base_config, model_cls, init_from_teacher, attn_implementation, seed"
    )


def test_init_from_teacher_calls_the_initializer_and_records_its_report(monkeypatch):
    module = pytest.importorskip("autokd_torch.init_from_teacher")
    calls = []

    class Report:
        def to_dict(self):
            return {"layers": [0, 1]}

    def initialize_from_teacher(student, teacher, **options):
        calls.append((student, teacher, options))
        return Report()

    monkeypatch.setattr(module, "initialize_from_teacher", initialize_from_teacher)
    teacher = tiny_bert()
    extras = {}
    token = autokd._trial._current.set(extras)  # as inside a trial of the search
    try:
        student = transformers_builder(
            {"hidden_size": 16}, teacher=teacher, init_from_teacher={"layers": "uniform", "width": "pca_embeddings"}
        )
        transformers_builder({"hidden_size": 16}, teacher=teacher, init_from_teacher=True)
    finally:
        autokd._trial._current.reset(token)
    assert calls[0] == (student, teacher, {"layers": "uniform", "width": "pca_embeddings"})
    assert calls[1][2] == {}
    assert extras["builder"]["init_from_teacher"] == {"layers": [0, 1]}
    assert extras["builder"]["model_cls"] == "BertForSequenceClassification"
    assert extras["builder"]["arch_params"] == {"hidden_size": 16}


def test_init_from_teacher_needs_a_teacher():
    with pytest.raises(autokd.ConfigError, match="init_from_teacher: no teacher to initialise from"):
        transformers_builder({"hidden_size": 16}, base_config=bert_config(), init_from_teacher=True)


def test_the_builder_is_registered_by_name():
    builder = autokd.registry().model_builders.get("transformers", "pytorch")
    model = builder({"num_hidden_layers": 1}, base_config=bert_config())
    assert model.config.num_hidden_layers == 1
