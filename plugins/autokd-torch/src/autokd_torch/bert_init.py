"""The BERT plan of :func:`initialize_from_teacher`: which student parameter comes from
which teacher parameter (embeddings, layers, heads, feed-forward neurons, pooler, task
heads), computed in full before any is written, with the report of what was and was not
initialised. The maths of each block is the core's (:mod:`autokd.init_basis`, numpy);
this module maps torch modules onto it. The rules and their measurements:
docs/init_from_teacher.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from autokd.init_basis import (
    SCORE_KINDS,
    WIDTH_KINDS,
    check_choice,
    init_attention,
    init_feed_forward,
    select_teacher_layers,
)

from .init_plan import Plan, PlanProjector, TeacherTensors, strict_message
from .init_report import InitFromTeacherError, InitReport, LayerInit, WidthBasis
from .teacher_basis import bert_base, describe, prefix_of, width_basis

__all__ = ["initialize_from_teacher"]


def initialize_from_teacher(
    student: nn.Module,
    teacher: nn.Module,
    *,
    layers: str | Sequence[int] = "uniform",
    width: str = "pca_embeddings",
    data: Any = None,
    heads: str = "weight_norm",
    neurons: str = "weight_norm",
    strict: bool = True,
) -> InitReport:
    """Initialise ``student`` in place from ``teacher``'s weights; see the module docstring for
    the rules (docs/init_from_teacher.md). Returns an :class:`InitReport` (``.to_dict()`` for the trial record).

    ``layers``: ``'uniform'`` or one teacher layer index per student layer. ``width``: the basis
    kind (:data:`WIDTH_KINDS`); ``data``: teacher inputs for the hidden-state kinds (see
    :func:`width_basis`). ``heads`` / ``neurons``: the importance score (``'weight_norm'`` or
    ``'first'``).

    ``strict=True`` raises :class:`InitFromTeacherError` (before changing anything) if any
    parameter of the student cannot be initialised; ``strict=False`` initialises what can be and
    lists the rest in ``report.not_initialised``.
    """
    check_choice("width", width, WIDTH_KINDS)
    check_choice("heads", heads, SCORE_KINDS)
    check_choice("neurons", neurons, SCORE_KINDS)
    if not isinstance(strict, bool):
        raise InitFromTeacherError(f"strict={strict!r}: must be True or False")
    student_base, teacher_base = bert_base(student), bert_base(teacher)
    plan = Plan(student)
    notes: list[str] = []
    if student_base is None or teacher_base is None:
        report = _plan_other_family(plan, student, teacher, width=width, data=data, notes=notes)
    else:
        report = _plan_bert(
            plan,
            student,
            teacher,
            student_base,
            teacher_base,
            layers=layers,
            width=width,
            data=data,
            heads=heads,
            neurons=neurons,
            notes=notes,
        )
    if strict and plan.missing:
        raise InitFromTeacherError(strict_message(plan, student, teacher))
    with torch.no_grad():
        plan.apply()
    return report


def _plan_bert(
    plan: Plan, student, teacher, student_base, teacher_base, *, layers, width, data, heads, neurons, notes
) -> InitReport:
    s_cfg, t_cfg = student_base.config, teacher_base.config
    s_prefix, t_prefix = prefix_of(student, student_base), prefix_of(teacher, teacher_base)
    h_s, h_t = int(s_cfg.hidden_size), int(t_cfg.hidden_size)
    n_s, n_t = len(student_base.encoder.layer), len(teacher_base.encoder.layer)
    teacher_layers = select_teacher_layers(n_s, n_t, layers)
    layer_rule = layers if isinstance(layers, str) else "explicit"
    repeated = sorted({i for i in teacher_layers if teacher_layers.count(i) > 1})
    if repeated:
        notes.append(f"teacher layers {repeated} are copied into more than one student layer")
    for key in ("hidden_act", "layer_norm_eps"):
        if getattr(s_cfg, key, None) != getattr(t_cfg, key, None):
            notes.append(
                f"config.{key} differs (student {getattr(s_cfg, key, None)!r}, teacher "
                f"{getattr(t_cfg, key, None)!r}): weights copied, the function differs"
            )
    if data is not None and width not in ("pca_hidden", "select_hidden"):
        notes.append(f"data is not used by width={width!r}")

    def report(basis: WidthBasis | None, layer_inits, head_dim: str) -> InitReport:
        return InitReport(
            student=describe(student),
            teacher=describe(teacher),
            layer_rule=layer_rule if basis is not None else "none",
            teacher_layers=tuple(teacher_layers) if basis is not None else (),
            width=basis.kind if basis is not None else "none",
            teacher_hidden=h_t,
            student_hidden=h_s,
            basis_source=basis.source if basis is not None else "",
            explained_variance=basis.explained_variance if basis is not None else None,
            embedding_explained_variance=basis.embedding_explained_variance if basis is not None else None,
            layer_norm_scale=basis.layer_norm_scale if basis is not None else None,
            head_score=heads,
            neuron_score=neurons,
            head_dim=head_dim,
            layers=tuple(layer_inits),
            initialised=tuple(plan.sources.items()),
            not_initialised=tuple(plan.missing.items()),
            notes=tuple(notes),
            basis=basis.projection if basis is not None else None,
        )

    if h_s > h_t:
        plan.cover_rest(
            f"the student's hidden_size {h_s} exceeds the teacher's {h_t}: a student wider than its "
            f"teacher cannot be initialised from it (choose hidden_size <= {h_t})"
        )
        return report(None, [], "none")

    basis = width_basis(teacher, h_s, width, data)
    mapper = PlanProjector(basis)
    teacher_tensor = TeacherTensors(teacher)
    s_vocab, t_vocab = (
        int(student_base.embeddings.word_embeddings.num_embeddings),
        int(teacher_base.embeddings.word_embeddings.num_embeddings),
    )
    vocab_reason = (
        None
        if s_vocab == t_vocab
        else f"the vocabularies differ (student {s_vocab} tokens, teacher {t_vocab}): token ids mean "
        f"different things; build the student with the teacher's tokenizer and vocab_size={t_vocab}"
    )

    # embeddings
    s_emb, t_emb = f"{s_prefix}embeddings.", f"{t_prefix}embeddings."
    if vocab_reason:
        plan.cannot(s_emb + "word_embeddings.weight", vocab_reason)
    else:
        plan.set(
            s_emb + "word_embeddings.weight",
            mapper.reads(teacher_tensor(t_emb + "word_embeddings.weight")),
            mapper.describe(t_emb + "word_embeddings.weight", right=True),
        )
    for table in ("position_embeddings", "token_type_embeddings"):
        _plan_table_rows(plan, mapper, teacher_tensor, s_emb + table + ".weight", t_emb + table + ".weight")
    _plan_layer_norm(plan, mapper, teacher_tensor, s_emb + "LayerNorm", t_emb + "LayerNorm")

    # encoder layers
    layer_inits = []
    head_dims: set[str] = set()
    for i, t in enumerate(teacher_layers):
        s_layer, t_layer = f"{s_prefix}encoder.layer.{i}.", f"{t_prefix}encoder.layer.{t}."
        kept_heads, scores, head_dim = _plan_attention(
            plan,
            mapper,
            teacher_tensor,
            s_layer,
            t_layer,
            student_base.encoder.layer[i].attention.self,
            teacher_base.encoder.layer[t].attention.self,
            heads,
        )
        head_dims.add(head_dim)
        _plan_layer_norm(
            plan, mapper, teacher_tensor, s_layer + "attention.output.LayerNorm", t_layer + "attention.output.LayerNorm"
        )
        kept_neurons = _plan_feed_forward(plan, mapper, teacher_tensor, s_layer, t_layer, neurons)
        _plan_layer_norm(plan, mapper, teacher_tensor, s_layer + "output.LayerNorm", t_layer + "output.LayerNorm")
        layer_inits.append(LayerInit(i, t, tuple(kept_heads), tuple(scores), tuple(kept_neurons)))
        dropped = sum(1 for h in range(len(scores)) if h not in kept_heads)
        if dropped:
            notes.append(f"student layer {i}: {dropped} of teacher layer {t}'s {len(scores)} heads dropped")

    # pooler
    if getattr(student_base, "pooler", None) is not None:
        s_pool, t_pool = f"{s_prefix}pooler.dense", f"{t_prefix}pooler.dense"
        if getattr(teacher_base, "pooler", None) is None:
            for leaf in ("weight", "bias"):
                plan.cannot(f"{s_pool}.{leaf}", f"the teacher ({type(teacher).__name__}) has no pooler")
        else:
            plan.set(
                s_pool + ".weight",
                mapper.both(teacher_tensor(t_pool + ".weight")),
                mapper.describe(t_pool + ".weight", left=True, right=True),
            )
            plan.set(
                s_pool + ".bias",
                mapper.writes(teacher_tensor(t_pool + ".bias")),
                mapper.describe(t_pool + ".bias", left=True),
            )

    # task heads outside the base model, found by the same name in the teacher
    _plan_task_heads(plan, mapper, teacher_tensor, student, teacher, s_prefix, vocab_reason)

    plan.cover_rest("no rule maps this parameter from the teacher (BERT cross-attention or a custom module)")
    return report(basis, layer_inits, " / ".join(sorted(head_dims)))


def _plan_table_rows(
    plan: Plan, mapper: PlanProjector, teacher_tensor: TeacherTensors, s_name: str, t_name: str
) -> None:
    """A position or token-type table: the student's rows from the teacher's, projected."""
    teacher_rows = teacher_tensor(t_name)
    value = plan.current(s_name)
    n = min(value.shape[0], teacher_rows.shape[0])
    value[:n] = mapper.reads(teacher_rows[:n])
    plan.set(s_name, value, mapper.describe(t_name, right=True) + (f" (rows 0..{n - 1})" if n < value.shape[0] else ""))
    if n < value.shape[0]:
        plan.cannot(f"{s_name}[{n}:{value.shape[0]}]", f"the teacher's table has only {n} rows")


def _plan_layer_norm(
    plan: Plan, mapper: PlanProjector, teacher_tensor: TeacherTensors, s_name: str, t_name: str
) -> None:
    gamma, beta = mapper.layer_norm(teacher_tensor(t_name + ".weight"), teacher_tensor(t_name + ".bias"))
    plan.set(s_name + ".weight", gamma, mapper.describe(t_name + ".weight", layer_norm=True))
    plan.set(s_name + ".bias", beta, mapper.describe(t_name + ".bias", left=True))


def _top_left_singular(matrix: np.ndarray, k: int) -> np.ndarray:
    """torch's SVD (its singular vectors' signs are the ones students were initialised with)."""
    return torch.linalg.svd(torch.from_numpy(matrix), full_matrices=False)[0][:, :k].numpy()


def _plan_attention(
    plan, mapper, teacher_tensor, s_layer, t_layer, s_attention, t_attention, score_kind
) -> tuple[list, list, str]:
    """One attention block by the core's rule (:func:`autokd.init_basis.init_attention`)."""
    n_s, d_s = int(s_attention.num_attention_heads), int(s_attention.attention_head_size)
    n_t, d_t = int(t_attention.num_attention_heads), int(t_attention.attention_head_size)
    s_pre, t_pre = s_layer + "attention.", t_layer + "attention."
    s_self, t_self = s_pre + "self.", t_pre + "self."
    s_out, t_out = s_pre + "output.dense.", t_pre + "output.dense."
    names = [f"{s_self}{k}.{leaf}" for k in ("query", "key", "value") for leaf in ("weight", "bias")]
    new = {name: plan.current(name) for name in [*names, s_out + "weight"]}
    sources, scores = init_attention(
        new, teacher_tensor, s_pre, t_pre, n_s, n_t, mapper, score_kind, left_singular=_top_left_singular
    )
    kept = [t for t in sources if t is not None]
    kept_text = "all heads" if len(kept) == n_t else f"heads {kept} of {n_t}"
    if n_s > n_t:
        kept_text += f", {n_s - n_t} new heads with zero keys and output"
    for k in ("query", "key", "value"):
        plan.set(
            f"{s_self}{k}.weight",
            new[f"{s_self}{k}.weight"],
            mapper.describe(f"{t_self}{k}.weight", right=True) + f" ({kept_text})",
        )
        plan.set(f"{s_self}{k}.bias", new[f"{s_self}{k}.bias"], f"{t_self}{k}.bias ({kept_text})")
    plan.set(s_out + "weight", new[s_out + "weight"], mapper.describe(t_out + "weight", left=True) + f" ({kept_text})")
    plan.set(s_out + "bias", new[s_out + "bias"], mapper.describe(t_out + "bias", left=True))
    head_dim = "sliced" if d_s == d_t else (f"projected {d_t} -> {d_s}" if d_s < d_t else f"padded {d_t} -> {d_s}")
    return sources, scores, head_dim


