"""initialize_from_teacher (issue #9): students of BERT-like teachers start from the teacher's weights."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import transformers
from transformers import BertConfig

from autokd import AutoKDError
from autokd_torch.init_from_teacher import (
    InitFromTeacherError,
    feature_matcher_init,
    initialize_from_teacher,
    select_teacher_layers,
    width_basis,
)

VOCAB = 99


def bert(cls=transformers.BertModel, seed=0, **overrides):
    """A tiny BERT in eval mode (dropout off), eager attention so attention maps are returned."""
    options = {
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 37,
        "vocab_size": VOCAB,
    }
    options.update(overrides)
    torch.manual_seed(seed)
    return cls(BertConfig(attn_implementation="eager", **options)).eval()


def inputs(batch=3, length=9, seed=1):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, VOCAB, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[0, 6:] = 0  # a padded row
    token_type_ids = torch.zeros(batch, length, dtype=torch.long)
    token_type_ids[:, 5:] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# --------------------------------------------------------------------------- same shape: exact


@pytest.mark.parametrize(
    "cls, output",
    [
        (transformers.BertModel, "last_hidden_state"),
        (transformers.BertForMaskedLM, "logits"),
        (transformers.BertForSequenceClassification, "logits"),
        (transformers.BertForPreTraining, "seq_relationship_logits"),
    ],
)
def test_a_student_of_the_teachers_shape_reproduces_the_teacher(cls, output):
    teacher, student = bert(cls, seed=0), bert(cls, seed=1)
    batch = inputs()
    assert not torch.allclose(getattr(student(**batch), output), getattr(teacher(**batch), output))

    report = initialize_from_teacher(student, teacher)

    with torch.no_grad():
        t_out = teacher(**batch, output_hidden_states=True, output_attentions=True)
        s_out = student(**batch, output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(getattr(s_out, output), getattr(t_out, output), rtol=0, atol=1e-6)
    for s_state, t_state in zip(s_out.hidden_states, t_out.hidden_states, strict=True):
        torch.testing.assert_close(s_state, t_state, rtol=0, atol=1e-6)
    for s_map, t_map in zip(s_out.attentions, t_out.attentions, strict=True):
        torch.testing.assert_close(s_map, t_map, rtol=0, atol=1e-6)
    assert report.complete
    assert report.width == "identity" and report.explained_variance == 1.0 and report.layer_norm_scale == 1.0
    assert report.teacher_layers == (0, 1, 2, 3)
    assert report.layers[0].teacher_heads == (0, 1, 2, 3)
    assert report.layers[0].teacher_neurons == tuple(range(37))
    assert len(report.initialised) == len(list(student.named_parameters()))


def test_extra_neurons_and_heads_start_silent_so_a_wider_block_keeps_the_teachers_function():
    # head size 16 -> 8 (each teacher head projected), 2 -> 4 heads, 37 -> 50 neurons
    teacher = bert(num_attention_heads=2)
    with torch.no_grad():  # make each teacher head's q/k/v rank 8, so the projection to 8 is exact
        for layer in teacher.encoder.layer:
            for linear in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
                for head in range(2):
                    linear.weight[head * 16 + 8 : head * 16 + 16] = 0.0
                    linear.bias[head * 16 + 8 : head * 16 + 16] = 0.0
    student = bert(seed=1, num_attention_heads=4, intermediate_size=50)

    report = initialize_from_teacher(student, teacher)

    batch = inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            student(**batch).last_hidden_state, teacher(**batch).last_hidden_state, rtol=0, atol=1e-5
        )
    assert report.head_dim == "projected 16 -> 8"
    assert report.layers[0].teacher_heads == (0, 1, None, None)
    assert report.layers[0].teacher_neurons == tuple(range(37)) + (None,) * 13
    layer = student.encoder.layer[0]
    assert torch.all(layer.attention.self.key.weight[16:] == 0) and torch.all(
        layer.attention.output.dense.weight[:, 16:] == 0
    )
    assert torch.all(layer.output.dense.weight[:, 37:] == 0)
    assert layer.attention.self.query.weight[16:].abs().sum() > 0  # new heads' queries stay trainable
    assert report.complete


# --------------------------------------------------------------------------- narrower and shallower


def test_a_narrower_shallower_student_builds_runs_and_its_embeddings_reconstruct_within_the_explained_variance():
    teacher = bert()
    student = bert(seed=1, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20)

    report = initialize_from_teacher(student, teacher, width="pca_embeddings")

    out = student(**inputs())
    assert out.last_hidden_state.shape == (3, 9, 16) and torch.isfinite(out.last_hidden_state).all()
    (out.last_hidden_state.square().mean() + out.pooler_output.square().mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in student.parameters())

    p = report.basis.double()
    teacher_words = teacher.embeddings.word_embeddings.weight.detach().double()
    student_words = student.embeddings.word_embeddings.weight.detach().double()
    torch.testing.assert_close(p.T @ p, torch.eye(16, dtype=torch.float64), atol=1e-6, rtol=0)
    # the relation: ||E_t - E_s P^T||^2 = (1 - explained) ||E_t||^2
    residual = (teacher_words - student_words @ p.T).square().sum() / teacher_words.square().sum()
    assert residual.item() == pytest.approx(1 - report.explained_variance, abs=1e-6)
    assert report.explained_variance == report.embedding_explained_variance
    # ... and the basis is the one documented: the mean direction u plus the top 15 principal
    # directions orthogonal to it, so explained = (|E u|^2 + sum of the top 15 eigenvalues of C G C) / tr G
    gram = teacher_words.T @ teacher_words
    centring = torch.eye(32, dtype=torch.float64) - 1 / 32
    u = torch.full((32,), 32**-0.5, dtype=torch.float64)
    top15 = torch.linalg.eigvalsh(centring @ gram @ centring).sort(descending=True).values[:15].sum()
    assert report.explained_variance == pytest.approx(float((u @ gram @ u + top15) / torch.trace(gram)), rel=1e-9)
    assert report.explained_variance <= float(
        torch.linalg.eigvalsh(gram).sort(descending=True).values[:16].sum() / torch.trace(gram)
    )
    torch.testing.assert_close(
        p.T @ u, torch.full((16,), 0.25, dtype=torch.float64), atol=1e-6, rtol=0
    )  # P^T u = 1/sqrt(16)
    # LayerNorm: gamma -> s diag(P^T diag(gamma) P), beta -> P^T beta, s = sqrt(h_t / h_s * centred energy kept)
    s = math.sqrt(
        32 / 16 * float(torch.trace(p.T @ centring @ gram @ centring @ p) / torch.trace(centring @ gram @ centring))
    )
    assert report.layer_norm_scale == pytest.approx(s, rel=1e-6)
    gamma, beta = (
        teacher.embeddings.LayerNorm.weight.detach().double(),
        teacher.embeddings.LayerNorm.bias.detach().double(),
    )
    torch.testing.assert_close(
        student.embeddings.LayerNorm.weight.detach().double(), s * (p.square().T @ gamma), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(student.embeddings.LayerNorm.bias.detach().double(), p.T @ beta, atol=1e-6, rtol=0)
    # a hidden-to-hidden weight is P^T W P
    torch.testing.assert_close(
        student.pooler.dense.weight.detach().double(),
        p.T @ teacher.pooler.dense.weight.detach().double() @ p,
        atol=1e-6,
        rtol=0,
    )

    assert report.teacher_layers == (1, 3)
    record = json.loads(json.dumps(report.to_dict()))
    assert record["layers"] == {"rule": "uniform", "teacher_layers": [1, 3]}
    assert record["width"]["kind"] == "pca_embeddings" and record["width"]["student_hidden"] == 16
    assert record["initialised"]["encoder.layer.0.output.dense.weight"].startswith(
        "P^T @ encoder.layer.1.output.dense.weight"
    )
    assert record["not_initialised"] == []


def test_pca_hidden_uses_the_teachers_hidden_states_on_the_data():
    teacher = bert()
    student = bert(seed=1, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20)
    batches = [inputs(seed=2), inputs(seed=3)]

    report = initialize_from_teacher(student, teacher, width="pca_hidden", data=batches)

    rows = []
    with torch.no_grad():
        for batch in batches:
            states = teacher(**batch, output_hidden_states=True).hidden_states
            rows += [s[batch["attention_mask"].bool()] for s in states]
    hidden = torch.cat(rows).double()
    p = report.basis.double()
    assert report.explained_variance == pytest.approx(
        float((hidden @ p).square().sum() / hidden.square().sum()), rel=1e-6
    )
    assert report.basis_source == "teacher hidden states on data (5 layer outputs x 48 tokens)"
    # the documented basis: the mean direction u plus the top 15 principal directions orthogonal to it
    gram = hidden.T @ hidden
    centring = torch.eye(32, dtype=torch.float64) - 1 / 32
    u = torch.full((32,), 32**-0.5, dtype=torch.float64)
    top15 = torch.linalg.eigvalsh(centring @ gram @ centring).sort(descending=True).values[:15].sum()
    assert report.explained_variance == pytest.approx(float((u @ gram @ u + top15) / torch.trace(gram)), rel=1e-6)
    embeddings_basis = width_basis(teacher, 16, "pca_embeddings").projection.double()
    assert report.explained_variance > float((hidden @ embeddings_basis).square().sum() / hidden.square().sum())


def test_select_hidden_keeps_the_coordinates_with_the_most_energy():
    teacher = bert()
    batch = inputs(seed=2)
    basis = width_basis(teacher, 10, "select_hidden", data=batch)
    with torch.no_grad():
        states = teacher(**batch, output_hidden_states=True).hidden_states
    hidden = torch.cat([s[batch["attention_mask"].bool()] for s in states]).double()
    expected = sorted(hidden.square().sum(0).argsort(descending=True)[:10].tolist())
    assert torch.equal(basis.projection, torch.eye(32)[:, expected])
    no_data = width_basis(teacher, 10, "select_hidden")
    assert (
        no_data.source
        == "teacher hidden states on random token sequences, no data given (5 layer outputs x 1024 tokens)"
    )
    assert torch.equal(no_data.projection, width_basis(teacher, 10, "select_hidden").projection)  # seeded


def test_feature_matcher_starts_from_the_same_basis():
    teacher = bert()
    student = bert(seed=1, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20)
    report = initialize_from_teacher(student, teacher)

    weight, bias = feature_matcher_init(report, 16, 32)
    matcher = torch.nn.Linear(16, 32)
    with torch.no_grad():
        matcher.weight.copy_(weight)
        matcher.bias.copy_(bias)
        teacher_hidden = torch.randn(5, 32)
        # matcher(P^T x) = P P^T x: the teacher's vector up to what the basis leaves out
        torch.testing.assert_close(
            matcher(teacher_hidden @ report.basis), teacher_hidden @ report.basis @ report.basis.T
        )
    assert torch.equal(weight, report.basis) and torch.equal(bias, torch.zeros(32))
    assert feature_matcher_init(report, 20, 37) is None  # not the residual stream's widths


# --------------------------------------------------------------------------- layers, heads, neurons


@pytest.mark.parametrize(
    "student_layers, teacher_layers, expected",
    [
        (3, 6, [1, 3, 5]),  # every other layer, ending with the last
        (6, 12, [1, 3, 5, 7, 9, 11]),
        (4, 6, [1, 2, 4, 5]),
        (2, 6, [2, 5]),
        (1, 6, [5]),
        (6, 6, [0, 1, 2, 3, 4, 5]),
        (3, 2, [0, 1, 1]),  # deeper than the teacher: layers repeat
    ],
)
def test_uniform_layer_selection(student_layers, teacher_layers, expected):
    assert select_teacher_layers(student_layers, teacher_layers, "uniform") == expected


def test_explicit_layers_are_copied_and_bad_lists_are_named():
    teacher = bert()
    student = bert(seed=1, num_hidden_layers=2)
    report = initialize_from_teacher(student, teacher, layers=[2, 2])
    for i in range(2):
        for (s_name, s_param), (t_name, t_param) in zip(
            student.encoder.layer[i].named_parameters(), teacher.encoder.layer[2].named_parameters(), strict=True
        ):
            assert s_name == t_name and torch.equal(s_param, t_param)
    assert report.layer_rule == "explicit" and report.teacher_layers == (2, 2)
    assert "teacher layers [2] are copied into more than one student layer" in report.notes

    with pytest.raises(InitFromTeacherError) as wrong_length:
        initialize_from_teacher(student, teacher, layers=[0, 1, 2])
    assert str(wrong_length.value) == (
        "layers=[0, 1, 2]: give one teacher layer index (an int) per student layer; the student has 2 layers"
    )
    with pytest.raises(InitFromTeacherError) as out_of_range:
        initialize_from_teacher(student, teacher, layers=[0, 4])
    assert str(out_of_range.value) == (
        "layers=[0, 4]: teacher layer indices must lie in 0..3 (the teacher has 4 layers); out of range: [4]"
    )
    with pytest.raises(
        InitFromTeacherError, match=r"^layers='every_other' is not a layer-selection rule: use 'uniform'"
    ):
        initialize_from_teacher(student, teacher, layers="every_other")


def _boost(teacher, layer, heads=(), neurons=()):
    """Scale some heads' and neurons' weights so that they are the most important."""
    block = teacher.encoder.layer[layer]
    with torch.no_grad():
        for head, factor in heads:
            rows = slice(head * 8, head * 8 + 8)
            for linear in (block.attention.self.query, block.attention.self.key, block.attention.self.value):
                linear.weight[rows] *= factor
            block.attention.output.dense.weight[:, rows] *= factor
        for neuron in neurons:
            block.intermediate.dense.weight[neuron] *= 4
            block.output.dense.weight[:, neuron] *= 4


def test_heads_and_neurons_with_the_highest_scores_are_kept_and_sliced_consistently():
    teacher = bert(num_hidden_layers=2).requires_grad_(False)
    _boost(teacher, 0, heads=[(2, 3.0), (0, 2.0)], neurons=[3, 30, 7])
    student = bert(seed=1, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=10)

    report = initialize_from_teacher(student, teacher, width="slice")

    t_block, s_block = teacher.encoder.layer[0], student.encoder.layer[0]
    # head scores, by hand: the norm of [W_q,h; W_k,h; W_v,h; W_o,h^T]
    att = t_block.attention
    scores = [
        math.sqrt(
            sum(
                float(lin.weight[h * 8 : h * 8 + 8].square().sum())
                for lin in (att.self.query, att.self.key, att.self.value)
            )
            + float(att.output.dense.weight[:, h * 8 : h * 8 + 8].square().sum())
        )
        for h in range(4)
    ]
    assert report.layers[0].head_scores == pytest.approx(scores)
    assert report.layers[0].teacher_heads == (0, 2)
    rows = torch.cat([torch.arange(0, 8), torch.arange(16, 24)])
    for name in ("query", "key", "value"):  # slice width: P = the first 16 coordinates
        assert torch.equal(getattr(s_block.attention.self, name).weight, getattr(att.self, name).weight[rows][:, :16])
        assert torch.equal(getattr(s_block.attention.self, name).bias, getattr(att.self, name).bias[rows])
    assert torch.equal(s_block.attention.output.dense.weight, att.output.dense.weight[:16][:, rows])

    neuron_scores = (
        t_block.intermediate.dense.weight.square().sum(1) + t_block.output.dense.weight.square().sum(0)
    ).sqrt()
    expected = sorted(neuron_scores.argsort(descending=True)[:10].tolist())
    assert {3, 7, 30} <= set(expected)
    assert report.layers[0].teacher_neurons == tuple(expected)
    assert torch.equal(s_block.intermediate.dense.weight, t_block.intermediate.dense.weight[expected][:, :16])
    assert torch.equal(s_block.output.dense.weight, t_block.output.dense.weight[:16][:, expected])
    assert student(**inputs()).last_hidden_state.shape == (3, 9, 16)

    first = initialize_from_teacher(
        bert(seed=2, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=10),
        teacher,
        width="slice",
        heads="first",
        neurons="first",
    )
    assert first.layers[0].teacher_heads == (0, 1) and first.layers[0].teacher_neurons == tuple(range(10))


def test_a_larger_student_head_size_pads_the_teacher_head_with_silent_dimensions():
    teacher = bert()  # 4 heads of 8
    student = bert(seed=1, num_attention_heads=2)  # 2 heads of 16

    report = initialize_from_teacher(student, teacher)

    assert report.head_dim == "padded 8 -> 16"
    kept = report.layers[0].teacher_heads
    s_att, t_att = student.encoder.layer[0].attention, teacher.encoder.layer[report.teacher_layers[0]].attention
    for j, t in enumerate(kept):
        first, rest = slice(j * 16, j * 16 + 8), slice(j * 16 + 8, j * 16 + 16)
        torch.testing.assert_close(
            s_att.self.query.weight[first], math.sqrt(2) * t_att.self.query.weight[t * 8 : t * 8 + 8]
        )
        assert torch.equal(s_att.self.key.weight[first], t_att.self.key.weight[t * 8 : t * 8 + 8])
        assert torch.all(s_att.self.key.weight[rest] == 0) and torch.all(s_att.output.dense.weight[:, rest] == 0)
    assert student(**inputs()).last_hidden_state.shape == (3, 9, 32)


# --------------------------------------------------------------------------- what cannot be initialised


def test_an_unsupported_family_is_refused_with_what_can_and_cannot_be_initialised():
    teacher = bert()
    config = transformers.MobileBertConfig(
        vocab_size=VOCAB, hidden_size=32, embedding_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, intra_bottleneck_size=16, true_hidden_size=16, num_feedforward_networks=2,
    )  # fmt: skip
    student = transformers.MobileBertModel(config).eval()
    before = params(student)

    with pytest.raises(InitFromTeacherError) as refused:
        initialize_from_teacher(student, teacher)
    message = str(refused.value).splitlines()
    assert message[0] == (
        "cannot fully initialise the student MobileBertModel (model_type 'mobilebert') from the teacher "
        "BertModel (model_type 'bert')."
    )
    assert message[1] == "Can initialise 1 of 77 parameters, e.g. embeddings.word_embeddings.weight."
    assert message[2] == "Cannot initialise:"
    assert message[3].startswith(
        "  - embeddings.position_embeddings.weight, embeddings.token_type_embeddings.weight, "
        "embeddings.embedding_transformation.weight, embeddings.embedding_transformation.bias, "
    )
    assert "encoder.layer.*.bottleneck.input.dense.weight" in message[3]
    assert message[3].endswith(
        ": initialize_from_teacher maps BERT-like encoders only (config.model_type 'bert': BertModel, BertFor*, "
        "MiniLM) layer by layer; the student is MobileBertModel (model_type 'mobilebert') and the teacher BertModel "
        "(model_type 'bert')"
    )
    assert message[4] == (
        "Pass strict=False to initialise what can be and leave the rest at the student's own initialisation "
        "(listed in the report's not_initialised)."
    )
    assert len(message) == 5
    assert all(torch.equal(p, before[n]) for n, p in student.named_parameters())  # untouched
    assert isinstance(refused.value, AutoKDError) and isinstance(refused.value, ValueError)

    report = initialize_from_teacher(student, teacher, strict=False)
    assert [name for name, _ in report.initialised] == ["embeddings.word_embeddings.weight"]
    assert len(report.not_initialised) == 76 and not report.complete
    basis = width_basis(teacher, 16, "pca_embeddings")
    torch.testing.assert_close(
        student.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight @ basis.projection
    )
    assert torch.equal(
        student.embeddings.embedding_transformation.weight, before["embeddings.embedding_transformation.weight"]
    )
    (group,) = report.to_dict()["not_initialised"]
    assert (
        group["reason"].startswith("initialize_from_teacher maps BERT-like encoders only")
        and len(group["parameters"]) == 76
    )


def test_a_different_vocabulary_is_named_and_the_rest_initialised_with_strict_false():
    teacher = bert()
    student = bert(seed=1, vocab_size=50)
    reason = (
        "the vocabularies differ (student 50 tokens, teacher 99): token ids mean different things; build the "
        "student with the teacher's tokenizer and vocab_size=99"
    )
    with pytest.raises(InitFromTeacherError) as refused:
        initialize_from_teacher(student, teacher)
    assert f"  - embeddings.word_embeddings.weight: {reason}" in str(refused.value).splitlines()

    before = student.embeddings.word_embeddings.weight.detach().clone()
    report = initialize_from_teacher(student, teacher, strict=False)
    assert report.not_initialised == (("embeddings.word_embeddings.weight", reason),)
    assert torch.equal(student.embeddings.word_embeddings.weight, before)
    assert torch.equal(student.encoder.layer[3].output.dense.weight, teacher.encoder.layer[3].output.dense.weight)


def test_a_head_the_teacher_lacks_is_listed():
    teacher = bert()
    student = bert(transformers.BertForSequenceClassification, seed=1, num_labels=3)
    with pytest.raises(InitFromTeacherError) as refused:
        initialize_from_teacher(student, teacher)
    assert (
        "  - classifier.weight, classifier.bias: the teacher (BertModel) has no 'classifier' to copy from"
        in str(refused.value).splitlines()
    )
    report = initialize_from_teacher(student, teacher, strict=False)
    assert [name for name, _ in report.not_initialised] == ["classifier.weight", "classifier.bias"]

    other_labels = bert(transformers.BertForSequenceClassification, num_labels=2)
    report = initialize_from_teacher(student, other_labels, strict=False)
    assert report.not_initialised == (
        ("classifier.weight", "'classifier' has 3 outputs in the student and 2 in the teacher"),
        ("classifier.bias", "'classifier.bias' has shape (3,) in the student and (2,) in the teacher"),
    )


def test_a_student_wider_than_its_teacher_is_refused():
    with pytest.raises(InitFromTeacherError) as refused:
        initialize_from_teacher(bert(seed=1, hidden_size=48), bert())
    assert (
        "the student's hidden_size 48 exceeds the teacher's 32: a student wider than its teacher cannot be "
        "initialised from it (choose hidden_size <= 32)"
    ) in str(refused.value)
    assert "Can initialise nothing." in str(refused.value).splitlines()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": "pca"}, "width='pca': choose one of 'pca_embeddings', 'pca_hidden', 'select_hidden', 'slice'"),
        ({"heads": "random"}, "heads='random': choose one of 'weight_norm', 'first'"),
        ({"neurons": "l1"}, "neurons='l1': choose one of 'weight_norm', 'first'"),
        ({"strict": "yes"}, "strict='yes': must be True or False"),
        (
            {"width": "pca_hidden", "data": 3},
            (
                "data= must be a batch of teacher inputs (an input_ids tensor or a mapping such as a tokenizer's output) "
                "or an iterable of such batches; got int"
            ),
        ),
    ],
)
def test_bad_arguments_name_the_argument_and_the_choices(kwargs, message):
    student = bert(seed=1, hidden_size=16, num_attention_heads=2)
    with pytest.raises(InitFromTeacherError) as bad:
        initialize_from_teacher(student, bert(), **kwargs)
    assert str(bad.value) == message


def test_the_report_of_a_minilm_shaped_student_is_json_and_the_teacher_is_unchanged():
    teacher = bert(transformers.BertForMaskedLM)
    teacher_before = params(teacher)
    student = bert(
        transformers.BertForMaskedLM,
        seed=1,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=24,
    )
    report = initialize_from_teacher(student, teacher, width="select_hidden", data=inputs())
    record = json.loads(json.dumps(report.to_dict()))
    assert record["initialised"]["cls.predictions.transform.dense.weight"] == (
        "P^T @ cls.predictions.transform.dense.weight @ P"
    )
    assert record["initialised"]["cls.predictions.bias"] == "cls.predictions.bias"
    assert "basis" not in record
    # the tied decoder follows the word embeddings
    assert student.cls.predictions.decoder.weight is student.bert.embeddings.word_embeddings.weight
    assert all(torch.equal(p, teacher_before[n]) for n, p in teacher.named_parameters())
    assert teacher.training is False and copy.deepcopy(report).to_dict() == report.to_dict()


def test_a_smaller_head_is_projected_on_torchs_singular_vectors():
    # Singular vectors are unique up to sign: the core's rule runs on torch's SVD, so a
    # student initialised before the maths moved to autokd.init_basis is initialised alike.
    teacher = bert(num_hidden_layers=1)
    student = bert(seed=3, num_hidden_layers=1, num_attention_heads=8)  # head size 4 < 8
    initialize_from_teacher(student, teacher, heads="first")
    t_self = teacher.encoder.layer[0].attention.self
    s_self = student.encoder.layer[0].attention.self
    rows, scale = slice(0, 8), math.sqrt(4 / 8)
    w = {k: getattr(t_self, k).weight.detach().double()[rows] for k in ("query", "key")}
    b = {k: getattr(t_self, k).bias.detach().double()[rows] for k in ("query", "key")}
    qk = torch.cat([w["query"] * scale, (b["query"] * scale)[:, None], w["key"], b["key"][:, None]], 1)
    basis = torch.linalg.svd(qk, full_matrices=False)[0][:, :4]
    expected = (basis.T @ (w["query"] * scale)).float()
    assert torch.equal(s_self.query.weight.detach()[:4], expected)
    assert torch.equal(s_self.key.weight.detach()[:4], (basis.T @ w["key"]).float())
