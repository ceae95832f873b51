"""Benchmark every installed advisor on a fixed synthetic landscape over the seed's
MobileBERT search space (issue #4).

    python benchmarks/advisors.py                 # every advisor, 20 seeds (BO: 5, see below)
    python benchmarks/advisors.py --advisors TPE,random --seeds 5

The landscape is shaped like the real trade-off and fixed by ``LANDSCAPE_SEED``:
accuracy grows with the student's parameter count and saturates, is hurt by heads much
smaller or larger than 32 dimensions and by a bottleneck far narrower than the hidden
size, plus a fixed per-arch noise (the spread of a trained student); latency grows with
the work per token, plus a small per-arch noise.

For each advisor it prints:

- the median number of trials to reach 99% of the best accuracy of the whole space
  (single objective; a run that has not reached it after ``--cap`` trials counts as
  ``cap + 1``),
- the hypervolume of the (accuracy, latency) Pareto front after 20 and 50 trials, as a
  fraction of the true front's (objectives scaled to [0, 1] over the true front; the
  reference point is the front's nadir pushed out by 10% of that range),
- the advisor's own time per trial (its ask and tell calls, re-proposals included),
- and the ratios to ``random``: the headline figures.

Each search runs the way ``AutoDistillation.search_loop`` drives an advisor: a
re-proposed evaluated arch is answered from the results (``tell`` again, no trial) and,
after 50 re-proposals in a row, the loop picks an unevaluated arch itself.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import statistics
import sys
import time
import warnings

# One thread per worker process: the jobs run in parallel, and GP's torch and numpy
# would otherwise compete for the same cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import autokd
from autokd import Objective, SearchExhausted, SearchSpace
from autokd.advisor import with_budget

SPACE = {
    "hidden_size": [128, 246, 384, 512],
    "intra_bottleneck_size": [64, 96, 128, 160],
    "num_attention_heads": [1, 2, 4, 8],
    "intermediate_size": [384, 512, 640],
    "num_feedforward_networks": [2, 4, 6],
}
LAYERS = 24
LANDSCAPE_SEED = 2024
TARGET = 0.99
HV_AT = (20, 50)
MAX_REPEATS = 50  # as AutoDistillation's loop
# Twenty seeds of random search give a noisy median (a geometric-like distribution): the
# ratios are taken against random search averaged over many more seeds, which is cheap.
BASELINE = "random (baseline)"
ACCURACY = Objective("accuracy", True)
LATENCY = Objective("latency", False)


# --- the landscape ---------------------------------------------------------------------


def student_params(arch: dict) -> int:
    """MobileBERT-like parameter count: bottleneck in/out, attention on the bottleneck,
    ``num_feedforward_networks`` stacked FFNs per layer."""
    h, b = arch["hidden_size"], arch["intra_bottleneck_size"]
    i, f = arch["intermediate_size"], arch["num_feedforward_networks"]
    return LAYERS * (2 * h * b + 4 * b * b + 2 * f * b * i)


class Landscape:
    """Accuracy and latency of every arch of ``SPACE``, fixed by ``LANDSCAPE_SEED``."""

    def __init__(self, seed: int = LANDSCAPE_SEED):
        self.space = SearchSpace(SPACE)
        rng = random.Random(seed)
        self.accuracy: dict[str, float] = {}
        self.latency: dict[str, float] = {}
        for arch in self.space.points():
            key = self.space.key(arch)
            h, b, a = arch["hidden_size"], arch["intra_bottleneck_size"], arch["num_attention_heads"]
            params = student_params(arch)
            saturating = 0.30 * (1.0 - math.exp(-params / 8e6))
            heads = -0.012 * math.log2(b / a / 32) ** 2
            squeeze = -0.015 * max(0.0, math.log2(h / b) - 2)
            self.accuracy[key] = 0.60 + saturating + heads + squeeze + rng.gauss(0.0, 0.004)
            flops_per_token = 2 * params
            launches = LAYERS * (3 + arch["num_feedforward_networks"]) + 0.5 * LAYERS * a
            latency_ms = 0.4 + flops_per_token / 2.5e8 + launches * 0.004
            self.latency[key] = latency_ms * (1.0 + rng.gauss(0.0, 0.01))
        self.best_accuracy = max(self.accuracy.values())
        self.target = TARGET * self.best_accuracy
        self.lat_range = (min(self.latency.values()), max(self.latency.values()))
        # Objectives are scaled to [0, 1] over the true front and the reference point is
        # the front's nadir pushed out by 10% of its range: archs far from the front add
        # nothing (from the worst arch of the space, random search alone covers most of
        # the volume and every advisor looks alike).
        front = self._front(self.accuracy)
        self.front_size = len(front)
        accs = [self.accuracy[k] for k in front]
        lats = [self.latency[k] for k in front]
        self._acc_scale = (min(accs), max(accs))
        self._lat_scale = (min(lats), max(lats))
        self.true_hv = self.hypervolume(self.accuracy)

    def _front(self, keys) -> list[str]:
        keys = sorted(keys, key=lambda k: (-self.accuracy[k], self.latency[k]))
        front, best_latency = [], math.inf
        for k in keys:
            if self.latency[k] < best_latency:
                front.append(k)
                best_latency = self.latency[k]
        return front

    def values(self, key: str, objectives) -> list[float]:
        return [self.accuracy[key] if o.name == "accuracy" else self.latency[key] for o in objectives]

    def hypervolume(self, keys) -> float:
        """Hypervolume of the (accuracy up, latency down) front of ``keys``."""
        (a0, a1), (l0, l1) = self._acc_scale, self._lat_scale
        ref = -0.1  # in scaled units, for both objectives
        volume, best_speed = 0.0, ref
        for k in self._front(keys):  # accuracy descending, latency descending too
            acc = (self.accuracy[k] - a0) / (a1 - a0)
            speed = (l1 - self.latency[k]) / (l1 - l0)
            if acc > ref and speed > best_speed:
                volume += (acc - ref) * (speed - best_speed)
                best_speed = speed
        return volume


# --- one search, driven like AutoDistillation.search_loop ----------------------------


def run_search(factory, options: dict, objectives, seed: int, landscape: Landscape, max_trials: int, stop=None):
    """Trials in order (arch keys) and the advisor's own time in seconds."""
    space = landscape.space
    advisor = factory(SPACE, objectives, seed=seed, **with_budget(factory, options, max_trials))
    loop_rng = random.Random(seed + 7919)
    results: dict[str, list[float]] = {}
    order: list[str] = []
    advisor_s = 0.0
    while len(order) < max_trials:
        arch = None
        try:
            for _ in range(MAX_REPEATS):
                start = time.perf_counter()
                proposal = space.validate(advisor.ask())
                advisor_s += time.perf_counter() - start
                key = space.key(proposal)
                if key not in results:
                    arch = proposal
                    break
                start = time.perf_counter()
                advisor.tell(proposal, results[key])
                advisor_s += time.perf_counter() - start
        except SearchExhausted:
            break
        if arch is None:
            remaining = [p for p in space.points() if space.key(p) not in results]
            arch = remaining[loop_rng.randrange(len(remaining))]
        key = space.key(arch)
        results[key] = landscape.values(key, objectives)
        order.append(key)
        start = time.perf_counter()
        advisor.tell(arch, results[key])
        advisor_s += time.perf_counter() - start
        if stop is not None and stop(key):
            break
    return order, advisor_s


