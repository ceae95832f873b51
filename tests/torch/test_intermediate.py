"""IntermediateLayersKnowledgeDistillationLoss: feature capture by module name, output
processes, feature matchers and errors."""

from __future__ import annotations

import pytest
import torch
from conftest import ThirdPartyLossPlugin, tiny_bert

import autokd
from autokd_torch import IntermediateLayersKnowledgeDistillationLoss

ILKD = IntermediateLayersKnowledgeDistillationLoss


def batch(n=4, seq=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1, 99, (n, seq), generator=g),
        "attention_mask": torch.ones(n, seq, dtype=torch.long),
    }


def kl_formula(student, teacher):
    """KL(softmax(teacher) || softmax(student)) over the last dim, mean over the rest."""
    log_s = torch.log_softmax(student, -1)
    p_t = torch.softmax(teacher, -1)
    return (p_t * (torch.log(p_t) - log_s)).sum(-1).mean()


def run(criterion, student, teacher, inputs):
    criterion.teacher_model_forward(inputs)
    student(**inputs, **criterion.student_forward_kwargs)
    return criterion.loss_cal()


def test_matching_features_of_a_layer_output_and_a_dict_key():
    teacher = tiny_bert(seed=0, attn_implementation="eager")
    student = tiny_bert(seed=1, attn_implementation="eager")
    crit = ILKD(
        [("bert.encoder.layer.0.output", "bert.encoder.layer.0.output"), ("", "logits", "", "logits")],
        ["MSE", "KL"],
        [0.25, 0.75],
        student_model=student,
        teacher_model=teacher,
    )
    inputs = batch()
    loss = run(crit, student, teacher, inputs)

    with torch.no_grad():
        t = teacher(**inputs, output_hidden_states=True)
        s = student(**inputs, output_hidden_states=True)
    expected = 0.25 * ((s.hidden_states[1] - t.hidden_states[1]) ** 2).mean() + 0.75 * kl_formula(s.logits, t.logits)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.requires_grad
    assert len(crit.feature_matchers) == 0
    assert crit.layer_output_process == [("", ""), ("logits", "logits")]


