"""The teacher-output cache (issue #8): the teacher runs once per training example and
output, and the built-in training gets the same numbers as from the live teacher."""

from __future__ import annotations

import copy
import logging
import os

import pytest
import torch
from conftest import VOCAB, TokenDataset, bert_config, seeded

import autokd
from autokd import _trial
from autokd_torch import FlashDistillationTrainFunc, IntermediateLayersKnowledgeDistillationLoss
from autokd_torch.cache import TeacherOutputCache
from autokd_torch.data import make_dataloader, split_batch
from autokd_torch.teacher import TeacherForward

LAYER = "bert.encoder.layer.{}"
ATTENTION = (LAYER.format(0) + ".attention.self", "1")
HIDDEN0 = (LAYER.format(0), "")
HIDDEN1 = (LAYER.format(1), "")


class RaggedTokens(torch.utils.data.Dataset):
    """Token sequences of 3 to 11 tokens, unpadded: the collator pads each batch to its
    longest example (dynamic padding)."""

    def __init__(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(3, 12, (n,), generator=g).tolist()
        self.ids = [torch.randint(1, VOCAB, (n_tokens,), generator=g) for n_tokens in lengths]
        self.labels = torch.randint(0, 3, (n,), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def pad_to_longest(examples):
    from torch.nn.utils.rnn import pad_sequence

    batch = {k: pad_sequence([e[k] for e in examples], batch_first=True) for k in ("input_ids", "attention_mask")}
    batch["labels"] = torch.stack([e["labels"] for e in examples])
    return batch


def teacher_model(seed=0, **overrides):
    from transformers import BertForSequenceClassification

    config = bert_config(attn_implementation="eager", **overrides)
    return seeded(lambda: BertForSequenceClassification(copy.deepcopy(config)), seed).eval()


def student_model(seed=1):
    return teacher_model(seed, hidden_size=16, intermediate_size=20).train()


def search_config(flash_layers=(0, 1), flash_steps=3, regular_steps=4, batch_size=8, **teacher_cache):
    """Flash stages on attention maps (KL) and layer outputs (MSE, through a matcher from
    hidden 16 to 32), then output distillation on the logits (CE + KL)."""
    flash = {
        "block_names": [LAYER.format(i) for i in flash_layers],
        "layer_mappings_for_knowledge_transfer": [
            [
                [LAYER.format(i) + ".attention.self", "1", LAYER.format(i) + ".attention.self", "1"],
                [LAYER.format(i), "", LAYER.format(i), ""],
            ]
            for i in flash_layers
        ],
        "loss_types": [["KL", "MSE"] for _ in flash_layers],
        "train_steps": [flash_steps for _ in flash_layers],
    }
    stages = {"flash_distillation": flash} if flash_layers else {}
    if regular_steps:
        stages["regular_distillation"] = {
            "loss_types": [["CE", "KL"]],
            "loss_weights": [[0.5, 0.5]],
            "train_steps": [regular_steps],
        }
    return autokd.load_config(
        {
            "auto_distillation": {
                "search": {"search_space": {"hidden_size": [16]}, "metrics": ["eval_loss"]},
                **stages,
            },
            "train": {
                "batch_size": batch_size,
                "optimizer": {"Adam": {"learning_rate": 1e-3}},
                "teacher_cache": teacher_cache,
            },
        }
    )


class RecordingTrainFunc(FlashDistillationTrainFunc):
    """Keeps the distillers of its last call, for their per-step losses."""

    def distillers(self, *args):
        self.last = super().distillers(*args)
        return self.last

    def losses(self):
        return [list(d.history) for d in self.last]


def in_trial(fn, *args):
    """Run ``fn`` as a search trial does; the extras it records."""
    extras = {}
    token = _trial._current.set(extras)
    try:
        fn(*args)
    finally:
        _trial._current.reset(token)
    return extras


def one_epoch(teacher, data, batch_size, seed, collate_fn=None):
    """The teacher's outputs for one shuffled epoch, with each batch's indices and inputs."""
    out = []
    for item in make_dataloader(data, batch_size, collate_fn=collate_fn, seed=seed):
        _, inputs, _ = split_batch(item.batch)
        out.append((item.indices, inputs, teacher(inputs, item.indices)))
    return out


# --- the same numbers as the live teacher -------------------------------------------------


def test_float32_cache_gives_exactly_the_losses_of_the_live_teacher_in_every_trial():
    teacher, data, student = teacher_model(), TokenDataset(20, seed=1), student_model()
    runs = {}
    for enabled in (True, False):
        train_func = RecordingTrainFunc(search_config(enabled=enabled), teacher, data, seed=0, show_progress=False)
        runs[enabled] = []
        for _trial_index in range(2):  # two trials of a search, on the same starting student
            extras = in_trial(train_func, copy.deepcopy(student))
            runs[enabled].append((train_func.losses(), extras["teacher_cache"]))

    for (cached_losses, record), (live_losses, live_record) in zip(runs[True], runs[False], strict=True):
        assert cached_losses == live_losses  # float for float
        assert record["enabled"] is True and live_record["enabled"] is False
    # 10 steps over batches of 8, 8, 4 examples (68 in all); trial 1 fills the cache stage by
    # stage, trial 2 only reads it
    first, second = runs[True][0][1], runs[True][1][1]
    assert first["hits"] + first["misses"] == 68 and first["misses"] >= 20
    assert (second["hits"], second["misses"]) == (68, 0)
    assert runs[False][1][1]["misses"] == 68


def test_cached_outputs_are_rebuilt_for_shuffled_batches_of_other_sizes_with_their_own_padding():
    teacher, data = teacher_model(), RaggedTokens(20)
    specs = [ATTENTION, HIDDEN0, HIDDEN1]
    cached = TeacherForward(teacher, specs, cache=TeacherOutputCache())
    cached.prepare(data, data_collator=pad_to_longest)
    live = TeacherForward(teacher, specs)

    first = one_epoch(cached, data, 8, seed=0, collate_fn=pad_to_longest)
    assert (cached.hits, cached.misses) == (0, 20)
    # what epoch 1 computed, example by example, at its real tokens
    stored = {}
    for indices, inputs, outputs in first:
        lengths = inputs["attention_mask"].sum(1).tolist()
        for row, (index, n) in enumerate(zip(indices.tolist(), lengths, strict=True)):
            stored[index] = {
                "attention": outputs.features[ATTENTION][row, :, :n, :n],
                "hidden": outputs.features[HIDDEN1][row, :n],
                "logits": outputs.logits[row],
            }

    for batch_size, seed in ((5, 1), (7, 2)):
        hits_before = cached.hits
        for indices, inputs, outputs in one_epoch(cached, data, batch_size, seed, pad_to_longest):
            reference = live(inputs, indices)
            seq_len = inputs["input_ids"].shape[1]
            attention, hidden = outputs.features[ATTENTION], outputs.features[HIDDEN1]
            assert attention.shape == reference.features[ATTENTION].shape == (len(indices), 2, seq_len, seq_len)
            assert hidden.shape == reference.features[HIDDEN1].shape == (len(indices), seq_len, 32)
            for row, index in enumerate(indices.tolist()):
                n = len(data.ids[index])
                assert torch.equal(attention[row, :, :n, :n], stored[index]["attention"])
                assert torch.equal(hidden[row, :n], stored[index]["hidden"])
                assert torch.equal(outputs.logits[row], stored[index]["logits"])
                # zero at padded positions, as the live teacher's outputs are
                assert not attention[row, :, n:].any() and not attention[row, :, :, n:].any()
                assert not hidden[row, n:].any() and not reference.features[HIDDEN1][row, n:].any()
            # with another padded length the live teacher itself moves by float32 rounding
            for key in (ATTENTION, HIDDEN0, HIDDEN1):
                torch.testing.assert_close(outputs.features[key], reference.features[key], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(outputs.logits, reference.logits, rtol=1e-5, atol=1e-6)
        assert cached.hits - hits_before == 20
    assert cached.misses == 20  # the teacher ran once per example


@pytest.mark.parametrize(("dtype", "rel"), [("float32", 1e-5), ("float16", 1e-3)])
def test_losses_with_dynamic_padding_stay_within_the_stated_tolerance(dtype, rel):
    """float32: at most the live teacher's own rounding across padded lengths (~1e-7 of
    its outputs); float16: outputs rounded to 11 significant bits, relative loss
    differences measured at 4e-5 over these 10 steps, allowed up to 1e-3."""
    teacher, data, student = teacher_model(), RaggedTokens(20), student_model()
    losses = {}
    for enabled in (True, False):
        train_func = RecordingTrainFunc(
            search_config(enabled=enabled, dtype=dtype),
            teacher,
            data,
            data_collator=pad_to_longest,
            seed=0,
            show_progress=False,
        )
        in_trial(train_func, copy.deepcopy(student))
        extras = in_trial(train_func, copy.deepcopy(student))  # the second trial reads the cache
        losses[enabled] = [x for stage in train_func.losses() for x in stage]
    assert extras["teacher_cache"]["enabled"] is False
    assert losses[True] == pytest.approx(losses[False], rel=rel)
    if dtype == "float16":
        assert losses[True] != losses[False]


def test_padded_positions_add_nothing_to_the_loss():
    """A padded batch's loss is the per-example losses (each example alone, unpadded)
    weighted by their number of real tokens (issue #20): nothing comes from the padding,
    and a per-token loss is a mean over the real tokens whatever the padding."""
    teacher = teacher_model()
    # same width (no feature matcher); sharper attention than the teacher's, for a KL well
    # above float32 rounding
    student = teacher_model(seed=3, initializer_range=0.2).train()
    data = RaggedTokens(6, seed=4)
    mappings = [
        [LAYER.format(1) + ".attention.self", "1", LAYER.format(1) + ".attention.self", "1"],
        [LAYER.format(1), "", LAYER.format(1), ""],
    ]
    forward = TeacherForward(teacher, [(LAYER.format(1) + ".attention.self", "1"), HIDDEN1])

    def loss_of(examples, loss_type):
        # KL of the attention maps (averaged over real query rows x heads), or MSE of the
        # layer output (averaged over real tokens x hidden units)
        weights = [1.0, 0.0] if loss_type == "KL" else [0.0, 1.0]
        criterion = IntermediateLayersKnowledgeDistillationLoss(mappings, ["KL", "MSE"], weights)
        criterion.student_model = student
        batch = pad_to_longest(examples)
        student_inputs, teacher_inputs, _ = split_batch(batch)
        outputs = forward(teacher_inputs, None, criterion.teacher_feature_specs(), False)
        criterion.set_teacher_outputs(outputs)
        with torch.no_grad():
            student(**student_inputs, output_attentions=True)
            return float(criterion.compute_loss(None, None)), batch["input_ids"].shape[1], outputs

    examples = [data[i] for i in range(6)]
    lengths = [len(e["input_ids"]) for e in examples]
    for loss_type in ("KL", "MSE"):
        batch_loss, seq_len, outputs = loss_of(examples, loss_type)
        assert seq_len == max(lengths) > min(lengths)
        alone = [loss_of([e], loss_type)[0] for e in examples]
        expected = sum(loss * n for loss, n in zip(alone, lengths, strict=True)) / sum(lengths)
        assert batch_loss == pytest.approx(expected, rel=1e-5)
    attention = outputs.features[(LAYER.format(1) + ".attention.self", "1")]
    for row, n in enumerate(lengths):
        assert not attention[row, :, n:].any() and not outputs.features[HIDDEN1][row, n:].any()


def test_per_token_dimensions_are_measured_not_guessed_from_the_shape():
    """Padded to 16 tokens with a hidden size of 16: the pooled (B, 16) output looks like a
    per-token one, but does not shrink with the padded length, so it is stored whole."""
    teacher = teacher_model(hidden_size=16, intermediate_size=20)
    data = RaggedTokens(12, seed=5)

    def pad_to_16(examples):
        batch = pad_to_longest(examples)
        extra = 16 - batch["input_ids"].shape[1]
        return {k: torch.nn.functional.pad(v, (0, extra)) if v.dim() == 2 else v for k, v in batch.items()}

    pooler, hidden = ("bert.pooler", ""), (LAYER.format(1), "")
    forward = TeacherForward(teacher, [pooler, hidden, ATTENTION], cache=TeacherOutputCache())
    forward.prepare(data, data_collator=pad_to_16)
    for _, _, outputs in one_epoch(forward, data, 4, seed=0, collate_fn=pad_to_16):
        assert outputs.token_dims == {hidden: (1,), ATTENTION: (2, 3)}
        assert outputs.features[pooler].shape == (4, 16) and outputs.features[pooler].ne(0).all()
    for _, inputs, outputs in one_epoch(forward, data, 6, seed=1, collate_fn=pad_to_longest):
        live = teacher(**inputs, output_hidden_states=True)
        assert outputs.features[hidden].shape == (6, inputs["input_ids"].shape[1], 16)
        torch.testing.assert_close(outputs.features[pooler], teacher.bert.pooler(live.hidden_states[-1]))
    assert (forward.hits, forward.misses) == (12, 12)


# --- storage: memory, disk, live -------------------------------------------------------------


def test_the_memory_budget_spills_to_disk_and_the_disk_budget_to_the_live_teacher(tmp_path, caplog):
    teacher, data = teacher_model(), TokenDataset(20, seed=1)
    per_example = 8 * 32 * 4 + 3 * 4  # a (8 tokens, 32) float32 layer output and 3 logits
    cache = TeacherOutputCache(
        memory_budget_mb=5 * per_example / 2**20, disk_budget_mb=4 * per_example / 2**20, directory=tmp_path
    )
    cached = TeacherForward(teacher, [HIDDEN1], cache=cache)
    live = TeacherForward(teacher, [HIDDEN1])
    with caplog.at_level(logging.INFO, logger="autokd.torch"):
        cached.prepare(data)
        one_epoch(cached, data, 8, seed=0)
    assert (cached.hits, cached.misses) == (0, 20)
    record = cached.finish()
    assert record["bytes_in_memory"] == 5 * per_example and record["bytes_on_disk"] == 4 * per_example
    directory = record["directory"]
    assert os.path.dirname(directory) == str(tmp_path)
    assert sorted(os.listdir(directory))[-1] == "manifest.json"
    assert f"further outputs go to {directory}" in caplog.text
    assert "disk budget (0.0 MB) is used up" in caplog.text

    for indices, inputs, outputs in one_epoch(cached, data, 6, seed=1):
        reference = live(inputs, indices)
        torch.testing.assert_close(outputs.features[HIDDEN1], reference.features[HIDDEN1], rtol=0, atol=1e-6)
        torch.testing.assert_close(outputs.logits, reference.logits, rtol=0, atol=1e-6)
    assert (cached.hits, cached.misses) == (9, 31)  # 5 from memory, 4 from disk, 11 live again


def test_without_a_disk_budget_the_disk_tier_stops_while_a_gigabyte_is_free(tmp_path, monkeypatch, caplog):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    free = {"bytes": 2**30 + 65 * 2**20}
    monkeypatch.setattr("autokd._cache_disk.shutil.disk_usage", lambda path: usage(0, 0, free["bytes"]))
    forward = TeacherForward(
        teacher_model(), [HIDDEN1], cache=TeacherOutputCache(memory_budget_mb=0, directory=tmp_path)
    )
    data = TokenDataset(20, seed=1)
    forward.prepare(data)
    one_epoch(forward, data, 8, seed=0)
    assert forward.cache.disk_bytes == 20 * (8 * 32 + 3) * 4
    free["bytes"] = 2**30 + 63 * 2**20
    other = TokenDataset(20, seed=2)
    forward.prepare(other)
    with caplog.at_level(logging.WARNING, logger="autokd.torch"):
        one_epoch(forward, other, 8, seed=0)
    assert forward.cache.disk_bytes == 0
    assert "teacher cache: only 1087 MB free on the disk of " in caplog.text


def test_bad_cache_settings_name_the_field():
    with pytest.raises(autokd.ConfigError) as err:
        TeacherOutputCache.from_config({"memory_budget": 3})
    assert str(err.value) == (
        "invalid configuration: train.teacher_cache: unknown keys ['memory_budget'] "
        "(known: directory, disk_budget_mb, dtype, enabled, memory_budget_mb, prefill)"
    )
    with pytest.raises(autokd.ConfigError, match=r"train.teacher_cache.dtype: 'float32' or 'float16', got 'int8'"):
        TeacherOutputCache(dtype="int8")
    with pytest.raises(autokd.ConfigError, match=r"train.teacher_cache.memory_budget_mb: a number of megabytes >= 0"):
        TeacherOutputCache(memory_budget_mb=-1)


def test_float16_storage_halves_the_bytes():
    teacher, data = teacher_model(), TokenDataset(20, seed=1)
    records = {}
    for dtype in ("float32", "float16"):
        forward = TeacherForward(teacher, [HIDDEN1], cache=TeacherOutputCache(dtype=dtype))
        forward.prepare(data)
        one_epoch(forward, data, 8, seed=0)
        records[dtype] = forward.finish()
    assert records["float32"]["bytes_in_memory"] == 20 * (8 * 32 + 3) * 4
    assert records["float16"]["bytes_in_memory"] == 20 * (8 * 32 + 3) * 2


def test_a_cache_left_on_disk_is_reused_by_the_same_teacher_and_data_and_refused_otherwise(tmp_path, caplog):
    teacher, data = teacher_model(), TokenDataset(20, seed=1)

    def run(teacher, data):
        forward = TeacherForward(teacher, [HIDDEN1], cache=TeacherOutputCache(memory_budget_mb=0), output_dir=tmp_path)
        forward.prepare(data)
        epoch = one_epoch(forward, data, 8, seed=0)
        record = forward.finish()
        return record, epoch

    first, first_epoch = run(teacher, data)
    assert (first["hits"], first["misses"]) == (0, 20)
    assert first["bytes_on_disk"] == 20 * (8 * 32 + 3) * 4 and first["bytes_in_memory"] == 0
    cache_dir = first["directory"]
    assert os.path.dirname(cache_dir) == str(tmp_path / "teacher_cache")

    with caplog.at_level(logging.INFO, logger="autokd.torch"):
        again, again_epoch = run(teacher, data)  # a resumed search
    assert (again["hits"], again["misses"]) == (20, 0)
    assert f"reusing 40 stored outputs from {cache_dir}" in caplog.text
    for (_, _, a), (_, _, b) in zip(first_epoch, again_epoch, strict=True):
        assert torch.equal(a.features[HIDDEN1], b.features[HIDDEN1]) and torch.equal(a.logits, b.logits)

    changed = copy.deepcopy(teacher)
    with torch.no_grad():
        changed.bert.encoder.layer[1].output.dense.bias.add_(0.01)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="autokd.torch"):
        stale, _ = run(changed, data)
    assert (stale["hits"], stale["misses"]) == (0, 20)
    assert stale["directory"] != cache_dir
    assert f"refusing the stale cache in {cache_dir}: the teacher's weights differs from this run's" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="autokd.torch"):
        other_data, _ = run(teacher, TokenDataset(20, seed=2))
    assert (other_data["hits"], other_data["misses"]) == (0, 20)
    assert f"refusing the stale cache in {cache_dir}: the training data differs from this run's" in caplog.text


# --- when the cache is off ---------------------------------------------------------------------


def test_a_teacher_in_training_mode_turns_the_cache_off_with_the_reason_logged(caplog):
    teacher, data = teacher_model().train(), TokenDataset(20, seed=1)
    train_func = FlashDistillationTrainFunc(search_config(), teacher, data, seed=0, show_progress=False)
    with caplog.at_level(logging.INFO, logger="autokd.torch"):
        records = [in_trial(train_func, student_model())["teacher_cache"] for _ in range(2)]
    reason = (
        "the teacher was in training mode when handed to autokd: a teacher being trained is not frozen, so its "
        "outputs cannot be reused (call teacher.eval() before handing it over)"
    )
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [f"teacher cache off: {reason}"]
    for record in records:
        assert record["enabled"] is False and record["reason"] == reason
        assert (record["hits"], record["misses"]) == (0, 68)
    assert not teacher.training  # the teacher itself still runs in eval mode


def test_a_teacher_whose_weights_change_between_trials_turns_the_cache_off(caplog):
    teacher, data = teacher_model(), TokenDataset(20, seed=1)
    train_func = FlashDistillationTrainFunc(search_config(), teacher, data, seed=0, show_progress=False)
    first = in_trial(train_func, student_model())["teacher_cache"]
    assert first["enabled"] is True and first["bytes_in_memory"] > 0
    with torch.no_grad():
        teacher.classifier.weight.mul_(1.5)
    with caplog.at_level(logging.INFO, logger="autokd.torch"):
        second = in_trial(train_func, student_model())["teacher_cache"]
    reason = (
        "the teacher's weights changed since its outputs were stored: it is not frozen, so its outputs cannot be reused"
    )
    assert second == {
        "enabled": False,
        "hits": 0,
        "misses": 68,
        "reason": reason,
        "dtype": "float32",
        "bytes_in_memory": 0,
        "bytes_on_disk": 0,
        "directory": None,
        "prefilled": 0,
    }
    assert f"teacher cache off: {reason}" in caplog.text


class AugmentedTokens(TokenDataset):
    random_augmentation = True


def masking_collator():
    from transformers import BertTokenizerFast, DataCollatorForLanguageModeling

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"t{i}" for i in range(VOCAB - 5)]
    tokenizer = BertTokenizerFast(tokenizer_object=None, vocab={t: i for i, t in enumerate(vocab)})
    return DataCollatorForLanguageModeling(tokenizer, mlm=True)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("config", "disabled by train.teacher_cache.enabled: false"),
        (
            "augmented",
            "the training dataset (AugmentedTokens) declares random_augmentation = True: the teacher's inputs differ "
            "at every use",
        ),
        (
            "loader",
            "the training data (DataLoader) is not a map-style dataset, so its batches carry no example indices to "
            "key the cache by; pass the dataset itself (len() and [i])",
        ),
    ],
)
def test_the_cache_is_off_with_its_reason_in_the_trial_record(case, reason, caplog):
    teacher = teacher_model()
    data = AugmentedTokens(20, seed=1) if case == "augmented" else TokenDataset(20, seed=1)
    if case == "loader":
        data = torch.utils.data.DataLoader(data, batch_size=8)
    config = search_config(enabled=case != "config")
    train_func = FlashDistillationTrainFunc(config, teacher, data, seed=0, show_progress=False)
    with caplog.at_level(logging.INFO, logger="autokd.torch"):
        record = in_trial(train_func, student_model())["teacher_cache"]
    assert record["enabled"] is False and record["reason"] == reason
    assert (record["hits"], record["misses"]) == (0, 68)
    assert f"teacher cache off: {reason}" in caplog.text


