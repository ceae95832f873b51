"""The tiny BERT of every framework's tests: hidden 32, 2 layers of 2 heads, an
intermediate size of 37 (a prime, so no dimension is mistaken for another), a vocabulary
of 99. Each suite builds its framework's model from these options with its own overrides
(``num_labels``, dropout, position embeddings)."""

from __future__ import annotations

VOCAB = 99

#: ``transformers.BertConfig`` keyword arguments of the tiny BERT.
TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "vocab_size": VOCAB,
    "max_position_embeddings": 32,
}


def tiny_bert_options(**overrides) -> dict:
    """The tiny BERT's ``BertConfig`` options with ``overrides``."""
    return {**TINY_BERT, **overrides}
