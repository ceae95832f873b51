"""The English utterances of the ``chatterbot-corpus`` package, labelled by topic file.

Read from the installed package (no download); split into train and held-out parts by a
fixed seed, stratified by topic, so the split is the same on every machine.
"""

from __future__ import annotations

import importlib.util
import os
import random
from collections import Counter

import attrs

__all__ = ["MissingAssetError", "Utterances", "corpus_dir", "general_english", "load_utterances"]


class MissingAssetError(RuntimeError):
    """A package the example needs is not installed."""


def corpus_dir() -> str:
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(
            "the example's text comes from the PyPI package chatterbot-corpus, which is not installed: "
            "pip install chatterbot-corpus"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "english")
    if not os.path.isdir(path):
        raise MissingAssetError(
            f"chatterbot-corpus is installed but has no {path}: reinstall it (pip install --force-reinstall chatterbot-corpus)"
        )
    return path


@attrs.frozen
class Utterances:
    """Texts with their topic labels; ``topics[label]`` names a label."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    topics: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        c = Counter(self.labels)
        return {topic: c.get(i, 0) for i, topic in enumerate(self.topics)}


def _read_topic(path: str) -> list[str]:
    import yaml

    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    texts = []
    for conversation in doc.get("conversations") or []:
        for item in conversation if isinstance(conversation, list) else [conversation]:
            if isinstance(item, str | int | float) and not isinstance(item, bool):
                text = " ".join(str(item).split())
                if text:
                    texts.append(text)
    return texts


def load_utterances(held_out: float = 0.2, seed: int = 0) -> tuple[Utterances, Utterances]:
    """(train, held_out): every distinct utterance of each topic file, labelled by topic.

    An utterance repeated within a topic is kept once; each topic is split separately,
    so both parts hold every topic."""
    root = corpus_dir()
    topics = sorted(f[:-4] for f in os.listdir(root) if f.endswith(".yml"))
    rng = random.Random(seed)
    parts: dict[str, list[tuple[str, int]]] = {"train": [], "held_out": []}
    for label, topic in enumerate(topics):
        texts = list(dict.fromkeys(_read_topic(os.path.join(root, topic + ".yml"))))
        rng.shuffle(texts)
        n_held = max(1, round(len(texts) * held_out))
        parts["held_out"] += [(t, label) for t in texts[:n_held]]
        parts["train"] += [(t, label) for t in texts[n_held:]]

    def pack(items):
        return Utterances(tuple(t for t, _ in items), tuple(label for _, label in items), tuple(topics))

    return pack(parts["train"]), pack(parts["held_out"])


GENERAL_ENGLISH = os.path.join(os.path.dirname(__file__), "data", "general_english.txt")


def general_english() -> tuple[str, ...]:
    """The example's general English sentences (shipped with it, one a line, ``#`` comments):
    written for the purpose and absent from the chatterbot corpus, they measure how well a
    student matches the teacher outside the corpus' domain."""
    with open(GENERAL_ENGLISH, encoding="utf-8") as fh:
        return tuple(line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#"))
