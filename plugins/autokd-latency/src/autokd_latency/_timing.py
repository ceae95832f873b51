"""The timing loop shared by every runtime, and the statistics of its samples.

The method: warm-up calls, then timed samples with the garbage collector off; a sample
times enough back-to-back calls to last at least ``MIN_SAMPLE_S`` and is divided by
their number. Samples are taken in rounds of ``repeats`` until the estimate settles.

The estimate is a low quantile, not the median: on a shared machine a neighbour only
ever adds time (preemption, a busy sibling core), so the fastest samples are the ones
the model ran undisturbed. Measured here (2 cores, load average 10-14, a 0.2-0.4 ms MLP,
ten measurements in a row): the median of 30 samples varied by 12-104% (CV), the 10th
percentile by 9-13%, the fastest of ~600 one-call samples by 4% (issue #16). So samples
are short (one call when a call lasts ``MIN_SAMPLE_S``), many, and the reported latency
is the median of the fastest ``LOW_FRACTION`` of them (at least 3).

How long to sample is decided by the estimate's own spread: the samples are grouped in
consecutive time blocks of ``BLOCK_SECONDS``, each block gets its own low estimate, and
sampling stops once the relative standard error of those (``spread``) is at most
``tolerance``, after ``MIN_BLOCKS`` blocks and ``min_seconds``, or at ``max_seconds``.
Contention comes in spells longer than a block, and blocks that disagree keep the
sampling going: an idle machine is done in ``MIN_BLOCKS`` blocks, a busy one samples
longer, up to the cap. The median, quartiles and CV of all samples are kept next to it,
and so is the spread, so a contended measurement shows. The process's CPU time per call
is kept too: with one thread, a ``cpu_ms`` far below ``median_ms`` says the machine, not
the model, was slow.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence

import attrs

__all__ = [
    "MIN_SAMPLE_S",
    "LatencyResult",
    "low_estimate",
    "measure_adaptive",
    "relative_spread",
    "summarize",
    "time_calls",
]

MIN_SAMPLE_S = 0.0002
# A ceiling on calls per sample, so a model that is near-free does not loop for ages.
_MAX_CALLS_PER_SAMPLE = 10_000
LOW_FRACTION = 0.01
# The stop rule (see the module's docs). Measured (2 cores, a 0.2 ms MLP, ten calls in a
# row): at load average 25 the former rule (stop once the estimate dropped by <= 1%
# since half the samples were in, after 300 samples and 1 s) gave CV 7.2%, a fixed 2 s
# of sampling 2.1% at load 27-29. Contention comes in spells longer than a call of 0.5 s,
# which the blocks of one call cannot see: with only the spread rule (5 blocks, 0.56 s
# a call) ten calls varied by 2.4% in one run and 13.5% in the next at load 7, with
# min_seconds 1.5 by 2.7% (fixed 2 s beside it: 4.2%), so sampling lasts 1.5 s at least.
BLOCK_SECONDS = 0.1
MIN_BLOCKS = 5
TOLERANCE = 0.01
MAX_ROUNDS = 100_000
MIN_SECONDS = 1.5
MAX_SECONDS = 4.0


def relative_spread(block_estimates: Sequence[float], estimate: float) -> float:
    """The estimate's relative standard error, from the estimates of its time blocks:
    ``stdev(block_estimates) / sqrt(len(block_estimates)) / estimate``. Blocks that
    disagree (a neighbour came and went) keep the sampling going."""
    if len(block_estimates) < 2 or estimate <= 0:
        return math.inf
    return statistics.stdev(block_estimates) / math.sqrt(len(block_estimates)) / estimate


def low_estimate(samples: Sequence[float]) -> float:
    """The median of the fastest ``LOW_FRACTION`` of ``samples`` (at least 3 of them)."""
    ordered = sorted(samples)
    count = min(len(ordered), max(3, math.ceil(LOW_FRACTION * len(ordered))))
    return statistics.median(ordered[:count])


@attrs.frozen
class LatencyResult:
    """Milliseconds per batch: the estimate (``latency_ms``) and the spread of the samples.

    :ivar latency_ms: the reported latency: a low quantile of the samples (see the
        module's docs).
    :ivar spread: the estimate's relative standard error, from its time blocks' estimates
        (see :func:`relative_spread`; None before ``MIN_BLOCKS`` blocks).
    :ivar cv: coefficient of variation of the samples (standard deviation / mean).
    :ivar iqr_ms: interquartile range of the samples.
    :ivar cpu_ms: median CPU time of the process per call (all its threads).
    """

    median_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    q1_ms: float
    q3_ms: float
    iqr_ms: float
    cv: float
    repeats: int
    warmup: int
    calls_per_repeat: int
    cpu_ms: float | None = None
    threads: int | None = None
    batch_size: int | None = None
    input_shapes: dict = attrs.field(factory=dict)
    framework: str | None = None
    latency_ms: float | None = None
    estimator: str = "median of the fastest 1% of samples (at least 3)"
    samples: int | None = None
    rounds: int | None = None
    blocks: int | None = None
    spread: float | None = None
    elapsed_s: float | None = None

    def to_dict(self) -> dict:
        """Plain data for the trial record (``extras['latency']``)."""
        return attrs.asdict(self)

    @classmethod
    def from_samples(cls, wall: Sequence[float], cpu: Sequence[float], stats: dict, **fields) -> LatencyResult:
        """A result of :func:`measure_adaptive`'s samples."""
        return summarize(wall, cpu, **stats, **fields)


def summarize(samples_s: Sequence[float], cpu_samples_s: Sequence[float] | None = None, **fields) -> LatencyResult:
    """A :class:`LatencyResult` from per-call wall (and CPU) times in seconds."""
    if not samples_s:
        raise ValueError("no timing samples")
    ms = sorted(t * 1e3 for t in samples_s)
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
        stdev = statistics.stdev(ms)
    else:
        q1 = q3 = ms[0]
        stdev = 0.0
    mean = statistics.fmean(ms)
    fields.setdefault("repeats", len(ms))
    fields.setdefault("samples", len(ms))
    fields.setdefault("latency_ms", low_estimate(ms))
    return LatencyResult(
        median_ms=statistics.median(ms),
        mean_ms=mean,
        min_ms=ms[0],
        max_ms=ms[-1],
        q1_ms=q1,
        q3_ms=q3,
        iqr_ms=q3 - q1,
        cv=stdev / mean if mean > 0 else 0.0,
        cpu_ms=statistics.median(cpu_samples_s) * 1e3 if cpu_samples_s else None,
        **fields,
    )


def _calls_per_sample(call: Callable[[], object]) -> int:
    start = time.perf_counter()
    call()  # one more call tells how many make a sample long enough to time
    single = time.perf_counter() - start
    return 1 if single >= MIN_SAMPLE_S else min(_MAX_CALLS_PER_SAMPLE, math.ceil(MIN_SAMPLE_S / max(single, 1e-7)))


def _sample(call: Callable[[], object], calls: int, repeats: int, wall: list, cpu: list) -> None:
    for _ in range(repeats):
        cpu_start = time.process_time()
        start = time.perf_counter()
        for _ in range(calls):
            call()
        wall.append((time.perf_counter() - start) / calls)
        cpu.append((time.process_time() - cpu_start) / calls)


def time_calls(call: Callable[[], object], *, warmup: int, repeats: int) -> tuple[list[float], list[float], int]:
    """Run ``call`` ``warmup`` times, then take ``repeats`` samples (one round).

    :returns: (wall seconds per call of each sample, CPU seconds per call of each
        sample, calls per sample).
    """
    for _ in range(warmup):
        call()
    calls = _calls_per_sample(call)
    wall: list[float] = []
    cpu: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a sample would be charged to the model
    try:
        _sample(call, calls, repeats, wall, cpu)
    finally:
        if gc_was_enabled:
            gc.enable()
    return wall, cpu, calls


def measure_adaptive(
    call: Callable[[], object],
    *,
    warmup: int,
    repeats: int,
    max_seconds: float = MAX_SECONDS,
    min_seconds: float = MIN_SECONDS,
    tolerance: float = TOLERANCE,
) -> tuple[list[float], list[float], int, dict]:
    """Warm-up, then rounds of ``repeats`` samples, grouped in blocks of at least
    ``BLOCK_SECONDS``, until the estimate's spread (:func:`relative_spread` of the
    blocks' estimates) is at most ``tolerance``, after at least ``MIN_BLOCKS`` blocks and
    ``min_seconds``; or until ``max_seconds`` have passed.

    :returns: (wall and CPU seconds per call of each sample, calls per sample, the
        ``rounds``, ``blocks``, ``spread`` (None before ``MIN_BLOCKS`` blocks),
        ``elapsed_s`` and ``latency_ms`` of the estimate).
    """
    for _ in range(warmup):
        call()
    calls = _calls_per_sample(call)
    wall: list[float] = []
    cpu: list[float] = []
    rounds = 0
    block_start, block_first = 0.0, 0  # when and at which sample the open block began
    block_estimates: list[float] = []
    spread = None
    gc_was_enabled = gc.isenabled()
    gc.disable()
    start = time.perf_counter()
    try:
        while True:
            _sample(call, calls, repeats, wall, cpu)
            rounds += 1
            elapsed = time.perf_counter() - start
            if elapsed - block_start >= BLOCK_SECONDS:
                block_estimates.append(low_estimate(wall[block_first:]))
                block_start, block_first = elapsed, len(wall)
                if len(block_estimates) >= MIN_BLOCKS:
                    spread = relative_spread(block_estimates, low_estimate(wall))
                    if spread <= tolerance and elapsed >= min_seconds:
                        break
            if rounds >= MAX_ROUNDS or elapsed >= max_seconds:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    stats = {
        "rounds": rounds,
        "blocks": len(block_estimates),
        "spread": spread,
        "elapsed_s": time.perf_counter() - start,
        "latency_ms": low_estimate(wall) * 1e3,
        "repeats": repeats,
    }
    return wall, cpu, calls, stats