def _plan_feed_forward(plan, mapper, teacher_tensor, s_layer, t_layer, score_kind) -> list[int | None]:
    """One feed-forward block by the core's rule (:func:`autokd.init_basis.init_feed_forward`)."""
    s_in, t_in = s_layer + "intermediate.dense.", t_layer + "intermediate.dense."
    s_out, t_out = s_layer + "output.dense.", t_layer + "output.dense."
    new = {name: plan.current(name) for name in (s_in + "weight", s_in + "bias", s_out + "weight")}
    sources = init_feed_forward(new, teacher_tensor, s_layer, t_layer, mapper, score_kind)
    n_s, n_t = len(sources), int(teacher_tensor(t_in + "weight").shape[0])
    k = sum(1 for t in sources if t is not None)
    kept_text = f"neurons: top {k} of {n_t} by {score_kind}" if k < n_t else "all neurons"
    if n_s > n_t:
        kept_text += f", {n_s - n_t} new ones with zero output"
    plan.set(s_in + "weight", new[s_in + "weight"], mapper.describe(t_in + "weight", right=True) + f" ({kept_text})")
    plan.set(s_in + "bias", new[s_in + "bias"], f"{t_in}bias ({kept_text})")
    plan.set(s_out + "weight", new[s_out + "weight"], mapper.describe(t_out + "weight", left=True) + f" ({kept_text})")
    plan.set(s_out + "bias", new[s_out + "bias"], mapper.describe(t_out + "bias", left=True))
    return sources


