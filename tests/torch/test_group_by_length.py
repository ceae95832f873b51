"""``train.group_by_length``: batches of examples of similar length, in a random order."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import bert_config, seeded

import autokd
from autokd import AutoKDError
from autokd_torch import FlashDistillationTrainFunc
from autokd_torch.data import make_dataloader


class Lengths(torch.utils.data.Dataset):
    """Example i has LENGTHS[i] tokens, token ids 1..; the collator pads to the batch's
    longest."""

    def __init__(self, lengths):
        self.lengths = list(lengths)

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, i):
        n = self.lengths[i]
        return {"input_ids": torch.arange(1, n + 1), "attention_mask": torch.ones(n, dtype=torch.long)}


def pad(examples):
    from torch.nn.utils.rnn import pad_sequence

    return {key: pad_sequence([ex[key] for ex in examples], batch_first=True) for key in examples[0]}


# 200 examples, 1 to 40 tokens, mostly short (as utterances are)
LENGTHS = [1 + (i * 7919) % 40 if i % 4 == 0 else 1 + (i * 31) % 12 for i in range(200)]


def epoch(loader):
    return [(item.indices.tolist(), item.batch["attention_mask"]) for item in loader]


def padding(batches):
    return sum(int(mask.numel() - mask.sum()) for _, mask in batches)


def test_every_example_once_per_epoch_in_batches_of_similar_length():
    data = Lengths(LENGTHS)
    grouped = make_dataloader(data, 8, collate_fn=pad, seed=0, group_by_length=True)
    shuffled = make_dataloader(data, 8, collate_fn=pad, seed=0)
    assert len(grouped) == len(shuffled) == 25
    first, second = epoch(grouped), epoch(grouped)
    for batches in (first, second):
        assert sorted(i for indices, _ in batches for i in indices) == list(range(200))
        assert all(len(indices) == 8 for indices, _ in batches)
    assert [b[0] for b in first] != [b[0] for b in second]  # a new grouping each epoch
    # within a mega-batch the examples are sorted, so a batch spans a narrow band of lengths
    assert padding(first) < padding(epoch(shuffled)) / 4
    # deterministic by seed, different across seeds
    assert [b[0] for b in epoch(make_dataloader(data, 8, collate_fn=pad, seed=0, group_by_length=True))] == [
        b[0] for b in first
    ]
    assert [b[0] for b in epoch(make_dataloader(data, 8, collate_fn=pad, seed=1, group_by_length=True))] != [
        b[0] for b in first
    ]


def test_batch_order_is_shuffled_not_longest_first():
    """transformers' grouping leaves each mega-batch's batches longest first; a short stage
    (a low rung) would then train only on the longest examples."""
    data = Lengths(LENGTHS)
    firsts = []
    for seed in range(6):
        batches = epoch(make_dataloader(data, 8, collate_fn=pad, seed=seed, group_by_length=True))
        longest = [mask.shape[1] for _, mask in batches]
        assert longest != sorted(longest, reverse=True)
        firsts.append(longest[0])
    assert min(firsts) < max(LENGTHS) / 2


def test_examples_without_a_length_are_refused_with_the_field():
    data = torch.utils.data.TensorDataset(torch.zeros(10, 3))
    with pytest.raises(AutoKDError, match="train.group_by_length: the examples have no input_ids"):
        make_dataloader(data, 4, group_by_length=True)


def test_the_train_function_groups_its_batches_when_the_config_says_so():
    from transformers import BertModel

    teacher = seeded(lambda: BertModel(copy.deepcopy(bert_config(attn_implementation="eager"))), 0).eval()
    data = Lengths([min(n, 16) for n in LENGTHS])
    seen = {}
    for group in (False, True):
        config = autokd.load_config(
            {
                "model": {"name": "tiny", "framework": "pytorch"},
                "auto_distillation": {
                    "search": {"search_space": {"hidden_size": [8]}, "metrics": ["loss"]},
                    "regular_distillation": {
                        "layer_mappings_for_knowledge_transfer": [["", "last_hidden_state", "", "last_hidden_state"]],
                        "loss_types": ["MSE"],
                        "train_steps": [2],
                    },
                },
                "train": {"batch_size": 8, "group_by_length": group},
            }
        )
        assert config.train.group_by_length is group
        train_func = FlashDistillationTrainFunc(config, teacher, data, data_collator=pad, seed=0, show_progress=False)
        batches = train_func._batches()
        seen[group] = [(None, next(batches).batch["attention_mask"]) for _ in range(25)]
    assert padding(seen[True]) < padding(seen[False]) / 4