def test_a_collator_that_masks_at_random_turns_the_cache_off():
    pytest.importorskip("tokenizers")
    forward = TeacherForward(teacher_model(), [HIDDEN1], cache=TeacherOutputCache())
    collator = masking_collator()
    forward.prepare(TokenDataset(8), data_collator=collator)
    assert not forward.cache_enabled
    assert forward.cache_off_reason == (
        "the data collator (DataCollatorForLanguageModeling) changes the inputs at random (masking or "
        "random_augmentation = True): the teacher's inputs differ at every use"
    )


def test_left_padding_turns_the_cache_off():
    teacher, data = teacher_model(), RaggedTokens(8)

    def pad_left(examples):
        batch = pad_to_longest(examples)
        flip = {k: v.flip(1) for k, v in batch.items() if k != "labels"}
        return {**flip, "labels": batch["labels"]}

    forward = TeacherForward(teacher, [HIDDEN1], cache=TeacherOutputCache())
    forward.prepare(data, data_collator=pad_left)
    one_epoch(forward, data, 4, seed=0, collate_fn=pad_left)
    assert forward.finish()["reason"] == (
        "the batches are padded on the left (attention_mask): per-token outputs are stored by their real tokens "
        "from the start; pad on the right"
    )


# --- sharing and prefill -----------------------------------------------------------------------


