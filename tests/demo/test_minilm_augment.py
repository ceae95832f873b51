"""The main job's augmentation: copies of the training utterances with words replaced by the
teacher's nearest words."""

import random

import pytest
import torch

from autokd_minilm import augment, task


@pytest.fixture(scope="module")
def neighbours():
    return augment.nearest_words()


def _token(i):
    return task.tokenizer().convert_ids_to_tokens(i)


def test_nearest_words_are_common_whole_words_by_the_teachers_cosine(neighbours):
    table = task.load_teacher().bert.embeddings.word_embeddings.weight.detach()
    assert 8_000 < len(neighbours) < augment.COMMON_WORDS
    vocab = task.tokenizer().get_vocab()
    assert vocab["the"] in neighbours and vocab["##s"] not in neighbours
    for word in ("immortal", "language", "happy"):
        i = vocab[word]
        near = neighbours[i]
        assert len(near) == augment.NEIGHBOURS and i not in near
        assert all(_token(j).isalpha() and j in neighbours for j in near)
        # ordered by cosine to the word, the nearest first, and nothing of the candidates closer
        cos = torch.nn.functional.cosine_similarity(table[i].unsqueeze(0), table[list(near)])
        assert cos.tolist() == sorted(cos.tolist(), reverse=True)
        others = torch.tensor(sorted(set(neighbours) - set(near) - {i}))
        closest_other = torch.nn.functional.cosine_similarity(table[i].unsqueeze(0), table[others]).max()
        assert closest_other <= cos.min() + 1e-6
    assert vocab["mortal"] in neighbours[vocab["immortal"]]


def test_only_whole_replaceable_words_change_and_into_their_neighbours(neighbours):
    tok = task.tokenizer()
    ids = tok("are you sapient? playing football is unbelievable")["input_ids"]
    pieces = [_token(i) for i in ids]
    assert any(p.startswith("##") for p in pieces)  # the sentence has split words
    rng = random.Random(0)
    for _ in range(50):
        out = augment.replace_words(ids, 1.0, rng, neighbours)
        assert len(out) == len(ids) and out[0] == ids[0] and out[-1] == ids[-1]
        for j, (before, after) in enumerate(zip(ids, out)):
            split = pieces[j].startswith("##") or (j + 1 < len(ids) and pieces[j + 1].startswith("##"))
            if split or before not in neighbours:
                assert after == before, pieces[j]
            else:  # rate 1: every replaceable word is replaced, by one of its neighbours
                assert after in neighbours[before], pieces[j]
    assert augment.replace_words(ids, 0.0, rng, neighbours) == ids


def test_copies_follow_the_utterances_and_are_the_same_every_time():
    train, _ = task.datasets()
    copies = augment.NearestWordCopies(train, 2, rate=0.3, seed=0)
    assert len(copies) == 3 * len(train)
    assert copies.utterances is train.utterances
    first = copies[0]["input_ids"]
    assert torch.equal(first, train[0]["input_ids"])
    changed = 0
    for k in range(len(train)):
        original = train[k]
        for c in (1, 2):
            copy = copies[c * len(train) + k]
            assert copy["input_ids"].shape == original["input_ids"].shape
            assert torch.equal(copy["attention_mask"], original["attention_mask"])
            changed += int(not torch.equal(copy["input_ids"], original["input_ids"]))
    # about 30% of replaceable words change: most copies differ from their utterance
    assert 0.5 * len(train) < changed < 2 * len(train)
    again = augment.NearestWordCopies(train, 2, rate=0.3, seed=0)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(copies.examples, again.examples))
    other = augment.NearestWordCopies(train, 2, rate=0.3, seed=1)
    assert any(not torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(copies.examples, other.examples))


def test_training_data_follows_the_augmentation_setting():
    train, _ = task.datasets()
    try:
        task.set_augmentation(0)
        assert task.training_data() is train
        weights_alone = task.token_weights()
        task.set_augmentation(1, 0.5)
        assert len(task.training_data()) == 2 * len(train)
        assert task.token_weights().sum() > weights_alone.sum()
        # a token's weight is its count in the training data plus the floor
        ids = torch.cat([ex["input_ids"] for ex in train.examples])
        the = task.tokenizer().convert_tokens_to_ids("the")
        unused = task.tokenizer().convert_tokens_to_ids("[unused0]")
        assert weights_alone[the] == int((ids == the).sum()) + 10.0 > 100
        assert weights_alone[unused] == 10.0 == task.TOKEN_WEIGHT_FLOOR
        with pytest.raises(ValueError, match="copies must be >= 0"):
            task.set_augmentation(-1)
        with pytest.raises(ValueError, match=r"rate in \[0, 1\]"):
            augment.NearestWordCopies(train, 1, rate=1.5)
    finally:
        task.set_augmentation()
    assert len(task.training_data()) == (1 + task.AUGMENT_COPIES) * len(train)
