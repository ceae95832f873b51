"""The framework-neutral maths of initialising a BERT-family student from its teacher
(issue #9, shared by the backends per #18), on numpy arrays named and oriented as
PyTorch's ``state_dict`` (a linear weight is ``out x in``).

- :func:`select_teacher_layers`: the teacher layer each student layer copies
  (``uniform``: ``ceil((i + 1) * L_t / L_s) - 1``, or an explicit list);
- :func:`width_basis`: the basis ``P`` (``h_t x h_s``, orthonormal columns) carrying the
  teacher's residual stream into the student's width (``identity``, ``slice``,
  ``pca_embeddings``, ``pca_hidden``, ``select_hidden``), with the LayerNorm scale
  correction; PCA keeps the mean direction ``1/sqrt(h)`` (a Householder rotation);
- :func:`init_bert_state`: the student's weights from the teacher's through ``P``: a
  weight reading hidden states ``W P``, one writing them ``P^T W``, heads and
  feed-forward neurons kept by weight norm, heads projected onto the top singular
  vectors when the student's head size is smaller. A student of the teacher's exact
  shape gets the teacher's weights unchanged.

:func:`init_attention`, :func:`init_feed_forward`, :class:`Projector` and
:func:`matcher_init` are the pieces, for a backend that reports block by block
(autokd-torch's BERT plan) rather than calling :func:`init_bert_state`.
docs/init_from_teacher.md documents the rules and their measurements; both backends
(``autokd_torch.init_from_teacher``, ``autokd_tensorflow.init_from_teacher``) apply
these functions. numpy is imported inside the functions: ``import autokd`` stays light.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .errors import AutoKDError

__all__ = [
    "SCORE_KINDS",
    "WIDTH_KINDS",
    "InitError",
    "Projector",
    "WidthBasis",
    "check_choice",
    "check_width",
    "energy_fraction",
    "init_attention",
    "init_bert_state",
    "init_feed_forward",
    "matcher_init",
    "rank",
    "select_teacher_layers",
    "width_basis",
]

WIDTH_KINDS = ("pca_embeddings", "pca_hidden", "select_hidden", "slice")
SCORE_KINDS = ("weight_norm", "first")  # how heads and feed-forward neurons are ranked


class InitError(AutoKDError, ValueError):
    """The student cannot be (fully) initialised from the teacher, or an argument is invalid;
    the message says what can and cannot be initialised and what to change."""


def check_choice(argument: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InitError(f"{argument}={value!r}: choose one of {', '.join(map(repr, choices))}")


@attrs.frozen
class WidthBasis:
    """``projection`` (``h_t x h_s``, float64), its kind, and the LayerNorm scale."""

    projection: Any
    kind: str
    explained_variance: float
    layer_norm_scale: float


def select_teacher_layers(student_layers: int, teacher_layers: int, rule: str | Sequence[int] = "uniform") -> list[int]:
    """The teacher layer each student layer is copied from."""
    if isinstance(rule, str):
        if rule != "uniform":
            raise InitError(
                f"layers={rule!r} is not a layer-selection rule: use 'uniform' or a list of teacher "
                f"layer indices, one per student layer"
            )
        # ceil((i + 1) * L_t / L_s) - 1 in integer arithmetic
        return [-(-(i + 1) * teacher_layers // student_layers) - 1 for i in range(student_layers)]
    chosen = list(rule)
    if len(chosen) != student_layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in chosen):
        raise InitError(
            f"layers={chosen!r}: give one teacher layer index (an int) per student layer; the student "
            f"has {student_layers} layers"
        )
    bad = [i for i in chosen if not 0 <= i < teacher_layers]
    if bad:
        raise InitError(
            f"layers={chosen!r}: teacher layer indices must lie in 0..{teacher_layers - 1} (the teacher "
            f"has {teacher_layers} layers); out of range: {bad}"
        )
    return chosen


def check_width(dim: Any, teacher_dim: int) -> None:
    """The basis dimension is an int from 1 to the teacher's hidden size."""
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= teacher_dim:
        raise InitError(
            f"width basis dimension {dim!r}: must be an int from 1 to the teacher's hidden size "
            f"{teacher_dim} (a student wider than its teacher cannot be initialised from it)"
        )


def _householder(a: Any, b: Any) -> Any:
    """The reflection H (symmetric, orthogonal) with H a = b, for unit vectors a, b."""
    import numpy as np

    v = a - b
    norm = float(v @ v)
    eye = np.eye(a.shape[0])
    return eye if norm < 1e-24 else eye - 2.0 * np.outer(v, v) / norm