def benchmark_one(job: tuple[str, str, dict, int, int]) -> dict:
    """Both searches of one advisor and one seed."""
    label, name, options, seed, cap = job
    warnings.simplefilter("ignore")
    landscape = _landscape()
    factory = autokd.registry().advisors.get(name)
    try:
        single, single_s = run_search(
            factory, options, [ACCURACY], seed, landscape, cap, stop=lambda k: landscape.accuracy[k] >= landscape.target
        )
        reached = landscape.accuracy[single[-1]] >= landscape.target if single else False
        multi, multi_s = run_search(factory, options, [ACCURACY, LATENCY], seed, landscape, max(HV_AT))
    except Exception as exc:  # noqa: BLE001 - one broken advisor must not hide the others' figures
        return {"label": label, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "label": label,
        "seed": seed,
        "trials_to_target": len(single) if reached else cap + 1,
        "hv": {n: landscape.hypervolume(multi[:n]) / landscape.true_hv for n in HV_AT},
        "advisor_ms_per_trial": 1000.0 * (single_s + multi_s) / (len(single) + len(multi)),
    }


_LANDSCAPE: Landscape | None = None


def _landscape() -> Landscape:
    global _LANDSCAPE
    if _LANDSCAPE is None:
        _LANDSCAPE = Landscape()
    return _LANDSCAPE


def random_median_trials(size: int, good: int) -> int:
    """The median number of uniform draws without replacement to hit one of ``good``
    archs among ``size``: the smallest n with P(no hit in n) <= 1/2."""
    miss = 1.0
    for n in range(1, size + 1):
        miss *= (size - good - (n - 1)) / (size - (n - 1))
        if miss <= 0.5:
            return n
    return size


# --- the table ---------------------------------------------------------------------------


def summarise(results: list[dict], cap: int) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for label in dict.fromkeys(r["label"] for r in results):
        runs = [r for r in results if r["label"] == label]
        errors = [r["error"] for r in runs if "error" in r]
        ok = [r for r in runs if "error" not in r]
        if not ok:
            table[label] = {"error": errors[0], "seeds": 0}
            continue
        table[label] = {
            "seeds": len(ok),
            "median_trials": statistics.median(r["trials_to_target"] for r in ok),
            "not_reached": sum(r["trials_to_target"] > cap for r in ok),
            "hv": {n: statistics.mean(r["hv"][n] for r in ok) for n in HV_AT},
            "ms": statistics.mean(r["advisor_ms_per_trial"] for r in ok),
            "errors": errors,
        }
    return table


