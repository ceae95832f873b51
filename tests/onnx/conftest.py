"""Shared fixtures of the autokd-onnx tests: a fresh plugin registry per test, one thread."""

from __future__ import annotations

import pytest
import torch
from autokd_testing import tiny_bert_options

from autokd import plugins

torch.set_num_threads(1)  # tiny models; two threads spin-wait on the shared 2 cores


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    for var in ("AUTOKD_DISABLE_PLUGINS", "AUTOKD_LOAD_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    plugins.reset()
    yield
    plugins._extra_plugins.clear()
    plugins.reset()


def tiny_bert(hidden_size=32, seed=0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(**tiny_bert_options(hidden_size=hidden_size))
    return BertModel(config).eval()


def token_batch(rows=4, seq=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 99, (rows, seq), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, seq // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask}
