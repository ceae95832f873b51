"""Shared pieces of the nevergrad advisor tests: the seed's MobileBERT search space, a
synthetic accuracy/latency landscape over it, and searches run with user functions (the
"model" is the arch dict itself, so no framework is needed)."""

from __future__ import annotations

import json
import math
import random

from autokd_testing import MOBILEBERT_SPACE

import autokd

SPACE = autokd.SearchSpace(MOBILEBERT_SPACE)


def accuracy(arch: dict) -> float:
    """Grows with capacity and saturates, plus a fixed per-arch perturbation."""
    capacity = (
        0.4 * arch["hidden_size"] / 512
        + 0.3 * arch["intra_bottleneck_size"] / 160
        + 0.15 * arch["intermediate_size"] / 640
        + 0.15 * arch["num_feedforward_networks"] / 6
    )
    heads = {1: -0.02, 2: 0.0, 4: 0.01, 8: 0.005}[arch["num_attention_heads"]]
    noise = random.Random(SPACE.key(arch)).gauss(0.0, 0.004)
    return 0.9 - 0.35 * math.exp(-4.0 * capacity) + heads + noise


def latency(arch: dict) -> float:
    """Grows with size (milliseconds)."""
    work = arch["hidden_size"] * (arch["intermediate_size"] + 2 * arch["intra_bottleneck_size"])
    return work * arch["num_feedforward_networks"] / 1e5 + 0.1 * arch["num_attention_heads"]


def config(algorithm: str, *, metrics=("accuracy",), max_trials=8, seed=0, space=None, **advisor_options) -> dict:
    directions = {"accuracy": True, "latency": False}
    return {
        "auto_distillation": {
            "search": {
                "search_space": space or MOBILEBERT_SPACE,
                "search_algorithm": algorithm,
                "metrics": list(metrics),
                "higher_is_better": [directions[m] for m in metrics],
                "max_trials": max_trials,
                "seed": seed,
                "advisor_options": advisor_options,
            }
        }
    }


def make_search(conf: dict, eval_func=None) -> autokd.AutoDistillation:
    search = autokd.AutoDistillation(lambda arch: dict(arch), conf)
    search.show_progress = False
    search.train_func = lambda model: model
    search.eval_func = eval_func or (lambda model: {"accuracy": accuracy(model), "latency": latency(model)})
    return search


def recorded_trials(output_dir) -> list[dict]:
    with open(output_dir / "trials.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]
