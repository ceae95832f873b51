"""A tiny BERT teacher and a token classification task for the torch trial run through the
ray executor (imported by name in Ray's workers, as a user's own module would be)."""

from __future__ import annotations

import copy

import torch

VOCAB, SEQ_LEN = 99, 8


def teacher():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=VOCAB,
        max_position_embeddings=32, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BertForSequenceClassification(copy.deepcopy(config)).eval()


class TokenDataset(torch.utils.data.Dataset):
    """Random token sequences labelled by how many tokens are below VOCAB/2."""

    def __init__(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(1, VOCAB, (n, SEQ_LEN), generator=g)
        self.labels = torch.bucketize((self.input_ids < VOCAB // 2).sum(1), torch.tensor([3, 5]))

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, i):
        return {"input_ids": self.input_ids[i], "attention_mask": torch.ones(SEQ_LEN, dtype=torch.long),
                "labels": self.labels[i]}  # fmt: skip


def train_data(size=24):
    return TokenDataset(size, seed=1)


def eval_data(size=24):
    return TokenDataset(size // 2, seed=2)


CONFIG = """
model:
  name: tiny_bert_search
  framework: pytorch
  teacher: bert_task:teacher
  builder_options:
    model_cls: AutoModelForSequenceClassification
auto_distillation:
  search:
    search_space:
      hidden_size: [8, 16]
      intermediate_size: [12]
    search_algorithm: grid
    metrics: [accuracy, eval_loss]
    higher_is_better: [true, false]
    max_trials: 2
    seed: 11
    executor: {executor}
  flash_distillation:
    block_names: ['bert.encoder.layer.1']
    layer_mappings_for_knowledge_transfer: [
      [
        ['bert.encoder.layer.1.attention.self', '1', 'bert.encoder.layer.1.attention.self', '1'],
        ['bert.encoder.layer.1.output', 'bert.encoder.layer.1.output'],
      ]
    ]
    loss_types: [['KL', 'MSE']]
    train_steps: [3]
  regular_distillation:
    loss_types: ['CE', 'KL']
    loss_weights: [0.5, 0.5]
    train_steps: [3]
train:
  optimizer:
    Adam:
      learning_rate: 0.01
  batch_size: 8
evaluation:
  batch_size: 12
data:
  train: bert_task:train_data
  eval: bert_task:eval_data
"""


def run_search(tmp_path, name, executor):
    """``autokd run`` of the tiny BERT search with ``executor``; its records."""
    import json

    from autokd.cli import run_config

    path = tmp_path / f"{name}.yaml"
    path.write_text(CONFIG.format(executor=executor))
    run_config(str(path), output_dir=str(tmp_path / name), progress=False)
    lines = (tmp_path / name / "trials.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda t: t["trial"])
