"""Start a student transformer from its teacher's weights instead of random numbers (issue #9).

A student built from a config starts random and, within a flash-distillation budget of a few
hundred steps, never catches up with the teacher; one initialised from the teacher starts close
to it. :func:`initialize_from_teacher` maps a BERT-like teacher (``config.model_type == 'bert'``:
``BertModel``, ``BertFor*``, MiniLM) onto a smaller BERT-like student, in place:

Depth
    Student layer ``i`` is a copy of teacher layer ``teacher_layers[i]``. ``layers='uniform'``
    takes evenly spaced layers ending with the teacher's last one,
    ``teacher_layers[i] = ceil((i + 1) * L_t / L_s) - 1`` (6 -> 3 layers: ``[1, 3, 5]``; 12 -> 6:
    ``[1, 3, 5, 7, 9, 11]``): every other layer as DistilBERT did, keeping the top layer because
    it writes the representation that the student's output is distilled against. A student
    deeper than its teacher repeats layers (2 -> 3: ``[0, 1, 1]``, noted in the report). An
    explicit list gives the teacher layer of every student layer.

Width
    Where the student's hidden size ``h_s`` is smaller than the teacher's ``h_t``, one basis ``P``
    (``h_t x h_s``, orthonormal columns) carries the residual stream: a teacher hidden vector ``x``
    becomes ``P^T x`` in the student. The basis is the same for every layer because the residual
    connections add every layer's output into the same space. Every weight is projected
    consistently (torch ``Linear`` weights are ``out x in``): a weight reading hidden states
    ``W -> W P``, one writing them ``W -> P^T W`` with bias ``b -> P^T b``, an embedding table
    ``E -> E P``, a hidden-to-hidden weight ``P^T W P``.

    ``width='pca_embeddings'`` takes the principal directions of the teacher's word embeddings;
    ``'pca_hidden'`` those of the teacher's hidden states (every layer's output, padding
    excluded) on ``data``; ``'select_hidden'`` keeps the ``h_s`` coordinates with the most
    energy in those hidden states (a coordinate selection, as in weight subcloning, Samragh et
    al. 2023, which leaves LayerNorm's elementwise scale exact); ``'slice'`` keeps the first
    ``h_s`` coordinates. Without ``data`` the two hidden-state kinds run the teacher on seeded
    random token sequences (said so in the report's ``basis_source``). Principal directions are
    those of the uncentred second moment ``X^T X`` (the mean vector is part of what the student
    must carry), and the reported *explained variance* is the fraction of that energy the basis
    keeps, ``||X P||^2 / ||X||^2``; so ``||X - X P P^T||^2 = (1 - explained) ||X||^2``.

    Which basis is best was measured with all-MiniLM-L6-v2 as the teacher
    (``benchmarks/init_gain.py``): before any training, a hidden-128 student built from
    hidden-state statistics is far closer to the teacher than one built from the word embeddings,
    whose principal directions miss the few large-energy coordinates of the residual stream;
    after 300 distillation steps (batch 32) the mean cosine to the teacher on held-out text is
    0.48 from random, 0.64 with ``'pca_embeddings'`` and 0.66 with ``'pca_hidden'`` on eight
    training batches (hidden-192, 4 layers: 0.50, 0.68, 0.72).

    LayerNorm does not commute with a projection; the approximation used: (1) the PCA basis
    contains the direction ``u = 1/sqrt(h_t)`` and is rotated (a Householder reflection) so that
    ``P^T u = 1/sqrt(h_s)``; the student's mean subtraction then removes exactly the projection
    of the teacher's. (2) ``gamma -> s * diag(P^T diag(gamma) P)`` (the diagonal of the
    projected scale), ``beta -> P^T beta``. (3) ``s = sqrt(h_t / h_s * k)``, where ``k`` is the
    fraction of the mean-centred energy of the basis data that ``P`` keeps, corrects the
    standard deviation, which the student takes over ``h_s`` instead of ``h_t`` coordinates
    (``s = 1`` for the identity; about ``sqrt(h_t / h_s)`` for a good PCA basis; about 1 for a
    slice of evenly spread coordinates). Elementwise activations (the pooler's tanh, the LM
    head's GELU) are likewise applied in the projected space. Equal widths use the identity, so
    a student of the teacher's exact shape reproduces it.

Heads
    The student keeps the teacher heads with the largest importance: ``heads='weight_norm'``
    scores head ``h`` by the Frobenius norm of its weights ``[W_q,h; W_k,h; W_v,h; W_o,h^T]``;
    ``'first'`` keeps heads in index order. Kept heads stay in the teacher's order; their q/k/v
    rows and output-dense columns are sliced. When the student's head size ``d_s`` differs from
    the teacher's ``d_t``: if smaller, each kept head is projected onto the top ``d_s`` left
    singular vectors of its (projected) ``[W_q, b_q, W_k, b_k]`` for queries and keys and of
    ``[W_v, b_v]`` for values and output, and its queries are scaled by ``sqrt(d_s / d_t)`` so
    that ``q.k / sqrt(d_s)`` keeps the teacher's logits; if larger, the teacher head fills the
    first ``d_t`` dimensions and the rest start at zero keys and zero output columns (queries
    and values keep the student's random values, so they learn: nothing is left dead). A student
    with more heads than the teacher gets the extra heads the same way: random queries and
    values, zero keys and zero output columns, which leaves the function unchanged.

Feed-forward neurons
    ``neurons='weight_norm'`` keeps the neurons ``j`` with the largest norm of their weights
    ``[W_in[j, :], W_out[:, j]]``; ``'first'`` keeps them in index order. Extra student neurons
    (a wider feed-forward block than the teacher's) keep random input rows and get zero output
    columns.

What cannot be initialised, say a different vocabulary (token ids mean different things), a
head the teacher does not have, a student of another family (MobileBERT), is never skipped in
silence: ``strict=True`` raises :class:`InitFromTeacherError` naming what can and cannot be
initialised before touching the student; ``strict=False`` initialises what can be and lists the
rest, with the reason, in :attr:`InitReport.not_initialised`.

:func:`feature_matcher_init` gives the feature matchers of intermediate-layer distillation
(``nn.Linear`` from the student's width back to the teacher's) the same basis, ``P``, so they
start as the inverse of the projection instead of random (issue #9, item 2).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autokd import AutoKDError

__all__ = [
    "HEAD_SCORES",
    "NEURON_SCORES",
    "WIDTH_KINDS",
    "HiddenStateGram",
    "InitFromTeacherError",
    "InitReport",
    "LayerInit",
    "WidthBasis",
    "feature_matcher_init",
    "hidden_state_gram",
    "initialize_from_teacher",
    "select_teacher_layers",
    "width_basis",
]

WIDTH_KINDS = ("pca_embeddings", "pca_hidden", "select_hidden", "slice")
HEAD_SCORES = ("weight_norm", "first")
NEURON_SCORES = ("weight_norm", "first")


class InitFromTeacherError(AutoKDError, ValueError):
    """The student cannot be (fully) initialised from the teacher, or an argument is invalid;
    the message says what can and cannot be initialised and what to change."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class HiddenStateGram:
    """``X^T X`` over every hidden state of a teacher on some data (padding excluded), from
    :func:`hidden_state_gram`. Pass it as ``data=`` to build many students' hidden-state
    bases from one teacher pass instead of one per student (same teacher only)."""

    gram: torch.Tensor = field(repr=False, compare=False)  # float64, teacher_dim x teacher_dim
    n_states: int  # layer outputs per token (embeddings included)
    n_tokens: int
    source: str = "data"  # what the states were computed on


