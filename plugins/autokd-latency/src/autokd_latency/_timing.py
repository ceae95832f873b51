"""The timing loop shared by both frameworks, and the statistics of its samples.

The method is timeit's: warm-up calls, then ``repeats`` timed samples with the garbage
collector off; a sample times enough back-to-back calls to last at least
``MIN_SAMPLE_S`` (a sub-millisecond call timed alone is mostly timer and scheduler
noise) and is divided by their number. The reported latency is the median sample, the
spread is kept next to it so a noisy measurement shows. The process's CPU time per call
is kept too: on a busy machine wall time grows while CPU time does not, so a ``cpu_ms``
far below ``median_ms`` (with one thread) says the machine, not the model, was slow.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence

import attrs

__all__ = ["LatencyResult", "MIN_SAMPLE_S", "time_calls", "summarize"]

MIN_SAMPLE_S = 0.002
# A ceiling on calls per sample, so a model that is near-free does not loop for ages.
_MAX_CALLS_PER_SAMPLE = 10_000


@attrs.frozen
class LatencyResult:
    """Milliseconds per batch: the median of ``repeats`` samples and their spread.

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

    def to_dict(self) -> dict:
        """Plain data for the trial record (``extras['latency']``)."""
        return attrs.asdict(self)


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
    return LatencyResult(
        median_ms=statistics.median(ms),
        mean_ms=mean,
        min_ms=ms[0],
        max_ms=ms[-1],
        q1_ms=q1,
        q3_ms=q3,
        iqr_ms=q3 - q1,
        cv=stdev / mean if mean > 0 else 0.0,
        repeats=len(ms),
        cpu_ms=statistics.median(cpu_samples_s) * 1e3 if cpu_samples_s else None,
        **fields,
    )


def time_calls(call: Callable[[], object], *, warmup: int, repeats: int) -> tuple[list[float], list[float], int]:
    """Run ``call`` ``warmup`` times, then take ``repeats`` samples.

    :returns: (wall seconds per call of each sample, CPU seconds per call of each
        sample, calls per sample).
    """
    for _ in range(warmup):
        call()
    start = time.perf_counter()
    call()  # one more call tells how many make a sample long enough to time
    single = time.perf_counter() - start
    calls = 1 if single >= MIN_SAMPLE_S else min(_MAX_CALLS_PER_SAMPLE, math.ceil(MIN_SAMPLE_S / max(single, 1e-7)))
    wall: list[float] = []
    cpu: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a sample would be charged to the model
    try:
        for _ in range(repeats):
            cpu_start = time.process_time()
            start = time.perf_counter()
            for _ in range(calls):
                call()
            wall.append((time.perf_counter() - start) / calls)
            cpu.append((time.process_time() - cpu_start) / calls)
    finally:
        if gc_was_enabled:
            gc.enable()
    return wall, cpu, calls
