"""Tiny models and data for the autokd-torch tests: everything is built from configs (there
is no model hub) and small enough that the whole suite runs on 2 CPU cores in minutes."""

from __future__ import annotations

import copy

import pytest
import torch
from autokd_testing import VOCAB as TINY_VOCAB
from autokd_testing import design_stages, tiny_bert_options

import autokd

# Tiny models run as fast on one thread, and two OpenMP threads spin-wait for each other
# when the 2 cores are shared with other jobs (measured: 15 ms instead of 0.2 ms for a
# 64x128 linear layer under load).
torch.set_num_threads(1)

VOCAB = TINY_VOCAB
SEQ_LEN = 8
NUM_LABELS = 3


def bert_config(**overrides):
    from transformers import BertConfig

    options = tiny_bert_options(num_labels=NUM_LABELS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    options.update(overrides)
    return BertConfig(**options)


def mobilebert_config(**overrides):
    from transformers import MobileBertConfig

    options = dict(
        hidden_size=32,
        embedding_size=16,
        intra_bottleneck_size=16,
        true_hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        num_feedforward_networks=1,
        vocab_size=VOCAB,
        max_position_embeddings=32,
        num_labels=NUM_LABELS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    options.update(overrides)
    return MobileBertConfig(**options)


def seeded(fn, seed=0):
    """Build something with the global RNG forked and seeded, leaving it untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def tiny_bert(cls_name="BertForSequenceClassification", seed=0, **overrides):
    import transformers

    cls = getattr(transformers, cls_name)
    model = seeded(lambda: cls(copy.deepcopy(bert_config(**overrides))), seed)
    return model.eval()


class TokenDataset(torch.utils.data.Dataset):
    """Random token sequences whose label is a function of the tokens (so it is learnable):
    the count of tokens below VOCAB/2, bucketed into NUM_LABELS classes."""

    def __init__(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(1, VOCAB, (n, SEQ_LEN), generator=g)
        low = (self.input_ids < VOCAB // 2).sum(1)
        self.labels = torch.bucketize(low, torch.tensor([3, 5]))

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, i):
        return {
            "input_ids": self.input_ids[i],
            "attention_mask": torch.ones(SEQ_LEN, dtype=torch.long),
            "labels": self.labels[i],
        }


@pytest.fixture
def token_data():
    return TokenDataset(48, seed=1), TokenDataset(24, seed=2)


@pytest.fixture
def bert_teacher():
    return tiny_bert(seed=0)


@pytest.fixture
def test_plugin():
    """Register a plugin object for one test and forget it afterwards."""
    import autokd.plugins

    names = []

    def add(plugin, name):
        autokd.plugins.add_plugin(plugin, name)
        names.append(name)

    yield add
    for name in names:
        autokd.plugins.remove_plugin(name)


class ThirdPartyLossPlugin:
    """A third-party plugin that adds the loss ``ThirdPartyCosine`` (1 - cosine similarity
    over the last dimension, averaged)."""

    @autokd.hookimpl
    def register_losses(self, register):
        def cosine_distance(student, teacher):
            return (1 - torch.nn.functional.cosine_similarity(student, teacher, dim=-1)).mean()

        register("ThirdPartyCosine", cosine_distance, "pytorch")


class MaskedLMDataset(torch.utils.data.Dataset):
    """Pre-training examples: two masked tokens per sequence and a next-sentence label."""

    MASK = 3

    def __init__(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.tokens = torch.randint(5, VOCAB, (n, SEQ_LEN), generator=g)
        self.positions = torch.stack([torch.randperm(SEQ_LEN, generator=g)[:2] for _ in range(n)])
        self.next_sentence = torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, i):
        input_ids = self.tokens[i].clone()
        labels = torch.full((SEQ_LEN,), -100)
        labels[self.positions[i]] = self.tokens[i][self.positions[i]]
        input_ids[self.positions[i]] = self.MASK
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones(SEQ_LEN, dtype=torch.long),
            "token_type_ids": torch.zeros(SEQ_LEN, dtype=torch.long),
            "labels": labels,
            "next_sentence_label": self.next_sentence[i],
        }


def seed_style_config(num_layers=2, flash_steps=2, regular_steps=2, **search):
    """The design's Trainer.autodistillation_config for MobileBERT from BERT, at num_layers."""
    return {
        "search": {
            "search_space": {"hidden_size": [24, 32], "intermediate_size": [16, 24]},
            "search_algorithm": "grid",
            "metrics": ["eval_loss"],
            "max_trials": 3,
            "seed": 42,
            **search,
        },
        "flash_distillation": design_stages(num_layers, flash_steps, regular_steps),
    }


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s")
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
