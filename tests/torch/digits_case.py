"""A non-transformers case: MLPs on scikit-learn's 8x8 digits, as plain (inputs, labels)
tensors. Also the import targets of the `autokd run` config in test_digits.py."""

from __future__ import annotations

import functools

import torch
from torch import nn


@functools.lru_cache(maxsize=1)
def _split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return x_train, x_test, y_train, y_test


def train_data():
    x_train, _, y_train, _ = _split()
    return torch.utils.data.TensorDataset(x_train, y_train)


def eval_data():
    _, x_test, _, y_test = _split()
    return torch.utils.data.TensorDataset(x_test, y_test)


def build_mlp(arch, seed=0):
    """``model.builder``: a one-hidden-layer MLP; ``arch = {'hidden': width}``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, arch["hidden"]), nn.ReLU(), nn.Linear(arch["hidden"], 10))


@functools.lru_cache(maxsize=1)
def _trained_teacher_state():
    model = build_mlp({"hidden": 128}, seed=123)
    x, _, y, _ = _split()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def teacher():
    """``model.teacher``: an MLP of width 128 trained on the digits with labels."""
    model = build_mlp({"hidden": 128})
    model.load_state_dict(_trained_teacher_state())
    return model.eval()


def accuracy(model, data):
    x, y = data.tensors
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())