def test_tuple_index_process_distils_attention_maps():
    # a wider weight init than BERT's 0.02 gives attention maps far from uniform
    teacher = tiny_bert(seed=0, attn_implementation="eager", initializer_range=0.2)
    student = tiny_bert(seed=1, attn_implementation="eager", initializer_range=0.2)
    layer = "bert.encoder.layer.1.attention.self"
    crit = ILKD([(layer, "1", layer, "1")], ["KL"], student_model=student, teacher_model=teacher)
    inputs = batch()
    loss = run(crit, student, teacher, inputs)
    with torch.no_grad():
        t = teacher(**inputs, output_attentions=True).attentions[1]
        s = student(**inputs, output_attentions=True).attentions[1]
    assert t.shape == (4, 2, 8, 8)
    # attention maps are probabilities: the loss is KL(t || s) of the maps themselves
    expected = (t * (torch.log(t) - torch.log(s))).sum(-1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert loss.item() == pytest.approx(0.4973, abs=1e-3)
    # read as logits, the softmax of the maps would flatten them into near-uniform rows
    assert kl_formula(s, t).item() == pytest.approx(0.0087, abs=1e-4)


def test_attention_maps_of_sdpa_models_are_distilled_as_with_eager_models():
    layer = "bert.encoder.layer.0.attention.self"

    def loss_with(attn_implementation):
        teacher = tiny_bert(seed=0, attn_implementation=attn_implementation, initializer_range=0.2)
        student = tiny_bert(seed=1, attn_implementation=attn_implementation, initializer_range=0.2)
        crit = ILKD([(layer, "1", layer, "1")], ["KL"], student_model=student, teacher_model=teacher)
        assert crit.student_forward_kwargs == {"output_attentions": True}
        return run(crit, student, teacher, batch()).item()

    # sdpa returns no maps: the models are switched to eager (transformers 5) or fall
    # back to eager for output_attentions=True (transformers 4)
    assert loss_with("sdpa") == pytest.approx(loss_with("eager"), rel=1e-5)


def test_a_callable_process_and_the_mean_of_heads():
    teacher = tiny_bert(seed=0, attn_implementation="eager", num_attention_heads=4)
    student = tiny_bert(seed=1, attn_implementation="eager")
    layer = "bert.encoder.layer.0.attention.self"

    def mean_heads(output):
        return output[1].mean(1)

    crit = ILKD([(layer, mean_heads, layer, mean_heads)], ["MSE"], student_model=student, teacher_model=teacher)
    inputs = batch()
    loss = run(crit, student, teacher, inputs)
    with torch.no_grad():
        t = teacher(**inputs, output_attentions=True).attentions[0].mean(1)
        s = student(**inputs, output_attentions=True).attentions[0].mean(1)
    assert loss.item() == pytest.approx(((s - t) ** 2).mean().item(), rel=1e-5)


def test_mismatching_sizes_get_a_linear_matcher_trained_with_the_student():
    teacher = tiny_bert(seed=0)
    student = tiny_bert(seed=1, hidden_size=16, intermediate_size=20)
    crit = ILKD(
        [["bert.encoder.layer.1.output", "bert.encoder.layer.1.output"]],
        ["MSE"],
        student_model=student,
        teacher_model=teacher,
    )
    inputs = batch()
    matchers = crit.init_feature_matchers(inputs)
    assert len(matchers) == 1
    matcher = crit.feature_matchers["0"]
    assert isinstance(matcher, torch.nn.Linear)
    assert matcher.weight.shape == (32, 16)  # student 16 -> teacher 32
    assert {id(p) for p in crit.parameters()} == {id(matcher.weight), id(matcher.bias)}

    optimizer = torch.optim.SGD(list(student.parameters()) + list(crit.parameters()), lr=0.5)
    before = matcher.weight.detach().clone()
    loss = run(crit, student, teacher, inputs)
    # the loss goes through the matcher: MSE(matcher(student feature), teacher feature)
    with torch.no_grad():
        t = teacher(**inputs, output_hidden_states=True).hidden_states[2]
        s = student(**inputs, output_hidden_states=True).hidden_states[2]
        assert loss.item() == pytest.approx(((matcher(s) - t) ** 2).mean().item(), rel=1e-5)
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, matcher.weight.detach())
    optimizer.zero_grad()
    assert run(crit, student, teacher, inputs).item() < loss.item()


def test_features_differing_outside_the_last_dimension_are_a_clear_error():
    teacher = tiny_bert(seed=0, attn_implementation="eager", num_attention_heads=4)
    student = tiny_bert(seed=1, attn_implementation="eager")
    layer = "bert.encoder.layer.0.attention.self"
    crit = ILKD([(layer, "1", layer, "1")], ["KL"], student_model=student, teacher_model=teacher)
    with pytest.raises(autokd.AutoKDError) as err:
        run(crit, student, teacher, batch())
    assert str(err.value) == (
        "layer mapping 0 ('bert.encoder.layer.0.attention.self' -> 'bert.encoder.layer.0.attention.self'): "
        "student feature (4, 2, 8, 8) and teacher feature (4, 4, 8, 8) differ outside the last dimension; "
        "a feature matcher maps only the last dimension (e.g. attention maps need as many heads in the student "
        "as in the teacher)"
    )


def test_an_unknown_module_name_is_an_error_naming_the_nearest_names():
    student = tiny_bert(seed=1)
    with pytest.raises(autokd.ConfigError) as err:
        ILKD([("bert.encoder.layers.0.output", "bert.encoder.layer.0.output")], student_model=student)
    assert str(err.value) == (
        "invalid configuration: layer_mappings_for_knowledge_transfer: module 'bert.encoder.layers.0.output' "
        "not found in the student (BertForSequenceClassification); nearest names: bert.encoder.layer.0.output, "
        "bert.encoder.layer.1.output, bert.encoder.layer.0.output.dense. "
        "Names are those of model.named_modules(); '' is the model itself"
    )