def _pca_keeping_mean_direction(gram: Any, dim: int) -> Any:
    """``[u, Q]`` with ``u = 1/sqrt(h)`` and ``Q`` the top ``dim - 1`` principal directions
    orthogonal to ``u``, rotated so that ``P^T u = 1/sqrt(dim)``."""
    import numpy as np

    h = gram.shape[0]
    u = np.full(h, 1.0 / math.sqrt(h))
    complement = _householder(np.eye(h)[0], u)[:, 1:]
    values, vectors = np.linalg.eigh(complement.T @ gram @ complement)
    top = np.argsort(-values, kind="stable")[: dim - 1]
    basis = np.concatenate([u[:, None], complement @ vectors[:, top]], 1)
    return basis @ _householder(np.eye(dim)[0], np.full(dim, 1.0 / math.sqrt(dim)))


def energy_fraction(gram: Any, projection: Any) -> float:
    """The fraction of ``trace(gram)`` that ``projection`` keeps (1 for an empty gram)."""
    import numpy as np

    total = float(np.trace(gram))
    return 1.0 if total <= 0 else float(np.trace(projection.T @ gram @ projection)) / total


def width_basis(word_embeddings: Any, dim: int, kind: str = "pca_embeddings", hidden_gram: Any = None) -> WidthBasis:
    """The basis from the teacher's word embeddings (``V x h_t``) or, for the hidden kinds,
    ``hidden_gram`` (``X^T X`` of the teacher's hidden states, ``h_t x h_t``)."""
    import numpy as np

    check_choice("width", kind, WIDTH_KINDS)
    words = np.asarray(word_embeddings, dtype=np.float64)
    teacher_dim = words.shape[1]
    check_width(dim, teacher_dim)
    if kind in ("pca_hidden", "select_hidden"):
        if hidden_gram is None:
            raise InitError(f"width={kind!r} needs the teacher's hidden-state gram (give data)")
        gram = np.asarray(hidden_gram, dtype=np.float64)
        if gram.shape != (teacher_dim, teacher_dim):
            raise InitError(
                f"data=: a HiddenStateGram of width {gram.shape[0]}, but the teacher's hidden size is "
                f"{teacher_dim}: compute it with hidden_state_gram() on this teacher"
            )
    else:
        gram = words.T @ words
    if dim == teacher_dim:
        projection, kind = np.eye(teacher_dim), "identity"
    elif kind == "slice":
        projection = np.eye(teacher_dim)[:, :dim]
    elif kind == "select_hidden":
        projection = np.eye(teacher_dim)[:, np.sort(np.argsort(-np.diag(gram), kind="stable")[:dim])]
    else:
        projection = _pca_keeping_mean_direction(gram, dim)
    centring = np.eye(teacher_dim) - 1.0 / teacher_dim
    kept_centred = energy_fraction(centring @ gram @ centring, projection)
    scale = 1.0 if kind == "identity" else math.sqrt(teacher_dim / dim * kept_centred)
    return WidthBasis(projection, kind, energy_fraction(gram, projection), scale)


def rank(scores: Sequence[float], kind: str) -> list[int]:
    """Indices by decreasing importance; ties and ``'first'`` keep index order."""
    if kind == "first":
        return list(range(len(scores)))
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


class Projector:
    """Applies the basis ``P`` (float64) to teacher weights; the identity is applied exactly."""

    def __init__(self, basis: WidthBasis):
        self.identity = basis.kind == "identity"
        self.p, self.scale = basis.projection, basis.layer_norm_scale

    def reads(self, w: Any) -> Any:  # W P: consumes hidden states
        return w.copy() if self.identity else w @ self.p

    def writes(self, w: Any) -> Any:  # P^T W (or P^T b): produces them
        return w.copy() if self.identity else self.p.T @ w

    def both(self, w: Any) -> Any:  # P^T W P: hidden to hidden
        return self.writes(self.reads(w))

    def layer_norm(self, gamma: Any, beta: Any) -> tuple[Any, Any]:
        if self.identity:
            return gamma.copy(), beta.copy()
        return self.scale * ((self.p**2).T @ gamma), self.p.T @ beta


def _top_left_singular(matrix: Any, k: int) -> Any:
    import numpy as np

    return np.linalg.svd(matrix, full_matrices=False)[0][:, :k]