def test_one_teacher_forward_serves_train_funcs_built_per_trial_with_other_features():
    """As the MiniLM example does: each trial builds its own train function (its stages
    depend on the student's depth), all sharing one TeacherForward and its cache."""
    teacher, data = teacher_model(), TokenDataset(20, seed=1)
    shared = TeacherForward(teacher, cache=TeacherOutputCache(), logits=False)

    def trial(layer):
        config = search_config(flash_layers=(layer,), flash_steps=5, regular_steps=0)
        train_func = FlashDistillationTrainFunc(config, None, data, seed=0, show_progress=False, teacher_forward=shared)
        return in_trial(train_func, student_model())["teacher_cache"]

    first, second, third = trial(0), trial(1), trial(0)
    assert shared.feature_specs == [ATTENTION, HIDDEN0, (LAYER.format(1) + ".attention.self", "1"), HIDDEN1]
    # 5 steps over batches of 8, 8, 4, 8, 8: epoch 1 fills the cache, epoch 2 reads it
    assert (first["hits"], first["misses"]) == (16, 20)
    assert (second["hits"], second["misses"]) == (16, 20)  # layer 1 was never asked for before
    assert (third["hits"], third["misses"]) == (36, 0)
    with pytest.raises(autokd.AutoKDError, match="teacher_model and teacher_forward.teacher_model are different"):
        FlashDistillationTrainFunc(search_config(), teacher_model(seed=5), data, teacher_forward=shared)


