"""The width basis of :func:`~autokd_torch.init_from_teacher.initialize_from_teacher` for
torch models: the teacher's word embeddings and hidden-state statistics (a forward pass
of the teacher) handed to the core's numpy maths (:mod:`autokd.init_basis`: PCA keeping
the mean direction, coordinate selection, the LayerNorm scale, the feature-matcher
init), and the model helpers the BERT plan shares (docs/init_from_teacher.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from autokd import AutoKDError
from autokd import init_basis as core
from autokd.init_basis import WIDTH_KINDS, check_choice

from .init_report import HiddenStateGram, InitFromTeacherError, InitReport, WidthBasis

__all__ = [
    "bert_base",
    "core_basis",
    "describe",
    "feature_matcher_init",
    "hidden_state_gram",
    "input_embedding",
    "prefix_of",
    "width_basis",
]


def width_basis(teacher: nn.Module, dim: int, kind: str = "pca_embeddings", data: Any = None) -> WidthBasis:
    """The basis that carries the teacher's hidden space into ``dim`` dimensions.

    ``kind`` is one of ``'pca_embeddings'``, ``'pca_hidden'``, ``'select_hidden'`` or
    ``'slice'`` (docs/init_from_teacher.md). The hidden-state kinds use ``data``: a batch
    of teacher inputs (an ``input_ids`` tensor or a mapping such as a tokenizer's output)
    or an iterable of such batches, or a :class:`HiddenStateGram`; without it, seeded
    random token sequences. ``dim`` equal to the teacher's width gives the identity.
    """
    check_choice("width", kind, WIDTH_KINDS)
    words = input_embedding(teacher, "teacher").weight.detach().to("cpu", torch.float64).numpy()
    teacher_dim = int(words.shape[1])
    core.check_width(dim, teacher_dim)
    gram, source = None, f"teacher word embeddings ({words.shape[0]} rows)"
    if kind in ("pca_hidden", "select_hidden"):
        states = data if isinstance(data, HiddenStateGram) else hidden_state_gram(teacher, data)
        gram = states.gram.numpy()
        source = (
            f"teacher hidden states on {states.source} ({states.n_states} layer outputs x {states.n_tokens} tokens)"
        )
    basis = core.width_basis(words, dim, kind, gram)
    return WidthBasis(
        projection=torch.from_numpy(basis.projection).to(torch.float32),
        kind=basis.kind,
        source=source,
        explained_variance=basis.explained_variance,
        embedding_explained_variance=core.energy_fraction(words.T @ words, basis.projection),
        layer_norm_scale=basis.layer_norm_scale,
    )


def core_basis(basis: WidthBasis) -> core.WidthBasis:
    """The core's basis of ``basis`` as the torch plan applies it: the float32 projection it
    reports, in float64 (so the weights follow the reported basis exactly)."""
    projection = basis.projection.to(torch.float64).numpy()
    return core.WidthBasis(projection, basis.kind, basis.explained_variance, basis.layer_norm_scale)


def feature_matcher_init(
    basis: InitReport | WidthBasis | torch.Tensor | None, student_dim: int, teacher_dim: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Weight and bias for ``nn.Linear(student_dim, teacher_dim)`` mapping student hidden states
    back to the teacher's width through the initialisation basis: ``weight = P``, ``bias = 0``, so
    ``matcher(P^T x) = P P^T x``, the teacher's ``x`` up to what the basis leaves out
    (:func:`autokd.init_basis.matcher_init`).

    Returns None when the basis does not connect these widths (the features are not hidden
    states of the residual stream, or no basis exists): keep the matcher's own initialisation.
    """
    if isinstance(basis, InitReport):
        projection = basis.basis
    elif isinstance(basis, WidthBasis):
        projection = basis.projection
    else:
        projection = basis
    if projection is not None:
        projection = projection.detach().to("cpu", torch.float32).numpy()
    init = core.matcher_init(projection, student_dim, teacher_dim)
    if init is None:
        return None
    weight, bias = init
    return torch.from_numpy(weight), torch.from_numpy(bias).to(torch.float32)


# --------------------------------------------------------------------------- models and data


def bert_base(model: nn.Module) -> nn.Module | None:
    """The BertModel inside ``model`` (itself, or ``model.bert``), or None for other families."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "bert":
        return None
    base = getattr(model, "base_model", model)
    if all(hasattr(base, a) for a in ("embeddings", "encoder")) and hasattr(base.encoder, "layer"):
        return base
    return None


def prefix_of(model: nn.Module, base: nn.Module) -> str:
    if base is model:
        return ""
    for name, module in model.named_modules():
        if module is base:
            return name + "."
    raise AutoKDError(f"cannot locate the base model inside {type(model).__name__}")  # pragma: no cover


def describe(model: nn.Module) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return f"{type(model).__name__} (model_type {model_type!r})"


def input_embedding(model: nn.Module, role: str) -> nn.Embedding:
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if not isinstance(embedding, nn.Embedding):
        raise InitFromTeacherError(
            f"the {role} {describe(model)} has no input word-embedding table (get_input_embeddings()); "
            f"a width basis needs one"
        )
    return embedding


def _random_token_batches(vocab_size: int) -> list[dict[str, torch.Tensor]]:
    """Stand-in teacher inputs when no data is given: the large-energy coordinates of a BERT
    residual stream are largely input-independent, and uniformly random token ids find them
    (measured on all-MiniLM-L6-v2: the same coordinates as on chatterbot utterances to within
    0.01 of energy kept). Seeded, so the basis is reproducible."""
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(0, vocab_size, (16, 32), generator=generator)} for _ in range(2)]


_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def hidden_state_gram(teacher: nn.Module, data: Any = None) -> HiddenStateGram:
    """The teacher's hidden-state statistics on ``data`` (as :func:`width_basis` takes it;
    None: seeded random token sequences), computed once for reuse as ``data=``."""
    what = "data"
    if data is None:
        vocab_size = int(input_embedding(teacher, "teacher").weight.shape[0])
        data, what = _random_token_batches(vocab_size), "random token sequences, no data given"
    gram, n_states, n_tokens = _hidden_state_gram(teacher, data)
    return HiddenStateGram(gram, n_states, n_tokens, what)


def _hidden_state_gram(teacher: nn.Module, data: Any) -> tuple[torch.Tensor, int, int]:
    """``X^T X`` over every hidden state of the teacher on ``data`` (padding excluded)."""
    device = next(teacher.parameters()).device
    encoder = bert_base(teacher) or teacher  # a BERT's task head is not needed for its hidden states
    gram, n_states, n_tokens = None, 0, 0
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            for batch in _batches(data):
                inputs = {k: v.to(device) for k, v in batch.items() if k in _MODEL_INPUTS and v is not None}
                outputs = encoder(**inputs, output_hidden_states=True)
                states = outputs.hidden_states
                mask = inputs.get("attention_mask")
                keep = (mask if mask is not None else torch.ones(states[0].shape[:2], device=device)).bool()
                rows = torch.cat([s[keep] for s in states]).to("cpu", torch.float64)
                gram = rows.T @ rows if gram is None else gram + rows.T @ rows
                n_states, n_tokens = len(states), n_tokens + int(keep.sum())
    finally:
        teacher.train(was_training)
    if gram is None or n_tokens == 0:
        raise InitFromTeacherError(
            "width='pca_hidden': data= gave no tokens (an empty iterable or an all-zero attention_mask)"
        )
    return gram, n_states, n_tokens


def _batches(data: Any) -> Iterable[Mapping[str, Any]]:
    expected = (
        "data= must be a batch of teacher inputs (an input_ids tensor or a mapping such as a "
        "tokenizer's output) or an iterable of such batches"
    )
    if isinstance(data, torch.Tensor):
        yield {"input_ids": data}
        return
    if isinstance(data, Mapping):
        yield dict(data)
        return
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes)):
        raise InitFromTeacherError(f"{expected}; got {type(data).__name__}")
    for batch in data:
        if isinstance(batch, torch.Tensor):
            yield {"input_ids": batch}
        elif isinstance(batch, Mapping):
            yield dict(batch)
        else:
            raise InitFromTeacherError(f"{expected}; got an iterable of {type(batch).__name__}")
