"""Per-token losses on a padded batch average over the real positions (issue #20): hidden
states over real tokens x units, attention maps over real query rows x heads, token logits
over real tokens; the same batch padded to two lengths gives the same loss, through the
teacher-output cache as live, and a loss registered by a plugin gets the same."""

from __future__ import annotations

import copy
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from conftest import VOCAB, bert_config, seeded

import autokd
from autokd_torch import IntermediateLayersKnowledgeDistillationLoss, KnowledgeDistillationLoss
from autokd_torch.cache import TeacherOutputCache
from autokd_torch.teacher import TeacherForward

LENGTHS = [3, 9, 5, 7]
LAYER = "bert.encoder.layer.1"
ATTENTION = (LAYER + ".attention.self", "1")
HIDDEN = (LAYER, "")
MAPPINGS = [[ATTENTION[0], "1", ATTENTION[0], "1"], [LAYER, "", LAYER, ""]]


def tiny(seed, **overrides):
    from transformers import BertForTokenClassification

    config = bert_config(attn_implementation="eager", **overrides)
    return seeded(lambda: BertForTokenClassification(copy.deepcopy(config)), seed).eval()


@pytest.fixture(scope="module")
def models():
    # the student's attention is sharper than the teacher's: a KL well above rounding
    return tiny(0), tiny(3, initializer_range=0.2)


def ragged(pad_to=None, seed=4):
    """The same four examples of 3 to 9 tokens, right-padded to ``pad_to`` (default: the
    longest), with garbage token ids at the padded positions."""
    g = torch.Generator().manual_seed(seed)
    seq_len = pad_to or max(LENGTHS)
    ids = torch.randint(1, VOCAB, (len(LENGTHS), max(LENGTHS)), generator=g)
    input_ids = torch.randint(1, VOCAB, (len(LENGTHS), seq_len), generator=g)
    mask = torch.zeros(len(LENGTHS), seq_len, dtype=torch.long)
    for row, n in enumerate(LENGTHS):
        input_ids[row, :n] = ids[row, :n]
        mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def raw_outputs(model, batch):
    with torch.no_grad():
        out = model(**batch, output_attentions=True, output_hidden_states=True)
    return out.attentions[1], out.hidden_states[2], out.logits


def il_loss(models, batch, loss_types, weights, forward=None, indices=None):
    teacher, student = models
    criterion = IntermediateLayersKnowledgeDistillationLoss(MAPPINGS, loss_types, weights)
    criterion.student_model = student
    forward = forward or TeacherForward(teacher, criterion.teacher_feature_specs())
    criterion.set_teacher_outputs(forward(batch, indices, criterion.teacher_feature_specs(), False))
    with torch.no_grad():
        out = student(**batch, **criterion.student_forward_kwargs)
        loss = float(criterion.compute_loss(out, None))
    criterion.detach()
    return loss


def kd_loss(models, batch, kind, temperature=2.0):
    teacher, student = models
    criterion = KnowledgeDistillationLoss(temperature, ["CE", kind], [0.0, 1.0])
    criterion.set_teacher_outputs(TeacherForward(teacher)(batch, None, [], True))
    with torch.no_grad():
        return float(criterion.compute_loss(student(**batch), None))


# --- the numbers against formulas worked by hand --------------------------------------


def test_hidden_state_mse_is_the_masked_mean_and_textbrewers_hid_mse_loss(models):
    batch = ragged()
    teacher, student = models
    _, hidden_t, _ = raw_outputs(teacher, batch)
    _, hidden_s, _ = raw_outputs(student, batch)
    mask = batch["attention_mask"].float()
    by_hand = sum(((hidden_s[b, :n] - hidden_t[b, :n]) ** 2).sum() for b, n in enumerate(LENGTHS)) / (
        sum(LENGTHS) * hidden_t.shape[-1]
    )
    # TextBrewer's hid_mse_loss(state_S, state_T, mask), textbrewer/losses.py
    valid_count = mask.sum() * hidden_s.size(-1)
    textbrewer = (F.mse_loss(hidden_s, hidden_t, reduction="none") * mask.unsqueeze(-1)).sum() / valid_count
    got = il_loss(models, batch, ["KL", "MSE"], [0.0, 1.0])
    assert got == pytest.approx(float(by_hand), rel=1e-5)
    assert got == pytest.approx(float(textbrewer), rel=1e-5)
    # the old rule (every padded position in the denominator) is 24/36 of this: far off
    assert got > 1.2 * float(by_hand) * sum(LENGTHS) / (len(LENGTHS) * max(LENGTHS))


def test_attention_kl_is_the_mean_over_real_query_rows_and_heads(models):
    batch = ragged()
    teacher, student = models
    att_t, _, _ = raw_outputs(teacher, batch)
    att_s, _, _ = raw_outputs(student, batch)
    rows = []
    for b, n in enumerate(LENGTHS):
        p, q = att_t[b, :, :n, :n], att_s[b, :, :n, :n]  # heads x real queries x real keys
        rows.append((p * (p.log() - q.log())).sum(-1).flatten())
    by_hand = torch.cat(rows).mean()
    assert torch.cat(rows).numel() == sum(LENGTHS) * att_t.shape[1]
    assert il_loss(models, batch, ["KL", "MSE"], [1.0, 0.0]) == pytest.approx(float(by_hand), rel=1e-5)