def test_prefill_runs_the_teacher_over_the_training_set_before_the_first_step():
    teacher, data = teacher_model(), TokenDataset(20, seed=1)
    shared = TeacherForward(teacher, cache=TeacherOutputCache(prefill=True), logits=False)
    records = []
    for layer in (0, 0, 1):
        config = search_config(flash_layers=(layer,), flash_steps=2, regular_steps=0)
        train_func = FlashDistillationTrainFunc(config, None, data, seed=0, show_progress=False, teacher_forward=shared)
        records.append(in_trial(train_func, student_model())["teacher_cache"])
    assert [(r["prefilled"], r["hits"], r["misses"]) for r in records] == [(20, 16, 0), (0, 16, 0), (20, 16, 0)]


def test_prefill_batches_examples_of_similar_length_and_gives_the_live_teachers_losses():
    """The prefill pads each batch to its longest example only: it orders the examples by
    length (the cache stores each example trimmed, so the order cannot change a value)."""
    teacher, data, student = teacher_model(), RaggedTokens(20), student_model()
    widths = []
    counting = lambda examples: (widths.append(max(len(e["input_ids"]) for e in examples)), pad_to_longest(examples))[1]
    shared = TeacherForward(teacher, cache=TeacherOutputCache(prefill=True), logits=False)
    shared.require([ATTENTION, HIDDEN0, HIDDEN1], logits=True)
    shared.prepare(data, data_collator=counting, batch_size=8, show_progress=False)
    lengths = sorted(len(data[i]["input_ids"]) for i in range(len(data)))
    assert widths == [lengths[7], lengths[15], lengths[19]]  # batches of the 8, 8, 4 shortest
    losses = {}
    for name, forward in (("prefilled", shared), ("live", TeacherForward(teacher, logits=True))):
        train_func = RecordingTrainFunc(
            search_config(),
            None if name == "prefilled" else teacher,
            data,
            data_collator=pad_to_longest,
            seed=0,
            show_progress=False,
            teacher_forward=forward,
        )
        extras = in_trial(train_func, copy.deepcopy(student))
        losses[name] = [x for stage in train_func.losses() for x in stage]
    assert extras["teacher_cache"]["enabled"] is False
    assert losses["prefilled"] == pytest.approx(losses["live"], rel=1e-5)