def render(table: dict[str, dict], cap: int) -> str:
    base = table.get(BASELINE) or table.get("random")
    head = (
        f"{'advisor':<28} {'seeds':>5} {'trials to 99%':>13} {'x random':>8} "
        + " ".join(f"{'HV@' + str(n):>7} {'x random':>8}" for n in HV_AT)
        + f" {'ms/trial':>9}"
    )
    lines = [head, "-" * len(head)]
    order = {BASELINE: 0, "random": 1}
    for label, row in sorted(table.items(), key=lambda item: (order.get(item[0], 2), item[0].lower())):
        if "error" in row:
            lines.append(f"{label:<28} failed: {row['error']}")
            continue
        median = row["median_trials"]
        shown = f">{cap}" if median > cap else f"{median:g}"
        speedup = f"{base['median_trials'] / median:.2f}" if base and "error" not in base else "-"
        cells = []
        for n in HV_AT:
            ratio = f"{row['hv'][n] / base['hv'][n]:.2f}" if base and "error" not in base else "-"
            cells.append(f"{row['hv'][n]:>7.3f} {ratio:>8}")
        lines.append(
            f"{label:<28} {row['seeds']:>5} {shown:>13} {speedup:>8} " + " ".join(cells) + f" {row['ms']:>9.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per advisor (default 20)")
    parser.add_argument(
        "--bo-seeds",
        type=int,
        default=5,
        help="seeds for BO, whose GP refit costs about a second per trial on 2 CPU cores (default 5)",
    )
    parser.add_argument(
        "--baseline-seeds",
        type=int,
        default=1000,
        help="seeds of the random baseline the ratios are taken against (default 1000; 0: the 20-seed random row)",
    )
    parser.add_argument("--cap", type=int, default=100, help="single-objective trial budget (default 100)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes")
    parser.add_argument("--advisors", help="comma-separated advisor names (default: every installed one)")
    parser.add_argument("--no-variants", action="store_true", help="skip the option variants (NSGA2 population 50)")
    parser.add_argument("--json", help="also write the per-seed results to this file")
    args = parser.parse_args(argv)

    registry = autokd.registry()
    names = args.advisors.split(",") if args.advisors else registry.advisors.names()
    if "random" not in names:
        names.append("random")
    runs: list[tuple[str, str, dict]] = [(registry.advisors.registration(n).name, n, {}) for n in names]
    if args.baseline_seeds:
        runs.append((BASELINE, "random", {}))
    if not args.no_variants and "NSGA2" in [r[0] for r in runs]:
        # optuna's own default population, against autokd-optuna's 10.
        runs.append(("NSGA2[population_size=50]", "NSGA2", {"population_size": 50}))

    jobs = []
    for label, name, options in runs:
        seeds = args.bo_seeds if registry.advisors.registration(name).name == "BO" else args.seeds
        if label == BASELINE:
            seeds = args.baseline_seeds
        jobs += [(label, name, options, seed, args.cap) for seed in range(seeds)]

    landscape = _landscape()
    near_best = sum(v >= landscape.target for v in landscape.accuracy.values())
    exact = random_median_trials(landscape.space.size, near_best)
    print(
        f"landscape: {landscape.space.size} archs, best accuracy {landscape.best_accuracy:.4f}, "
        f"{near_best} archs within {TARGET:.0%} of it; latency {landscape.lat_range[0]:.2f}-"
        f"{landscape.lat_range[1]:.2f} ms; {landscape.front_size} archs on the true Pareto front; "
        f"random search needs {exact} trials to reach 99% with probability 1/2 (exact)"
    )
    print(
        f"{len(runs)} advisors, {args.seeds} seeds each"
        + (
            f" (BO: {args.bo_seeds} seeds, to keep the run under 10 minutes: its GP refit costs about a second "
            f"per trial)"
            if args.bo_seeds != args.seeds and any(r[0] == "BO" for r in runs)
            else ""
        )
        + f", {args.jobs} processes; single objective up to {args.cap} trials, two objectives {max(HV_AT)} trials"
    )
    started = time.perf_counter()
    results = []
    # BO jobs first: they are the longest, the others fill in around them.
    jobs.sort(key=lambda j: registry.advisors.registration(j[1]).name != "BO")
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(args.jobs) as pool:
        for done, result in enumerate(pool.imap_unordered(benchmark_one, jobs), 1):
            results.append(result)
            print(f"\r  {done}/{len(jobs)} searches done", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    table = summarise(results, args.cap)
    print(render(table, args.cap))
    print(
        f"trials to 99%: median over seeds; x random = the random baseline's median / the advisor's (higher is "
        f"better). HV@n: mean over seeds of the front's hypervolume after n trials / the true front's; x random = "
        f"advisor / random baseline. ms/trial: the advisor's own ask+tell time per trial. The baseline is random "
        f"search over {args.baseline_seeds or args.seeds} seeds."
    )
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"results": results, "table": table}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