@dataclass(frozen=True)
class WidthBasis:
    """An orthonormal basis ``projection`` (``teacher_dim x student_dim``) of the teacher's
    hidden space: a teacher hidden vector ``x`` is ``projection.T @ x`` in the student."""

    projection: torch.Tensor = field(repr=False, compare=False)
    kind: str  # 'identity' | 'pca_embeddings' | 'pca_hidden' | 'slice'
    source: str  # what the basis was computed from
    explained_variance: float  # fraction of the basis data's energy kept by the basis
    embedding_explained_variance: float  # the same, of the teacher's word embeddings
    layer_norm_scale: float  # s in gamma -> s * diag(P^T diag(gamma) P)

    @property
    def teacher_dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def student_dim(self) -> int:
        return int(self.projection.shape[1])


@dataclass(frozen=True)
class LayerInit:
    """Where student layer ``student_layer`` came from."""

    student_layer: int
    teacher_layer: int
    teacher_heads: tuple[int | None, ...]  # teacher head of each student head (None: a new head)
    head_scores: tuple[float, ...]  # importance of each teacher head
    teacher_neurons: tuple[int | None, ...]  # teacher neuron of each student neuron

    def to_dict(self) -> dict[str, Any]:
        return {
            "student_layer": self.student_layer,
            "teacher_layer": self.teacher_layer,
            "teacher_heads": list(self.teacher_heads),
            "head_scores": [round(s, 6) for s in self.head_scores],
            "teacher_neurons": list(self.teacher_neurons),
        }