def test_a_key_process_on_a_tensor_output_names_the_fix():
    teacher, student = tiny_bert(seed=0), tiny_bert(seed=1)
    crit = ILKD(
        [("bert.encoder.layer.0.output", "hidden", "bert.encoder.layer.0.output", "")],
        student_model=student,
        teacher_model=teacher,
    )
    with pytest.raises(
        autokd.ConfigError,
        match=r"student feature bert.encoder.layer.0.output\[hidden\]: process 'hidden' "
        r"is a key, but the output is a tensor of shape \(4, 8, 32\); use an index \('0'\) or ''",
    ):
        run(crit, student, teacher, batch())


def test_the_grouped_form_of_the_flash_config_is_flattened():
    crit = ILKD(
        [
            [
                ("bert.encoder.layer.0.attention.self", "1", "bert.encoder.layer.0.attention.self", "1"),
                ("bert.encoder.layer.0.output", "bert.encoder.layer.0.output"),
            ],
            [("bert.encoder.layer.1.output", "bert.encoder.layer.1.output")],
        ],
        [["KL", "MSE"], ["MSE"]],
        [[0.5, 0.5], [1.0]],
    )
    assert [m.student_layer for m in crit.layer_mappings] == [
        "bert.encoder.layer.0.attention.self",
        "bert.encoder.layer.0.output",
        "bert.encoder.layer.1.output",
    ]
    assert crit.loss_types == ["KL", "MSE", "MSE"]
    assert crit.loss_weights == [0.5, 0.5, 1.0]
    assert crit.layer_output_process == [("1", "1"), ("", ""), ("", "")]


def test_loss_types_must_match_the_mappings():
    with pytest.raises(
        autokd.ConfigError,
        match="IntermediateLayersKnowledgeDistillationLoss.loss_types: 2 loss types for 1 layer mappings",
    ):
        ILKD([("a", "b")], ["MSE", "KL"])


def test_add_origin_loss_adds_the_students_own_loss():
    teacher, student = tiny_bert(seed=0), tiny_bert(seed=1)
    crit = ILKD(
        [("", "logits", "", "logits")], ["MSE"], add_origin_loss=True, student_model=student, teacher_model=teacher
    )
    inputs = dict(batch(), labels=torch.tensor([0, 1, 2, 0]))
    crit.teacher_model_forward({k: v for k, v in inputs.items() if k != "labels"})
    outputs = student(**inputs)
    loss = crit.compute_loss(outputs, inputs["labels"])
    with torch.no_grad():
        t = teacher(**batch()).logits
    expected = ((outputs.logits - t) ** 2).mean() + outputs.loss
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_hooks_leave_the_student_when_it_is_replaced():
    student = tiny_bert(seed=1)
    crit = ILKD([("", "logits", "", "logits")], student_model=student)
    assert len(student._forward_hooks) == 1
    crit.student_model = None
    assert len(student._forward_hooks) == 0


def test_a_third_party_loss_is_used_by_name(test_plugin):
    test_plugin(ThirdPartyLossPlugin(), "cosine-plugin")
    teacher, student = tiny_bert(seed=0), tiny_bert(seed=1)
    crit = ILKD([("bert.pooler", "bert.pooler")], ["ThirdPartyCosine"], student_model=student, teacher_model=teacher)
    inputs = batch()
    loss = run(crit, student, teacher, inputs)
    with torch.no_grad():
        t = teacher.bert(**inputs).pooler_output
        s = student.bert(**inputs).pooler_output
    expected = (1 - torch.nn.functional.cosine_similarity(s, t, dim=-1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
