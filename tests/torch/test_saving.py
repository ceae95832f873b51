"""Saved students of the PyTorch backend: a Hugging Face model reloads offline with
``from_pretrained`` (with the teacher's tokenizer), a sentence encoder in the
sentence-transformers layout, a plain ``nn.Module`` rebuilt by ``load_student``;
never a pickle."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from conftest import bert_config
from torch import nn

import autokd
import autokd_torch

VOCAB_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(94)]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@pytest.fixture
def teacher_dir(tmp_path):
    """A local teacher folder with a tokenizer, as ``model.teacher`` names one."""
    from transformers import BertForSequenceClassification, BertTokenizer

    path = tmp_path / "teacher"
    path.mkdir()
    torch.manual_seed(0)
    BertForSequenceClassification(bert_config()).save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(VOCAB_TOKENS) + "\n")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    return path


def search(tmp_path, builder, eval_func, *, teacher=None, teacher_dir=None, example_inputs=None, space=None, **output):
    config = {
        "model": {"name": "tiny", "teacher": str(teacher_dir) if teacher_dir else None},
        "auto_distillation": {
            "search": {
                "search_space": space or {"hidden_size": [16, 32]},
                "search_algorithm": "grid",
                "metrics": ["score"],
                "higher_is_better": [True],
                "max_trials": 2,
                "seed": 0,
            }
        },
        "output": output,
    }
    agent = autokd.AutoDistillation(builder, config)

    def train(model):
        with torch.no_grad():  # "training": weights that differ from any fresh build
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))

    agent.train_func = train
    agent.eval_func = eval_func
    agent.example_inputs = example_inputs
    agent.teacher = teacher
    agent.show_progress = False
    agent.search_loop(tmp_path / "out")
    return agent


def no_pickles(directory):
    files = [os.path.join(r, n) for r, _, names in os.walk(directory) for n in names]
    assert files and not [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    return {os.path.relpath(f, directory) for f in files}


def test_tiny_bert_reloads_offline_with_the_teachers_tokenizer(tmp_path, teacher_dir, monkeypatch):
    from transformers import AutoTokenizer, BertForSequenceClassification

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ids = torch.randint(5, 99, (3, 8))

    def build(arch):
        torch.manual_seed(1)
        return BertForSequenceClassification(bert_config(hidden_size=arch["hidden_size"]))

    def evaluate(model):
        model.eval()
        with torch.no_grad():
            return {"score": float(model(input_ids=ids).logits.abs().mean())}

    teacher = BertForSequenceClassification.from_pretrained(teacher_dir)
    agent = search(tmp_path, build, evaluate, teacher=teacher, teacher_dir=teacher_dir)
    best = tmp_path / "out" / "best"
    files = no_pickles(best)
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= files
    assert files & {"tokenizer.json", "vocab.txt"}  # transformers 5 writes tokenizer.json
    trained = agent.trained_model(agent.summary()["best_trial"]).eval()
    reloaded = BertForSequenceClassification.from_pretrained(best).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, trained(input_ids=ids).logits, atol=1e-6, rtol=0)
    tokens = AutoTokenizer.from_pretrained(best)("w1 w2 w3")["input_ids"]
    assert tokens == AutoTokenizer.from_pretrained(teacher_dir)("w1 w2 w3")["input_ids"] == [2, 6, 7, 8, 3]
    info = json.loads((best / "metrics.json").read_text())
    assert info["weights"]["format"] == "transformers"
    assert info["teacher_metrics"] == pytest.approx(evaluate(teacher))
    assert "BertForSequenceClassification.from_pretrained(" in (best / "README.md").read_text()


class MLP(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        self.head = self.body[2]  # a tied module: its tensors are saved once

    def forward(self, x):
        return self.body(x)


def build_mlp(arch):
    torch.manual_seed(2)
    return MLP(arch["hidden_size"])


def test_plain_module_saved_and_rebuilt_by_load_student(tmp_path):
    x = torch.randn(4, 8)

    def evaluate(model):
        with torch.no_grad():
            return {"score": float(model(x).sum())}

    agent = search(tmp_path, build_mlp, evaluate, save="front", example_inputs=x)
    best_trial = agent.summary()["best_trial"]
    best = tmp_path / "out" / "best"
    assert no_pickles(best) == {"model.safetensors", "arch.json", "metrics.json", "README.md"}
    arch = agent.search_result[best_trial].arch
    saved = json.loads((best / "arch.json").read_text())
    assert saved == {"arch": arch, "class": "test_saving.MLP", "format": "autokd-torch"}
    rebuilt = autokd_torch.load_student(str(best), build_mlp)
    torch.testing.assert_close(rebuilt(x), agent.trained_model(best_trial)(x), atol=0, rtol=0)
    assert not torch.equal(build_mlp(arch)(x), rebuilt(x))  # the trained weights, not a fresh build
    with pytest.raises(autokd.AutoKDError, match="a plain nn.Module student: pass the model_builder"):
        autokd_torch.load_student(str(best))
    # save: front: the only front member of one metric is the best one, in front/ too
    assert os.listdir(tmp_path / "out" / "front") == [f"trial-{best_trial}"]


class Encoder(nn.Module):
    """A sentence encoder like the MiniLM example's: BERT, mean pooling, projection."""

    def __init__(self, bert, size=24, pooling="mean"):
        super().__init__()
        self.bert = bert
        self.projection = nn.Linear(bert.config.hidden_size, size)
        self.pooling = pooling

    @property
    def config(self):
        return self.bert.config

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
        if self.pooling == "cls":
            return self.projection(hidden[:, 0])
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.projection((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))


def encoder_batch():
    ids = torch.randint(5, 99, (3, 8))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_sentence_encoder_in_sentence_transformers_layout(tmp_path, teacher_dir, pooling):
    from safetensors.torch import load_file
    from transformers import AutoModel, BertForSequenceClassification

    batch = encoder_batch()

    def build(arch):
        from transformers import BertModel

        torch.manual_seed(3)
        return Encoder(BertModel(bert_config(hidden_size=arch["hidden_size"])), pooling=pooling)

    def evaluate(model):
        with torch.no_grad():
            return {"score": float(model(**batch).std())}

    teacher = BertForSequenceClassification.from_pretrained(teacher_dir)
    agent = search(tmp_path, build, evaluate, teacher=teacher, example_inputs=batch)
    best = tmp_path / "out" / "best"
    trained = agent.trained_model(agent.summary()["best_trial"]).eval()
    info = json.loads((best / "metrics.json").read_text())
    if pooling == "cls":  # not mean pooling: saved as a plain module, not mislabelled
        assert info["weights"]["format"] == "safetensors state dict + arch.json"
        return
    assert info["weights"]["format"] == "sentence-transformers"
    files = no_pickles(best)
    assert {"modules.json", "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors"} <= files
    assert "tokenizer_config.json" in files
    modules = json.loads((best / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    # rebuilt by hand from the layout: encoder, mean pooling, dense
    bert = AutoModel.from_pretrained(best).eval()
    dense = load_file(best / "2_Dense" / "model.safetensors")
    with torch.no_grad():
        hidden = bert(**batch)[0]
        mask = batch["attention_mask"].unsqueeze(-1).float()
        rebuilt = ((hidden * mask).sum(1) / mask.sum(1)) @ dense["linear.weight"].T + dense["linear.bias"]
        torch.testing.assert_close(rebuilt, trained(**batch), atol=1e-5, rtol=1e-5)
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(best), device="cpu")
    with torch.no_grad():
        out = model(copy.deepcopy(batch))["sentence_embedding"]
        expected = torch.nn.functional.normalize(trained(**batch), dim=-1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