@pytest.mark.parametrize("kind", ["KL", "CE"])
def test_token_logit_losses_are_means_over_the_real_tokens(models, kind):
    batch, t = ragged(), 2.0
    teacher, student = models
    logits_t, logits_s = raw_outputs(teacher, batch)[2], raw_outputs(student, batch)[2]
    real = batch["attention_mask"].bool()
    p_t = F.softmax(logits_t[real] / t, -1)
    log_p_s = F.log_softmax(logits_s[real] / t, -1)
    per_token = (p_t * (p_t.log() - log_p_s)).sum(-1) if kind == "KL" else -(p_t * log_p_s).sum(-1)
    assert per_token.numel() == sum(LENGTHS)
    assert kd_loss(models, batch, kind, t) == pytest.approx(float(t * t * per_token.mean()), rel=1e-5)


# --- whatever the padding ---------------------------------------------------------------


@pytest.mark.parametrize("loss_types", [["KL", "MSE"], ["CE", "L1"]])
def test_the_same_batch_padded_to_two_lengths_gives_the_same_loss(models, loss_types):
    short, long = ragged(), ragged(pad_to=max(LENGTHS) + 6)
    assert il_loss(models, short, loss_types, [0.5, 0.5]) == pytest.approx(
        il_loss(models, long, loss_types, [0.5, 0.5]), rel=1e-6
    )
    for kind in ("KL", "CE", "MSE"):
        assert kd_loss(models, short, kind) == pytest.approx(kd_loss(models, long, kind), rel=1e-6)


def test_an_unpadded_batch_and_pooled_features_are_unchanged(models):
    """Every example 7 tokens: plain means over every position, as before."""
    teacher, student = models
    batch = {"input_ids": ragged()["input_ids"][:, :7], "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    _, hidden_t, _ = raw_outputs(teacher, batch)
    _, hidden_s, _ = raw_outputs(student, batch)
    assert il_loss(models, batch, ["KL", "MSE"], [0.0, 1.0]) == pytest.approx(
        float(F.mse_loss(hidden_s, hidden_t)), rel=1e-6
    )


def test_a_loss_through_the_cache_equals_the_live_one(models):
    teacher, _ = models
    specs = [ATTENTION, HIDDEN]
    cached = TeacherForward(teacher, specs, cache=TeacherOutputCache())
    padded = ragged()
    examples = [{k: v[row, :n] for k, v in padded.items()} for row, n in enumerate(LENGTHS)]
    cached.prepare(examples, show_progress=False)
    indices = torch.arange(len(LENGTHS))
    live = il_loss(models, ragged(), ["KL", "MSE"], [0.5, 0.5])
    # fill the cache from a batch padded to 15, then read it back for one padded to 9
    il_loss(models, ragged(pad_to=15), ["KL", "MSE"], [0.5, 0.5], cached, indices)
    misses = cached.misses
    assert il_loss(models, ragged(), ["KL", "MSE"], [0.5, 0.5], cached, indices) == pytest.approx(live, rel=1e-6)
    assert cached.misses == misses and cached.hits == len(LENGTHS)


# --- a loss from a plugin ----------------------------------------------------------------


class CubePlugin:
    """A third-party loss written from docs/plugins.md: a mean over every position, no
    mask anywhere. It records the shapes it was given."""

    shapes: ClassVar[list] = []

    @autokd.hookimpl
    def register_losses(self, register):
        def mean_abs_cube(student, teacher):
            CubePlugin.shapes.append(tuple(student.shape))
            return ((student - teacher).abs() ** 3).mean()

        register("MeanAbsCube", mean_abs_cube, "pytorch")


def test_a_third_party_loss_gets_the_real_positions(models, test_plugin):
    test_plugin(CubePlugin(), "cube-test")
    teacher, student = models
    batch = ragged()
    _, hidden_t, _ = raw_outputs(teacher, batch)
    _, hidden_s, _ = raw_outputs(student, batch)
    by_hand = sum(((hidden_s[b, :n] - hidden_t[b, :n]).abs() ** 3).sum() for b, n in enumerate(LENGTHS)) / (
        sum(LENGTHS) * hidden_t.shape[-1]
    )
    CubePlugin.shapes.clear()
    got = il_loss(models, batch, ["KL", "MeanAbsCube"], [0.0, 1.0])
    assert got == pytest.approx(float(by_hand), rel=1e-5)
    assert CubePlugin.shapes == [(sum(LENGTHS), hidden_t.shape[-1])]
    assert got == pytest.approx(il_loss(models, ragged(pad_to=13), ["KL", "MeanAbsCube"], [0.0, 1.0]), rel=1e-6)
