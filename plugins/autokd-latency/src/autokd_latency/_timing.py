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
is the median of the fastest ``LOW_FRACTION`` of them (at least 3); sampling goes on in
rounds for at least ``min_seconds`` and ``MIN_SAMPLES``, and while that estimate still
drops by more than ``SETTLE_TOLERANCE`` since half the samples were in, up to
``max_seconds``. The median, quartiles and CV of all
samples are kept next to it, and so is the estimate's drift, so a contended
measurement shows. The process's CPU time per call is kept too: with one thread, a
``cpu_ms`` far below ``median_ms`` says the machine, not the model, was slow.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence

import attrs

__all__ = ["MIN_SAMPLE_S", "LatencyResult", "low_estimate", "measure_adaptive", "summarize", "time_calls"]

MIN_SAMPLE_S = 0.0002
# A ceiling on calls per sample, so a model that is near-free does not loop for ages.
_MAX_CALLS_PER_SAMPLE = 10_000
LOW_FRACTION = 0.01
# The estimate has settled when doubling the samples no longer finds faster ones: it
# dropped by at most SETTLE_TOLERANCE since half the samples were in, with at least
# MIN_SAMPLES (so the fastest 1% are 3 or more). Measured (2 cores, load average 28, a
# 0.2 ms MLP, ten calls): stopping after 3 steady rounds of 30 gave CV 10.9%, after
# 300 samples (0.1-0.5 s) 14.8%: contention comes in spells longer than that; sampling
# for 2 s gave 2.1%. So the rounds also last at least MIN_SECONDS.
SETTLE_TOLERANCE = 0.01
MIN_SAMPLES = 300
MAX_ROUNDS = 100_000
MIN_SECONDS = 1.0
MAX_SECONDS = 3.0


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
    :ivar drift: relative change of the estimate over the last rounds (how settled it is).
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
    drift: float | None = None
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
) -> tuple[list[float], list[float], int, dict]:
    """Warm-up, then rounds of ``repeats`` samples until :func:`low_estimate` settles
    (at least ``MIN_SAMPLES`` and ``min_seconds``, and it dropped by at most
    ``SETTLE_TOLERANCE`` since half the samples were in) or ``max_seconds`` have passed.

    :returns: (wall and CPU seconds per call of each sample, calls per sample, the
        ``rounds``, ``drift`` (None before ``MIN_SAMPLES``), ``elapsed_s`` and
        ``latency_ms`` of the estimate).
    """
    for _ in range(warmup):
        call()
    calls = _calls_per_sample(call)
    wall: list[float] = []
    cpu: list[float] = []
    history: list[tuple[int, float]] = []  # (samples, estimate) after each round
    drift = None
    gc_was_enabled = gc.isenabled()
    gc.disable()
    start = time.perf_counter()
    try:
        while True:
            _sample(call, calls, repeats, wall, cpu)
            estimate = low_estimate(wall)
            history.append((len(wall), estimate))
            if len(wall) >= MIN_SAMPLES:
                at_half = [e for n, e in history if n <= len(wall) / 2]
                drift = ((at_half[-1] if at_half else history[0][1]) - estimate) / estimate if estimate > 0 else 0.0
            elapsed = time.perf_counter() - start
            settled = drift is not None and drift <= SETTLE_TOLERANCE and elapsed >= min_seconds
            if settled or len(history) >= MAX_ROUNDS or time.perf_counter() - start >= max_seconds:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    stats = {
        "rounds": len(history),
        "drift": drift,
        "elapsed_s": time.perf_counter() - start,
        "latency_ms": history[-1][1] * 1e3,
        "repeats": repeats,
    }
    return wall, cpu, calls, stats