# Task heads: module name -> how its weight relates to the hidden space.
_TASK_HEADS = {
    "cls.predictions.transform.dense": "hidden_to_hidden",
    "cls.predictions.transform.LayerNorm": "layer_norm",
    "cls.predictions.decoder": "vocab_out",
    "cls.predictions": "vocab_bias",
    "cls.seq_relationship": "reads_hidden",
    "classifier": "reads_hidden",
    "qa_outputs": "reads_hidden",
}


def _plan_task_heads(plan, mapper, teacher_tensor, student, teacher, s_prefix, vocab_reason) -> None:
    head_names = [n for n in plan.params if not (s_prefix and n.startswith(s_prefix))] if s_prefix else []
    teacher_modules = dict(teacher.named_modules())
    for name in head_names:
        module_name, _, leaf = name.rpartition(".")
        kind = _TASK_HEADS.get(module_name)
        if kind is None:
            continue  # covered by cover_rest
        if module_name not in teacher_modules or not hasattr(teacher_modules[module_name], leaf):
            plan.cannot(name, f"the teacher ({type(teacher).__name__}) has no '{module_name}' to copy from")
            continue
        if kind == "layer_norm":
            if leaf == "weight":
                _plan_layer_norm(plan, mapper, teacher_tensor, module_name, module_name)
            continue
        source = teacher_tensor(name)
        if kind in ("vocab_out", "vocab_bias") and vocab_reason:
            plan.cannot(name, vocab_reason)
        elif kind == "hidden_to_hidden":
            value = mapper.both(source) if leaf == "weight" else mapper.writes(source)
            plan.set(name, value, mapper.describe(name, left=True, right=leaf == "weight"))
        elif leaf == "weight":  # reads hidden states: W P
            if source.shape[0] != plan.params[name].shape[0]:
                plan.cannot(
                    name,
                    f"'{module_name}' has {plan.params[name].shape[0]} outputs in the student and "
                    f"{source.shape[0]} in the teacher",
                )
            else:
                plan.set(name, mapper.reads(source), mapper.describe(name, right=True))
        else:  # the bias of a head that reads hidden states, or the vocabulary bias: copied
            if source.shape != plan.params[name].shape:
                plan.cannot(
                    name,
                    f"'{name}' has shape {tuple(plan.params[name].shape)} in the student and {tuple(source.shape)} in the teacher",
                )
            else:
                plan.set(name, source.copy(), name)


