"""Students with factorised word embeddings (the search space's ``embedding_size``), as a
stock Hugging Face architecture.

The teacher's 30,522-row word embedding is most of a narrow student's parameters (4.4M of
5.3M at hidden 144), so a quarter of the teacher's parameters leaves little width for the
layers. Factorising it (a ``V x E`` table and an ``E -> hidden`` projection, as ALBERT and
MobileBERT do) lets a student keep the teacher's full width: measured in
``benchmarks/minilm_students.py``, 2 of the teacher's layers copied exactly with word
embeddings of rank 48 (5.38M parameters) reached a held-out fidelity of 0.746 where the
best hidden-144 student reached 0.687.

The factorised student is a ``MobileBertModel`` configured to be a BERT with a narrow word
embedding: no bottlenecks, one feed-forward network, no trigram convolution, LayerNorm
(MobileBERT's defaults are otherwise). Its embeddings are then ``LayerNorm(word[ids] @ P +
position + token_type)``, BERT's with the word table factorised, and its layers are BERT's
layers weight for weight. So ``AutoModel.from_pretrained`` and sentence-transformers load
it offline with the teacher's tokenizer, and its parameter count is the real one (the
factorisation is never multiplied out). The table and the projection start from the
rank-``E`` truncated SVD of the (already initialised) BERT student's word embeddings.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger("autokd.minilm")

# MobileBERT with these settings computes BERT's layers (``MobileBertLayer`` without
# bottleneck = attention, residual LayerNorm, FFN, residual LayerNorm)
_BERT_LAYOUT = {
    "trigram_input": False,
    "use_bottleneck": False,
    "use_bottleneck_attention": False,
    "key_query_shared_bottleneck": False,
    "num_feedforward_networks": 1,
    "normalization_type": "layer_norm",
    "classifier_activation": True,
}
_COPIED_CONFIG = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
)


def embedding_size_of(model: nn.Module, default: int | None = None) -> int:
    """The word-embedding width of a BERT or factorised student (its hidden size for BERT)."""
    config = model.config
    if getattr(config, "model_type", None) == "mobilebert":
        return int(config.embedding_size)
    return int(default if default is not None else config.hidden_size)


def factorise(bert: nn.Module, embedding_size: int, token_weights: torch.Tensor | None = None) -> nn.Module:
    """A ``MobileBertModel`` computing ``bert`` (a ``BertModel``) with its word embeddings
    ``W`` replaced by a rank-``embedding_size`` factorisation: the projection ``B`` (no bias)
    is the top right singular vectors of ``diag(sqrt(token_weights)) W`` and the table is
    ``W B^T``, the best rank-``E`` approximation of ``W`` weighted by how often each token
    occurs (plain truncated SVD without weights); every other weight is copied. ``bert``
    with ``embedding_size >= hidden_size`` is returned as it is."""
    from transformers import MobileBertConfig, MobileBertModel

    hidden = bert.config.hidden_size
    if embedding_size >= hidden:
        return bert
    values = {k: getattr(bert.config, k) for k in _COPIED_CONFIG}
    config = MobileBertConfig(**values, embedding_size=embedding_size, **_BERT_LAYOUT)
    attn = getattr(bert.config, "_attn_implementation", None) or "eager"
    model = MobileBertModel(config, add_pooling_layer=bert.pooler is not None)
    model.config._attn_implementation = attn
    state = dict(bert.state_dict())
    words = state.pop("embeddings.word_embeddings.weight")
    w = words.double()
    weights = torch.ones(w.shape[0], dtype=w.dtype) if token_weights is None else token_weights.double()
    # the right singular vectors of diag(sqrt(weights)) W are the eigenvectors of its
    # hidden x hidden Gram matrix: a 384 x 384 eigenproblem instead of a 30,522-row SVD
    eigenvalues, eigenvectors = torch.linalg.eigh((w * weights.unsqueeze(1)).T @ w)
    order = eigenvalues.argsort(descending=True)
    basis = eigenvectors[:, order[:embedding_size]].T  # (E, hidden), orthonormal rows
    energy = float(eigenvalues[order[:embedding_size]].sum() / eigenvalues.sum())
    state["embeddings.word_embeddings.weight"] = (w @ basis.T).to(words.dtype)
    state["embeddings.embedding_transformation.weight"] = basis.T.contiguous().to(words.dtype)
    state["embeddings.embedding_transformation.bias"] = torch.zeros(hidden, dtype=words.dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # position_ids is a non-persistent buffer in both; anything else must match by name
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"factorised student: BERT weights do not map onto MobileBERT: {missing=} {unexpected=}")
    log.info("word embeddings factorised at rank %d (%.3f of their weighted energy)", embedding_size, energy)
    model.autokd_factorisation = {"embedding_size": embedding_size, "weighted_energy": round(energy, 4)}
    if hasattr(bert, "autokd_init_report"):  # the width basis the feature matchers start from
        model.autokd_init_report = bert.autokd_init_report
    return model
