"""How the nevergrad advisors compare with ``random`` on the synthetic MobileBERT landscape
of the tests (tests/nevergrad/nevergrad_helpers.py): accuracy that grows with size and
saturates, plus a fixed per-arch perturbation; latency that grows with size.

For each advisor named on the command line, over seeds 0..19:

- median trials until an arch reaches 99% of the best accuracy (accuracy only, at most 100);
- median hypervolume of the (accuracy, latency) front after 20 and 50 trials, as a
  fraction of the whole space's front (reference: worst accuracy, worst latency);
- median wall time of one ask+tell.

    python plugins/autokd-nevergrad/benchmarks/landscape.py random NGOpt DE CMA

The project-wide comparison of every installed advisor is benchmarks/advisors.py.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings

import autokd
from autokd.advisor import with_budget

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "nevergrad"))
from nevergrad_helpers import SPACE, accuracy, latency

ACCURACY = autokd.Objective("accuracy", True)
LATENCY = autokd.Objective("latency", False)
SEEDS = range(20)


def _hypervolume(points, reference):
    """Area dominated by ``points`` (accuracy up, latency down) above ``reference``."""
    area, best_latency = 0.0, reference[1]
    for acc, lat in sorted(set(points), key=lambda p: (-p[0], p[1])):
        if lat < best_latency:
            area += (acc - reference[0]) * (best_latency - lat)
            best_latency = lat
    return area


def _advisor(factory, objectives, seed, budget):
    """As the search loop builds it: told the number of trials (100 for the
    single-objective run, 50 for the two-objective one)."""
    return factory(SPACE, objectives, seed=seed, **with_budget(factory, {}, budget))


def main(names):
    accuracies = {SPACE.key(p): accuracy(p) for p in SPACE.points()}
    latencies = {SPACE.key(p): latency(p) for p in SPACE.points()}
    target = 0.99 * max(accuracies.values())
    reference = (min(accuracies.values()), max(latencies.values()))
    whole = _hypervolume(list(zip(accuracies.values(), latencies.values(), strict=True)), reference)
    advisors = autokd.registry().advisors

    for name in names:
        trials, volumes, seconds = [], {20: [], 50: []}, []
        for seed in SEEDS:
            advisor = _advisor(advisors.get(name), [ACCURACY], seed, budget=100)
            for n in range(1, 101):
                start = time.perf_counter()
                arch = advisor.ask()
                value = accuracies[SPACE.key(arch)]
                advisor.tell(arch, [value])
                seconds.append(time.perf_counter() - start)
                if value >= target:
                    break
            trials.append(n)

            advisor = _advisor(advisors.get(name), [ACCURACY, LATENCY], seed, budget=50)
            seen = []
            for n in range(1, 51):
                start = time.perf_counter()
                arch = advisor.ask()
                key = SPACE.key(arch)
                advisor.tell(arch, [accuracies[key], latencies[key]])
                seconds.append(time.perf_counter() - start)
                seen.append((accuracies[key], latencies[key]))
                if n in volumes:
                    volumes[n].append(_hypervolume(seen, reference) / whole)
        print(
            f"{name:28s} trials to 99%: {statistics.median(trials):5.1f}   "
            f"hypervolume @20: {statistics.median(volumes[20]):.3f}  @50: {statistics.median(volumes[50]):.3f}   "
            f"ask+tell: {1000 * statistics.median(seconds):6.1f} ms",
            flush=True,
        )


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    main(sys.argv[1:] or ["random", "NGOpt", "DE", "TwoPointsDE", "CMA", "OnePlusOne", "PortfolioDiscreteOnePlusOne"])