def init_attention(
    new, t, s_pre, t_pre, n_s, n_t, mapper, heads, left_singular=_top_left_singular
) -> tuple[list[int | None], list[float]]:
    """One attention block, in place in ``new`` (the student's arrays by name, its current
    values where the teacher gives none) from ``t`` (the teacher's, by name): heads kept by
    ``heads``, projected by ``mapper``, their size changed as the module docstring says.
    The teacher head of each student head (None: a new one) and each teacher head's score.

    ``left_singular(matrix, k)``: the top ``k`` left singular vectors (a backend may pass
    its own SVD: singular vectors are unique only up to sign, and autokd-torch keeps
    torch's, so its students stay as they were)."""
    import numpy as np

    d_s, d_t = new[s_pre + "self.query.weight"].shape[0] // n_s, t[t_pre + "self.query.weight"].shape[0] // n_t
    names = ("query", "key", "value")
    w = {k: t[f"{t_pre}self.{k}.weight"] for k in names}
    b = {k: t[f"{t_pre}self.{k}.bias"] for k in names}
    out = t[t_pre + "output.dense.weight"]
    rows = [slice(h * d_t, (h + 1) * d_t) for h in range(n_t)]
    scores = [math.sqrt(sum(float((w[k][r] ** 2).sum()) for k in names) + float((out[:, r] ** 2).sum())) for r in rows]
    kept = sorted(rank(scores, heads)[: min(n_s, n_t)])
    sources: list[int | None] = kept + [None] * (n_s - len(kept))
    scale = math.sqrt(d_s / d_t)  # keeps q.k / sqrt(head size) when it changes
    for j in range(n_s):
        s_rows = slice(j * d_s, (j + 1) * d_s)
        if j >= len(kept):  # a head the teacher does not have: silent but trainable
            new[s_pre + "self.key.weight"][s_rows] = 0.0
            new[s_pre + "self.key.bias"][s_rows] = 0.0
            new[s_pre + "output.dense.weight"][:, s_rows] = 0.0
            continue
        r = rows[kept[j]]
        hw = {k: mapper.reads(w[k][r]) for k in names}
        hb = {k: b[k][r].copy() for k in names}
        hw["query"], hb["query"] = hw["query"] * scale, hb["query"] * scale
        h_out = mapper.writes(out[:, r])
        if d_s <= d_t:
            if d_s == d_t:
                qk = vo = np.eye(d_t)
            else:
                qk_m = np.concatenate([hw["query"], hb["query"][:, None], hw["key"], hb["key"][:, None]], 1)
                qk = left_singular(qk_m, d_s)
                vo = left_singular(np.concatenate([hw["value"], hb["value"][:, None]], 1), d_s)
            for k, basis in (("query", qk), ("key", qk), ("value", vo)):
                new[f"{s_pre}self.{k}.weight"][s_rows] = basis.T @ hw[k]
                new[f"{s_pre}self.{k}.bias"][s_rows] = basis.T @ hb[k]
            new[s_pre + "output.dense.weight"][:, s_rows] = h_out @ vo
        else:  # the teacher head fills the first d_t dimensions; the rest start silent
            first, rest = slice(j * d_s, j * d_s + d_t), slice(j * d_s + d_t, (j + 1) * d_s)
            for k in names:
                new[f"{s_pre}self.{k}.weight"][first] = hw[k]
                new[f"{s_pre}self.{k}.bias"][first] = hb[k]
            new[s_pre + "self.key.weight"][rest] = 0.0
            new[s_pre + "self.key.bias"][rest] = 0.0
            new[s_pre + "output.dense.weight"][:, first] = h_out
            new[s_pre + "output.dense.weight"][:, rest] = 0.0
    new[s_pre + "output.dense.bias"] = mapper.writes(t[t_pre + "output.dense.bias"])
    return sources, scores


def init_feed_forward(new, t, s_pre, t_pre, mapper, neurons) -> list[int | None]:
    """One feed-forward block, in place in ``new``: neurons kept by ``neurons``, extra
    student neurons silent. The teacher neuron of each student neuron (None: a new one)."""
    w_in, b_in, w_out = (
        t[t_pre + "intermediate.dense.weight"],
        t[t_pre + "intermediate.dense.bias"],
        t[t_pre + "output.dense.weight"],
    )
    n_s = new[s_pre + "intermediate.dense.weight"].shape[0]
    scores = ((w_in**2).sum(1) + (w_out**2).sum(0)) ** 0.5
    kept = sorted(rank(scores.tolist(), neurons)[: min(n_s, w_in.shape[0])])
    k = len(kept)
    new[s_pre + "intermediate.dense.weight"][:k] = mapper.reads(w_in[kept])
    new[s_pre + "intermediate.dense.bias"][:k] = b_in[kept]
    new[s_pre + "output.dense.weight"][:, :k] = mapper.writes(w_out[:, kept])
    new[s_pre + "output.dense.weight"][:, k:] = 0.0  # extra neurons start silent, trainable
    new[s_pre + "output.dense.bias"] = mapper.writes(t[t_pre + "output.dense.bias"])
    return kept + [None] * (n_s - k)