@dataclass(frozen=True)
class InitReport:
    """What :func:`initialize_from_teacher` initialised from what, and what it could not."""

    student: str
    teacher: str
    layer_rule: str  # 'uniform' | 'explicit' | 'none'
    teacher_layers: tuple[int, ...]  # teacher layer of each student layer
    width: str  # basis kind: 'identity' | 'pca_embeddings' | 'pca_hidden' | 'slice' | 'none'
    teacher_hidden: int
    student_hidden: int
    basis_source: str
    explained_variance: float | None
    embedding_explained_variance: float | None
    layer_norm_scale: float | None
    head_score: str
    neuron_score: str
    head_dim: str  # how heads were mapped: 'sliced', 'projected 32 -> 16', 'padded 16 -> 32'
    layers: tuple[LayerInit, ...]
    initialised: tuple[tuple[str, str], ...]  # (student parameter, its source)
    not_initialised: tuple[tuple[str, str], ...]  # (student parameter, why not)
    notes: tuple[str, ...]
    basis: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def complete(self) -> bool:
        """Whether every parameter of the student was initialised from the teacher."""
        return not self.not_initialised

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (the basis itself is left out)."""
        missing: dict[str, list[str]] = {}
        for name, reason in self.not_initialised:
            missing.setdefault(reason, []).append(name)

        def _float(value: float | None) -> float | None:
            return None if value is None else round(float(value), 6)

        return {
            "student": self.student,
            "teacher": self.teacher,
            "layers": {"rule": self.layer_rule, "teacher_layers": list(self.teacher_layers)},
            "width": {
                "kind": self.width,
                "teacher_hidden": self.teacher_hidden,
                "student_hidden": self.student_hidden,
                "basis_source": self.basis_source,
                "explained_variance": _float(self.explained_variance),
                "embedding_explained_variance": _float(self.embedding_explained_variance),
                "layer_norm_scale": _float(self.layer_norm_scale),
            },
            "heads": {"score": self.head_score, "head_dim": self.head_dim},
            "neurons": {"score": self.neuron_score},
            "per_layer": [layer.to_dict() for layer in self.layers],
            "initialised": dict(self.initialised),
            "not_initialised": [{"reason": r, "parameters": names} for r, names in missing.items()],
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- public helpers


def select_teacher_layers(student_layers: int, teacher_layers: int, rule: str | Sequence[int] = "uniform") -> list[int]:
    """The teacher layer each student layer is copied from (see the module docstring)."""
    if isinstance(rule, str):
        if rule != "uniform":
            raise InitFromTeacherError(
                f"layers={rule!r} is not a layer-selection rule: use 'uniform' or a list of teacher "
                f"layer indices, one per student layer"
            )
        # ceil((i + 1) * L_t / L_s) - 1 in integer arithmetic
        return [-(-(i + 1) * teacher_layers // student_layers) - 1 for i in range(student_layers)]
    chosen = list(rule)
    if len(chosen) != student_layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in chosen):
        raise InitFromTeacherError(
            f"layers={chosen!r}: give one teacher layer index (an int) per student layer; the student "
            f"has {student_layers} layers"
        )
    bad = [i for i in chosen if not 0 <= i < teacher_layers]
    if bad:
        raise InitFromTeacherError(
            f"layers={chosen!r}: teacher layer indices must lie in 0..{teacher_layers - 1} (the teacher "
            f"has {teacher_layers} layers); out of range: {bad}"
        )
    return chosen


def width_basis(teacher: nn.Module, dim: int, kind: str = "pca_embeddings", data: Any = None) -> WidthBasis:
    """The basis that carries the teacher's hidden space into ``dim`` dimensions.

    ``kind`` is one of ``'pca_embeddings'``, ``'pca_hidden'``, ``'select_hidden'`` or
    ``'slice'`` (see the module docstring). The hidden-state kinds use ``data``: a batch of
    teacher inputs (an ``input_ids`` tensor or a mapping such as a tokenizer's output) or an
    iterable of such batches; without it, seeded random token sequences. ``dim`` equal to the
    teacher's width gives the identity.
    """
    _check_choice("width", kind, WIDTH_KINDS)
    embedding = _input_embedding(teacher, "teacher")
    words = embedding.weight.detach().to("cpu", torch.float64)
    teacher_dim = int(words.shape[1])
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= teacher_dim:
        raise InitFromTeacherError(
            f"width basis dimension {dim!r}: must be an int from 1 to the teacher's hidden size "
            f"{teacher_dim} (a student wider than its teacher cannot be initialised from it)"
        )
    word_gram = words.T @ words
    if kind in ("pca_hidden", "select_hidden"):
        states = data if isinstance(data, HiddenStateGram) else hidden_state_gram(teacher, data)
        if tuple(states.gram.shape) != (teacher_dim, teacher_dim):
            raise InitFromTeacherError(
                f"data=: a HiddenStateGram of width {states.gram.shape[0]}, but the teacher's hidden size is "
                f"{teacher_dim}: compute it with hidden_state_gram() on this teacher"
            )
        gram = states.gram
        source = (
            f"teacher hidden states on {states.source} ({states.n_states} layer outputs x {states.n_tokens} tokens)"
        )
    else:
        gram = word_gram
        source = f"teacher word embeddings ({words.shape[0]} rows)"
    if dim == teacher_dim:
        projection, kind = torch.eye(teacher_dim, dtype=torch.float64), "identity"
    elif kind == "slice":
        projection = torch.eye(teacher_dim, dtype=torch.float64)[:, :dim]
    elif kind == "select_hidden":
        coordinates = torch.argsort(torch.diagonal(gram), descending=True, stable=True)[:dim].sort().values
        projection = torch.eye(teacher_dim, dtype=torch.float64)[:, coordinates]
    else:
        projection = _pca_basis_keeping_mean_direction(gram, dim)
    centring = torch.eye(teacher_dim, dtype=torch.float64) - 1.0 / teacher_dim
    centred_gram = centring @ gram @ centring
    kept_centred = _energy_fraction(centred_gram, projection)
    return WidthBasis(
        projection=projection.to(torch.float32),
        kind=kind,
        source=source,
        explained_variance=_energy_fraction(gram, projection),
        embedding_explained_variance=_energy_fraction(word_gram, projection),
        layer_norm_scale=1.0 if kind == "identity" else math.sqrt(teacher_dim / dim * kept_centred),
    )


def feature_matcher_init(
    basis: InitReport | WidthBasis | torch.Tensor | None, student_dim: int, teacher_dim: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Weight and bias for ``nn.Linear(student_dim, teacher_dim)`` mapping student hidden states
    back to the teacher's width through the initialisation basis: ``weight = P``, ``bias = 0``, so
    ``matcher(P^T x) = P P^T x``, the teacher's ``x`` up to what the basis leaves out.

    Returns None when the basis does not connect these widths (the features are not hidden
    states of the residual stream, or no basis exists): keep the matcher's own initialisation.
    """
    if isinstance(basis, InitReport):
        projection = basis.basis
    elif isinstance(basis, WidthBasis):
        projection = basis.projection
    else:
        projection = basis
    if projection is None or tuple(projection.shape) != (teacher_dim, student_dim):
        return None
    return projection.detach().clone().to(torch.float32), torch.zeros(teacher_dim)


# --------------------------------------------------------------------------- the initialiser


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
    the rules. Returns an :class:`InitReport` (``.to_dict()`` for the trial record).

    ``layers``: ``'uniform'`` or one teacher layer index per student layer. ``width``: the basis
    kind (:data:`WIDTH_KINDS`); ``data``: teacher inputs for the hidden-state kinds (see
    :func:`width_basis`). ``heads`` / ``neurons``: the importance score (``'weight_norm'`` or
    ``'first'``).

    ``strict=True`` raises :class:`InitFromTeacherError` (before changing anything) if any
    parameter of the student cannot be initialised; ``strict=False`` initialises what can be and
    lists the rest in ``report.not_initialised``.
    """
    _check_choice("width", width, WIDTH_KINDS)
    _check_choice("heads", heads, HEAD_SCORES)
    _check_choice("neurons", neurons, NEURON_SCORES)
    if not isinstance(strict, bool):
        raise InitFromTeacherError(f"strict={strict!r}: must be True or False")
    student_base, teacher_base = _bert_base(student), _bert_base(teacher)
    plan = _Plan(student)
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
        raise InitFromTeacherError(_strict_message(plan, student, teacher))
    with torch.no_grad():
        plan.apply()
    return report


# --------------------------------------------------------------------------- planning


class _Plan:
    """New values for the student's parameters, computed in full before any is written so that a
    strict failure leaves the student untouched; every parameter ends up in ``values`` or
    ``missing``."""

    def __init__(self, student: nn.Module):
        self.params: dict[str, nn.Parameter] = dict(student.named_parameters())
        self.values: dict[str, torch.Tensor] = {}
        self.sources: dict[str, str] = {}
        self.missing: dict[str, str] = {}

    def current(self, name: str) -> torch.Tensor:
        return self.params[name].detach().to("cpu", torch.float64).clone()

    def set(self, name: str, value: torch.Tensor, source: str) -> None:
        param = self.params[name]
        if tuple(value.shape) != tuple(param.shape):  # a mapping bug, not bad input
            raise AutoKDError(
                f"init_from_teacher computed a {tuple(value.shape)} value for {name} of shape "
                f"{tuple(param.shape)}; please report this with both models' configs"
            )
        self.values[name] = value
        self.sources[name] = source

    def cannot(self, name: str, reason: str) -> None:
        self.missing[name] = reason

    def cover_rest(self, reason: str) -> None:
        for name in self.params:
            if name not in self.values and name not in self.missing:
                self.missing[name] = reason

    def apply(self) -> None:
        for name, value in self.values.items():
            param = self.params[name]
            param.copy_(value.to(device=param.device, dtype=param.dtype))


def _plan_bert(
    plan: _Plan, student, teacher, student_base, teacher_base, *, layers, width, data, heads, neurons, notes
) -> InitReport:
    s_cfg, t_cfg = student_base.config, teacher_base.config
    s_prefix, t_prefix = _prefix_of(student, student_base), _prefix_of(teacher, teacher_base)
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
            student=_describe(student),
            teacher=_describe(teacher),
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
    mapper = _Projector(basis)
    teacher_tensor = _TeacherTensors(teacher)
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
    plan: _Plan, mapper: _Projector, teacher_tensor: _TeacherTensors, s_name: str, t_name: str
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
    plan: _Plan, mapper: _Projector, teacher_tensor: _TeacherTensors, s_name: str, t_name: str
) -> None:
    gamma, beta = mapper.layer_norm(teacher_tensor(t_name + ".weight"), teacher_tensor(t_name + ".bias"))
    plan.set(s_name + ".weight", gamma, mapper.describe(t_name + ".weight", layer_norm=True))
    plan.set(s_name + ".bias", beta, mapper.describe(t_name + ".bias", left=True))


def _plan_attention(
    plan, mapper, teacher_tensor, s_layer, t_layer, s_attention, t_attention, score_kind
) -> tuple[list, list, str]:
    n_s, d_s = int(s_attention.num_attention_heads), int(s_attention.attention_head_size)
    n_t, d_t = int(t_attention.num_attention_heads), int(t_attention.attention_head_size)
    s_self, t_self = s_layer + "attention.self.", t_layer + "attention.self."
    s_out, t_out = s_layer + "attention.output.dense.", t_layer + "attention.output.dense."
    weight = {k: teacher_tensor(f"{t_self}{k}.weight") for k in ("query", "key", "value")}
    bias = {k: teacher_tensor(f"{t_self}{k}.bias") for k in ("query", "key", "value")}
    out_weight = teacher_tensor(t_out + "weight")

    rows = [slice(h * d_t, (h + 1) * d_t) for h in range(n_t)]
    scores = [
        math.sqrt(sum(float(weight[k][r].square().sum()) for k in weight) + float(out_weight[:, r].square().sum()))
        for r in rows
    ]
    kept = sorted(_ranked(scores, score_kind)[: min(n_s, n_t)])
    sources: list[int | None] = kept + [None] * (n_s - len(kept))

    new_w = {k: plan.current(f"{s_self}{k}.weight") for k in weight}
    new_b = {k: plan.current(f"{s_self}{k}.bias") for k in weight}
    new_out = plan.current(s_out + "weight")
    scale = math.sqrt(d_s / d_t)  # keeps q.k / sqrt(head_dim) when the head size changes
    for j, t in enumerate(sources):
        s_rows = slice(j * d_s, (j + 1) * d_s)
        if t is None:  # a new head: silent (zero keys, zero output) but trainable
            new_w["key"][s_rows] = 0.0
            new_b["key"][s_rows] = 0.0
            new_out[:, s_rows] = 0.0
            continue
        head_w = {k: mapper.reads(weight[k][rows[t]]) for k in weight}
        head_b = {k: bias[k][rows[t]] for k in weight}
        head_out = mapper.writes(out_weight[:, rows[t]])
        head_w["query"], head_b["query"] = head_w["query"] * scale, head_b["query"] * scale
        if d_s <= d_t:
            if d_s == d_t:
                qk_basis = vo_basis = torch.eye(d_t, dtype=torch.float64)
            else:
                qk_basis = _top_left_singular(
                    torch.cat([head_w["query"], head_b["query"][:, None], head_w["key"], head_b["key"][:, None]], 1),
                    d_s,
                )
                vo_basis = _top_left_singular(torch.cat([head_w["value"], head_b["value"][:, None]], 1), d_s)
            for k, head_basis in (("query", qk_basis), ("key", qk_basis), ("value", vo_basis)):
                new_w[k][s_rows] = head_basis.T @ head_w[k]
                new_b[k][s_rows] = head_basis.T @ head_b[k]
            new_out[:, s_rows] = head_out @ vo_basis
        else:  # the teacher head fills the first d_t dimensions; the rest start silent
            first, rest = slice(j * d_s, j * d_s + d_t), slice(j * d_s + d_t, (j + 1) * d_s)
            for k in weight:
                new_w[k][first] = head_w[k]
                new_b[k][first] = head_b[k]
            new_w["key"][rest] = 0.0
            new_b["key"][rest] = 0.0
            new_out[:, first] = head_out
            new_out[:, rest] = 0.0

    kept_text = "all heads" if len(kept) == n_t else f"heads {kept} of {n_t}"
    if n_s > n_t:
        kept_text += f", {n_s - n_t} new heads with zero keys and output"
    for k in weight:
        plan.set(
            f"{s_self}{k}.weight", new_w[k], mapper.describe(f"{t_self}{k}.weight", right=True) + f" ({kept_text})"
        )
        plan.set(f"{s_self}{k}.bias", new_b[k], f"{t_self}{k}.bias ({kept_text})")
    plan.set(s_out + "weight", new_out, mapper.describe(t_out + "weight", left=True) + f" ({kept_text})")
    plan.set(s_out + "bias", mapper.writes(teacher_tensor(t_out + "bias")), mapper.describe(t_out + "bias", left=True))
    head_dim = "sliced" if d_s == d_t else (f"projected {d_t} -> {d_s}" if d_s < d_t else f"padded {d_t} -> {d_s}")
    return sources, scores, head_dim


def _plan_feed_forward(plan, mapper, teacher_tensor, s_layer, t_layer, score_kind) -> list[int | None]:
    s_in, t_in = s_layer + "intermediate.dense.", t_layer + "intermediate.dense."
    s_out, t_out = s_layer + "output.dense.", t_layer + "output.dense."
    w_in, b_in, w_out = teacher_tensor(t_in + "weight"), teacher_tensor(t_in + "bias"), teacher_tensor(t_out + "weight")
    new_w_in, new_b_in, new_w_out = (
        plan.current(s_in + "weight"),
        plan.current(s_in + "bias"),
        plan.current(s_out + "weight"),
    )
    n_s, n_t = new_w_in.shape[0], w_in.shape[0]
    scores = (w_in.square().sum(1) + w_out.square().sum(0)).sqrt().tolist()
    kept = sorted(_ranked(scores, score_kind)[: min(n_s, n_t)])
    index = torch.tensor(kept, dtype=torch.long)
    k = len(kept)
    new_w_in[:k] = mapper.reads(w_in[index])
    new_b_in[:k] = b_in[index]
    new_w_out[:, :k] = mapper.writes(w_out[:, index])
    new_w_out[:, k:] = 0.0  # extra neurons start silent, trainable
    kept_text = f"neurons: top {k} of {n_t} by {score_kind}" if k < n_t else "all neurons"
    if n_s > n_t:
        kept_text += f", {n_s - n_t} new ones with zero output"
    plan.set(s_in + "weight", new_w_in, mapper.describe(t_in + "weight", right=True) + f" ({kept_text})")
    plan.set(s_in + "bias", new_b_in, f"{t_in}bias ({kept_text})")
    plan.set(s_out + "weight", new_w_out, mapper.describe(t_out + "weight", left=True) + f" ({kept_text})")
    plan.set(s_out + "bias", mapper.writes(teacher_tensor(t_out + "bias")), mapper.describe(t_out + "bias", left=True))
    return kept + [None] * (n_s - k)


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
                plan.set(name, source.clone(), name)


def _plan_other_family(plan: _Plan, student, teacher, *, width, data, notes) -> InitReport:
    """Students or teachers that are not BERT-like: at most the input word embeddings, by the
    basis, when the vocabularies agree; everything else is listed."""
    family_reason = (
        f"initialize_from_teacher maps BERT-like encoders only (config.model_type 'bert': BertModel, "
        f"BertFor*, MiniLM) layer by layer; the student is {_describe(student)} and the teacher "
        f"{_describe(teacher)}"
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
            mapper = _Projector(basis)
            plan.set(
                s_name,
                mapper.reads(t_embedding.weight.detach().to("cpu", torch.float64)),
                f"teacher input word embeddings{' @ P' if not mapper.identity else ''}",
            )
    plan.cover_rest(family_reason)
    return InitReport(
        student=_describe(student),
        teacher=_describe(teacher),
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


def _strict_message(plan: _Plan, student, teacher) -> str:
    by_reason: dict[str, list[str]] = {}
    for name, reason in plan.missing.items():
        by_reason.setdefault(reason, []).append(name)
    lines = [f"cannot fully initialise the student {_describe(student)} from the teacher {_describe(teacher)}."]
    if plan.values:
        lines.append(
            f"Can initialise {len(plan.values)} of {len(plan.params)} parameters, e.g. "
            + ", ".join(_patterns(list(plan.values))[:6])
            + "."
        )
    else:
        lines.append("Can initialise nothing.")
    lines.append("Cannot initialise:")
    for reason, names in by_reason.items():
        lines.append(f"  - {', '.join(_patterns(names))}: {reason}")
    lines.append(
        "Pass strict=False to initialise what can be and leave the rest at the student's own "
        "initialisation (listed in the report's not_initialised)."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- linear algebra


class _Projector:
    """Applies the basis P (float64) to teacher tensors; the identity is applied exactly."""

    def __init__(self, basis: WidthBasis):
        self.identity = basis.kind == "identity"
        self.p = basis.projection.to(torch.float64)
        self.ln_scale = basis.layer_norm_scale

    def reads(self, weight: torch.Tensor) -> torch.Tensor:  # W P: consumes hidden states
        return weight.clone() if self.identity else weight @ self.p

    def writes(self, weight: torch.Tensor) -> torch.Tensor:  # P^T W (or P^T b): produces them
        return weight.clone() if self.identity else self.p.T @ weight

    def both(self, weight: torch.Tensor) -> torch.Tensor:
        return self.writes(self.reads(weight))

    def layer_norm(self, gamma: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.identity:
            return gamma.clone(), beta.clone()
        return self.ln_scale * (self.p.square().T @ gamma), self.p.T @ beta

    def describe(self, teacher_name: str, *, left: bool = False, right: bool = False, layer_norm: bool = False) -> str:
        if self.identity:
            return teacher_name
        if layer_norm:
            return f"s * diag(P^T diag({teacher_name}) P)"
        return f"{'P^T @ ' if left else ''}{teacher_name}{' @ P' if right else ''}"


class _TeacherTensors:
    """Teacher parameters by dotted name (tied weights resolve through the module tree), as
    float64 CPU copies."""

    def __init__(self, teacher: nn.Module):
        self.teacher = teacher

    def __call__(self, name: str) -> torch.Tensor:
        module_name, _, leaf = name.rpartition(".")
        module = self.teacher.get_submodule(module_name) if module_name else self.teacher
        return getattr(module, leaf).detach().to("cpu", torch.float64)


def _pca_basis_keeping_mean_direction(gram: torch.Tensor, dim: int) -> torch.Tensor:
    """``[u, Q]`` with ``u = 1/sqrt(h)`` and ``Q`` the top ``dim - 1`` principal directions
    orthogonal to ``u``, rotated so that ``P^T u = 1/sqrt(dim)`` (see the module docstring)."""
    h = gram.shape[0]
    u = torch.full((h,), 1.0 / math.sqrt(h), dtype=torch.float64)
    complement = _householder(torch.eye(h, dtype=torch.float64)[0], u)[:, 1:]  # orthonormal, _|_ u
    eigenvalues, eigenvectors = torch.linalg.eigh(complement.T @ gram @ complement)
    top = torch.argsort(eigenvalues, descending=True, stable=True)[: dim - 1]
    basis = torch.cat([u[:, None], complement @ eigenvectors[:, top]], 1)
    w = torch.full((dim,), 1.0 / math.sqrt(dim), dtype=torch.float64)
    return basis @ _householder(torch.eye(dim, dtype=torch.float64)[0], w)


def _householder(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The reflection H (symmetric, orthogonal) with H a = b, for unit vectors a, b."""
    v = a - b
    norm = float(v @ v)
    eye = torch.eye(a.shape[0], dtype=a.dtype)
    return eye if norm < 1e-24 else eye - 2.0 * torch.outer(v, v) / norm


def _energy_fraction(gram: torch.Tensor, projection: torch.Tensor) -> float:
    total = float(torch.trace(gram))
    return 1.0 if total <= 0 else float(torch.trace(projection.T @ gram @ projection)) / total


def _top_left_singular(matrix: torch.Tensor, k: int) -> torch.Tensor:
    u, _, _ = torch.linalg.svd(matrix, full_matrices=False)
    return u[:, :k]


def _ranked(scores: Sequence[float], kind: str) -> list[int]:
    """Indices by decreasing importance; ties and 'first' keep index order."""
    if kind == "first":
        return list(range(len(scores)))
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


# --------------------------------------------------------------------------- models and data


def _bert_base(model: nn.Module) -> nn.Module | None:
    """The BertModel inside ``model`` (itself, or ``model.bert``), or None for other families."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "bert":
        return None
    base = getattr(model, "base_model", model)
    if all(hasattr(base, a) for a in ("embeddings", "encoder")) and hasattr(base.encoder, "layer"):
        return base
    return None


def _prefix_of(model: nn.Module, base: nn.Module) -> str:
    if base is model:
        return ""
    for name, module in model.named_modules():
        if module is base:
            return name + "."
    raise AutoKDError(f"cannot locate the base model inside {type(model).__name__}")  # pragma: no cover


def _describe(model: nn.Module) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return f"{type(model).__name__} (model_type {model_type!r})"


def _input_embedding(model: nn.Module, role: str) -> nn.Embedding:
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if not isinstance(embedding, nn.Embedding):
        raise InitFromTeacherError(
            f"the {role} {_describe(model)} has no input word-embedding table (get_input_embeddings()); "
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
        vocab_size = int(_input_embedding(teacher, "teacher").weight.shape[0])
        data, what = _random_token_batches(vocab_size), "random token sequences, no data given"
    gram, n_states, n_tokens = _hidden_state_gram(teacher, data)
    return HiddenStateGram(gram, n_states, n_tokens, what)


def _hidden_state_gram(teacher: nn.Module, data: Any) -> tuple[torch.Tensor, int, int]:
    """``X^T X`` over every hidden state of the teacher on ``data`` (padding excluded)."""
    device = next(teacher.parameters()).device
    encoder = _bert_base(teacher) or teacher  # a BERT's task head is not needed for its hidden states
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


def _check_choice(argument: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InitFromTeacherError(f"{argument}={value!r}: choose one of {', '.join(map(repr, choices))}")


def _patterns(names: Sequence[str]) -> list[str]:
    """Parameter names with layer numbers folded: 'encoder.layer.*.output.dense.weight'."""
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(re.sub(r"\.(\d+)\.", ".*.", name), None)
    return list(seen)
