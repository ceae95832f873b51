"""Helpers of the autokd-optuna tests: a synthetic search that needs no model.

The "model" is the arch dict itself; eval_func scores it with closed-form accuracy and
latency shaped like the real trade-off, so every recorded number can be checked.
"""

from __future__ import annotations

import math

import autokd

SPACE = {
    "hidden_size": [128, 256, 384, 512],
    "intra_bottleneck_size": [64, 128, 160],
    "num_feedforward_networks": [2, 4],
}  # 24 points


def accuracy(arch: dict) -> float:
    size = arch["hidden_size"] * arch["intra_bottleneck_size"] * arch["num_feedforward_networks"]
    return round(0.9 - 0.4 * math.exp(-size / 60000.0) - 0.01 * (arch["num_feedforward_networks"] == 4), 6)


def latency(arch: dict) -> float:
    return round(
        arch["hidden_size"] * arch["num_feedforward_networks"] / 100.0 + arch["intra_bottleneck_size"] / 64.0, 6
    )


def make_search(
    algorithm: str,
    *,
    metrics=("accuracy",),
    max_trials: int = 6,
    seed: int | None = 0,
    space: dict | None = None,
    eval_func=None,
    train_func=None,
    **search,
) -> autokd.AutoDistillation:
    directions = {"accuracy": True, "latency": False}
    conf = {
        "auto_distillation": {
            "search": {
                "search_space": space or SPACE,
                "search_algorithm": algorithm,
                "metrics": list(metrics),
                "higher_is_better": [directions[m] for m in metrics],
                "max_trials": max_trials,
                "seed": seed,
                **search,
            }
        }
    }
    agent = autokd.AutoDistillation(lambda arch: dict(arch), conf)
    agent.show_progress = False
    agent.train_func = train_func or (lambda model: model)
    agent.eval_func = eval_func or (lambda model: {"accuracy": accuracy(model), "latency": latency(model)})
    return agent