def matcher_init(projection: Any, student_dim: int, teacher_dim: int) -> tuple[Any, Any] | None:
    """Weight and bias of a feature matcher (a linear map from the student's width back to
    the teacher's) through the basis: ``weight = P``, ``bias = 0``, so
    ``matcher(P^T x) = P P^T x``; None when ``projection`` does not connect these widths."""
    import numpy as np

    if projection is None or tuple(projection.shape) != (teacher_dim, student_dim):
        return None
    return np.array(projection, copy=True), np.zeros(teacher_dim)


def init_bert_state(
    student: Mapping[str, Any],
    teacher: Mapping[str, Any],
    *,
    student_heads: int,
    teacher_heads: int,
    basis: WidthBasis,
    layers: str | Sequence[int] = "uniform",
    heads: str = "weight_norm",
    neurons: str = "weight_norm",
) -> tuple[dict[str, Any], list[str]]:
    """The student's new weights (PyTorch names and orientation, float64) from the
    teacher's, and the names left as they were (with the reason)."""
    import numpy as np

    check_choice("heads", heads, SCORE_KINDS)
    check_choice("neurons", neurons, SCORE_KINDS)
    new = {k: np.array(v, dtype=np.float64) for k, v in student.items()}
    t = {k: np.asarray(v, dtype=np.float64) for k, v in teacher.items()}
    mapper = Projector(basis)
    prefix = next(
        (k[: -len("embeddings.word_embeddings.weight")] for k in t if k.endswith("embeddings.word_embeddings.weight")),
        None,
    )
    if prefix is None or f"{prefix}embeddings.word_embeddings.weight" not in new:
        raise InitError("init_from_teacher: the teacher and the student must both be BERT-family models")
    done: set[str] = set()

    def put(name: str, value: Any) -> None:
        if tuple(value.shape) != tuple(new[name].shape):
            raise InitError(f"init_from_teacher: {name} has shape {new[name].shape}, the teacher gives {value.shape}")
        new[name] = value
        done.add(name)

    emb = prefix + "embeddings."
    if t[emb + "word_embeddings.weight"].shape[0] != new[emb + "word_embeddings.weight"].shape[0]:
        raise InitError("init_from_teacher: the student's vocabulary differs from the teacher's")
    for name in ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight"):
        if emb + name in new:
            table = mapper.reads(t[emb + name])
            rows = new[emb + name].shape[0]
            put(emb + name, table[:rows] if rows <= table.shape[0] else new[emb + name])
    gamma, beta = mapper.layer_norm(t[emb + "LayerNorm.weight"], t[emb + "LayerNorm.bias"])
    put(emb + "LayerNorm.weight", gamma)
    put(emb + "LayerNorm.bias", beta)

    layer_of = re.compile(rf"^{re.escape(prefix)}encoder\.layer\.(\d+)\.")
    count = lambda d: 1 + max(int(m.group(1)) for k in d if (m := layer_of.match(k)))
    chosen = select_teacher_layers(count(new), count(t), layers)
    for i, j in enumerate(chosen):
        s_pre, t_pre = f"{prefix}encoder.layer.{i}.", f"{prefix}encoder.layer.{j}."
        init_attention(new, t, s_pre + "attention.", t_pre + "attention.", student_heads, teacher_heads, mapper, heads)
        init_feed_forward(new, t, s_pre, t_pre, mapper, neurons)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            gamma, beta = mapper.layer_norm(t[f"{t_pre}{ln}.weight"], t[f"{t_pre}{ln}.bias"])
            put(f"{s_pre}{ln}.weight", gamma)
            put(f"{s_pre}{ln}.bias", beta)
        done.update(k for k in new if k.startswith(s_pre))
    for name, kind in (
        (prefix + "pooler.dense.weight", "both"),
        (prefix + "pooler.dense.bias", "writes"),
        ("classifier.weight", "reads"),
        ("classifier.bias", "copy"),
    ):
        if name in new and name in t:
            value = {
                "both": lambda w: mapper.writes(mapper.reads(w)),
                "writes": mapper.writes,
                "reads": mapper.reads,
                "copy": np.copy,
            }[kind](t[name])
            if tuple(value.shape) == tuple(new[name].shape):
                put(name, value)
    left = sorted(k for k in new if k not in done)
    return new, left