def _plan_other_family(plan: Plan, student, teacher, *, width, data, notes) -> InitReport:
    """Students or teachers that are not BERT-like: at most the input word embeddings, by the
    basis, when the vocabularies agree; everything else is listed."""
    family_reason = (
        f"initialize_from_teacher maps BERT-like encoders only (config.model_type 'bert': BertModel, "
        f"BertFor*, MiniLM) layer by layer; the student is {describe(student)} and the teacher "
        f"{describe(teacher)}"
    )
    basis = None
    s_embedding = student.get_input_embeddings() if hasattr(student, "get_input_embeddings") else None
    t_embedding = teacher.get_input_embeddings() if hasattr(teacher, "get_input_embeddings") else None
    s_name = next(
        (
            n
            for n, p in plan.params.items()
            if s_embedding is not None and isinstance(s_embedding, nn.Embedding) and p is s_embedding.weight
        ),
        None,
    )
    if s_name is not None and isinstance(t_embedding, nn.Embedding):
        s_vocab, s_dim = s_embedding.weight.shape
        t_vocab, t_dim = t_embedding.weight.shape
        if s_vocab != t_vocab:
            plan.cannot(s_name, f"the vocabularies differ (student {s_vocab} tokens, teacher {t_vocab})")
        elif s_dim > t_dim:
            plan.cannot(s_name, f"the student's embedding size {s_dim} exceeds the teacher's {t_dim}")
        else:
            basis = width_basis(teacher, int(s_dim), width, data)
            mapper = PlanProjector(basis)
            plan.set(
                s_name,
                mapper.reads(t_embedding.weight.detach().to("cpu", torch.float64).numpy()),
                f"teacher input word embeddings{' @ P' if not mapper.identity else ''}",
            )
    plan.cover_rest(family_reason)
    return InitReport(
        student=describe(student),
        teacher=describe(teacher),
        layer_rule="none",
        teacher_layers=(),
        width=basis.kind if basis is not None else "none",
        teacher_hidden=int(getattr(getattr(teacher, "config", None), "hidden_size", 0) or 0),
        student_hidden=int(getattr(getattr(student, "config", None), "hidden_size", 0) or 0),
        basis_source=basis.source if basis is not None else "",
        explained_variance=basis.explained_variance if basis is not None else None,
        embedding_explained_variance=basis.embedding_explained_variance if basis is not None else None,
        layer_norm_scale=None,
        head_score="none",
        neuron_score="none",
        head_dim="none",
        layers=(),
        initialised=tuple(plan.sources.items()),
        not_initialised=tuple(plan.missing.items()),
        notes=tuple(notes),
        basis=None,  # the embedding basis is not the residual stream's: no feature-matcher init
    )
