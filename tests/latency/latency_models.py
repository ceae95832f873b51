"""Tiny models of the autokd-latency tests, and their FLOPs worked out by hand."""

from __future__ import annotations

from autokd_testing import tiny_bert_options


def bert_config(**overrides):
    """The tiny BERT of these tests (eager attention unless overridden)."""
    from transformers import BertConfig

    options = tiny_bert_options(max_position_embeddings=64)
    options.update(overrides)
    return BertConfig(**options)


def bert_forward_flops(batch, seq, hidden, intermediate, layers, pooler=True):
    """Matrix-product FLOPs of BertModel's forward, by hand (a multiply-add is 2 FLOPs):
    per layer Q, K, V and the attention output projection (4 of [S,H]x[H,H]), the scores
    QK^T and their product with V (2 of [S,H]x[H,S] summed over heads), and the two
    feed-forward products ([S,H]x[H,I] and [S,I]x[I,H]); then the pooler ([H]x[H,H])."""
    per_layer = (
        4 * 2 * batch * seq * hidden * hidden
        + 2 * 2 * batch * seq * seq * hidden
        + 2 * 2 * batch * seq * hidden * intermediate
    )
    return layers * per_layer + (2 * batch * hidden * hidden if pooler else 0)