def test_by_length_orders_token_examples_and_leaves_others_alone():
    from autokd_torch.data import by_length, example_length

    data = RaggedTokens(6, seed=2)
    order = by_length(data, list(range(6)))
    assert sorted(order) == list(range(6))
    assert [example_length(data[i]) for i in order] == sorted(len(data[i]["input_ids"]) for i in range(6))
    masked = {"input_ids": torch.tensor([5, 6, 0]), "attention_mask": torch.tensor([1, 1, 0])}
    assert example_length(masked) == 2 and example_length({"input_ids": [1, 2, 3]}) == 3
    assert example_length(torch.zeros(4)) is None
    assert by_length([torch.zeros(3), torch.zeros(1)], [1, 0]) == [1, 0]


# --- through a search --------------------------------------------------------------------------


SEARCH_YAML = """
model:
  framework: pytorch
  teacher: tiny_task:teacher
  builder_options: {model_cls: AutoModelForSequenceClassification}
auto_distillation:
  search:
    search_space: {hidden_size: [8, 16], intermediate_size: [12]}
    search_algorithm: grid
    metrics: [eval_loss]
    seed: 0
  flash_distillation:
    block_names: ['bert.encoder.layer.1']
    layer_mappings_for_knowledge_transfer: [[['bert.encoder.layer.1', 'bert.encoder.layer.1']]]
    train_steps: [2]
  regular_distillation:
    loss_types: ['CE', 'KL']
    loss_weights: [0.5, 0.5]
    train_steps: [2]
train:
  optimizer: {Adam: {learning_rate: 0.001}}
  batch_size: 8
  teacher_cache: {memory_budget_mb: 0}
data:
  train: tiny_task:train_data
  eval: tiny_task:eval_data
  options: {size: 24}
"""


