"""The search loop's own cost per trial, at 100, 1,000 and 3,000 instant trials (#17).

    python benchmarks/loop_cost.py [--sizes 100 1000 3000] [--repeats 3]

Each search uses the ``random`` advisor over a space of 20,736 points, two objectives
(accuracy up, latency down) and instant user functions (building, training and
evaluating cost nothing), so the wall time per trial is the loop's own: proposing,
appending the record to ``trials.jsonl`` (flushed and fsynced), telling the advisor,
keeping the front and the best, writing ``summary.json`` (at most once a second, and at
the end). The goal: at most 10 ms per trial at 3,000 trials, and within 1.5x of the
cost at 100. Sizes run in turn, ``--repeats`` times each (median); ratios are of
medians measured in the same run (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import autokd

SPACE = {
    "hidden_size": [64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416],
    "num_layers": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    "num_heads": [1, 2, 4, 8, 12, 16],
    "intermediate": [128, 256, 384, 512, 640, 768, 896, 1024],
    "embedding": [32, 64, 96],
}


def metrics(arch: dict) -> dict:
    size = arch["hidden_size"] * arch["num_layers"] * (arch["intermediate"] / 512) + arch["embedding"]
    return {"accuracy": 1 - 100 / (size + 100) + arch["num_heads"] * 1e-4, "latency": size / 100 + arch["num_heads"]}


def run(trials: int, seed: int) -> float:
    """Seconds per trial of a search of ``trials`` instant trials."""
    conf = {
        "search": {
            "search_space": SPACE,
            "search_algorithm": "random",
            "metrics": ["accuracy", "latency"],
            "higher_is_better": [True, False],
            "max_trials": trials,
            "seed": seed,
        }
    }
    agent = autokd.AutoDistillation(lambda arch: arch, conf)
    agent.show_progress = False
    agent.train_func = lambda model: model
    agent.eval_func = metrics
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        agent.search_loop(out)
        elapsed = time.perf_counter() - start
    assert len(agent.search_result) == trials
    return elapsed / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    per_trial: dict[int, list[float]] = {n: [] for n in args.sizes}
    for repeat in range(args.repeats):
        for n in args.sizes:
            per_trial[n].append(run(n, seed=repeat))
    base = statistics.median(per_trial[args.sizes[0]])
    print(f"{'trials':>7} {'ms/trial (median)':>18} {'runs (ms)':>24} {'x first size':>13}")
    for n in args.sizes:
        median = statistics.median(per_trial[n])
        runs = ", ".join(f"{v * 1e3:.2f}" for v in per_trial[n])
        print(f"{n:>7} {median * 1e3:>18.2f} {runs:>24} {median / base:>13.2f}")


if __name__ == "__main__":
    main()