def test_a_resumed_search_reads_the_cache_its_first_run_left_on_disk(tmp_path, caplog):
    import json

    from autokd.cli import run_config

    path = tmp_path / "search.yaml"
    path.write_text(SEARCH_YAML)
    out = tmp_path / "out"
    run_config(str(path), output_dir=str(out), max_trials=1, progress=False)
    with caplog.at_level(logging.INFO, logger="autokd.torch"):
        run_config(str(path), output_dir=str(out), max_trials=2, resume=True, progress=False)
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    first, resumed = (t["extras"]["teacher_cache"] for t in trials)
    (cache_dir,) = (out / "teacher_cache").iterdir()
    # 4 steps of 8: flash on layer 1's output (16 examples), then the logits (16 more, some
    # of which the reshuffled second epoch repeats)
    assert first["hits"] + first["misses"] == 32 and first["misses"] >= 28
    assert first["directory"] == resumed["directory"] == str(cache_dir)
    assert first["bytes_on_disk"] == 16 * 8 * 32 * 4 + (16 - first["hits"]) * 3 * 4
    stored_rows = 16 + 16 - first["hits"]
    assert f"reusing {stored_rows} stored outputs from {cache_dir}" in caplog.text
    assert (resumed["hits"], resumed["misses"]) == (32, 0)
    assert [t["status"] for t in trials] == ["ok", "ok"]
