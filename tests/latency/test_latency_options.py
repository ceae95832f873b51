"""Framework-free behaviour: registration, options, framework detection, statistics and
the timing loop. Runs without torch and without tensorflow."""

from __future__ import annotations

import time

import pytest

import autokd
import autokd_latency
from autokd_latency import _timing
from autokd_latency._options import validate_options


def test_the_four_evaluators_are_registered_as_costs():
    reg = autokd.registry().evaluators
    for name in ("latency", "params", "flops", "model_size"):
        registration = reg.registration(name)
        assert registration.plugin == "latency"
        assert registration.distribution == "autokd-latency"
        assert registration.framework is None
        assert reg.direction(name) is False
    assert reg.get("latency", "pytorch") is autokd_latency.latency
    assert reg.get("flops", "tensorflow") is autokd_latency.flops


def test_configs_may_leave_directions_out():
    cfg = autokd.load_config(
        {"search": {"search_space": {"width": [8, 16]}, "metrics": ["flops", "latency"], "search_algorithm": "random"}}
    )
    assert [(o.name, o.higher_is_better) for o in cfg.search.objectives()] == [("flops", False), ("latency", False)]


# --- options ----------------------------------------------------------------------------


def test_defaults_fill_in():
    assert validate_options("latency", {}) == {
        "batch_size": None,
        "seq_len": None,
        "warmup": 5,
        "repeats": 30,
        "threads": 1,
        "tolerance": 0.01,
        "min_seconds": 1.5,
        "max_seconds": 4.0,
    }
    assert validate_options("flops", {"batch_size": 4}) == {"batch_size": 4, "seq_len": None, "ops": "all"}
    assert validate_options("params", None) == {"trainable_only": False}
    assert validate_options("model_size", {}) == {}


def test_unknown_option_names_the_accepted_ones_and_the_close_match():
    with pytest.raises(autokd.ConfigError) as info:
        validate_options("latency", {"repeat": 3})
    assert str(info.value) == (
        "invalid configuration: evaluation.latency.repeat: unknown option "
        "(accepted: batch_size, seq_len, warmup, repeats, threads, tolerance, min_seconds, max_seconds); did you mean 'repeats'?"
    )


def test_every_bad_option_is_reported_at_once():
    with pytest.raises(autokd.ConfigError) as info:
        validate_options("latency", {"batch_size": 0, "warmup": -1, "threads": True, "seq_len": "128"})
    assert info.value.problems == [
        "evaluation.latency.batch_size: expected a positive integer, got 0",
        "evaluation.latency.seq_len: expected a positive integer, got '128'",
        "evaluation.latency.warmup: expected an integer >= 0, got -1",
        "evaluation.latency.threads: expected a positive integer, got True",
    ]


def test_choice_and_boolean_options():
    with pytest.raises(autokd.ConfigError, match=r"evaluation\.flops\.ops: expected one of 'all', 'matmul', got 'mac'"):
        validate_options("flops", {"ops": "mac"})
    with pytest.raises(autokd.ConfigError, match=r"evaluation\.params\.trainable_only: expected true or false, got 1"):
        validate_options("params", {"trainable_only": 1})
    with pytest.raises(
        autokd.ConfigError, match=r"evaluation\.model_size\.unit: unknown option: model_size takes no options"
    ):
        validate_options("model_size", {"unit": "MiB"})


def test_options_are_checked_before_the_model():
    # A bad option is reported even for a model that could not be measured anyway.
    context = autokd.EvalContext(options={"repeats": 0})
    with pytest.raises(autokd.ConfigError, match="evaluation.latency.repeats"):
        autokd_latency.latency(object(), context)


# --- framework detection ----------------------------------------------------------------


def _fake_model(*modules: str):
    """An instance whose class hierarchy claims the given modules, without importing them."""
    bases: tuple = (object,)
    for module in reversed(modules):
        bases = (type("Base", bases, {"__module__": module}),)
    return type("Model", bases, {"__module__": "user_code"})()


def test_framework_is_read_from_the_class_hierarchy_without_importing_it():
    assert (
        autokd_latency.detect_framework(_fake_model("transformers.modeling_utils", "torch.nn.modules.module"))
        == "pytorch"
    )
    assert autokd_latency.detect_framework(_fake_model("tf_keras.src.engine.training")) == "tensorflow"
    assert autokd_latency.detect_framework(_fake_model("tensorflow.python.module.module")) == "tensorflow"


def test_unsupported_model_type_is_a_clear_error():
    class Regressor:
        pass

    for evaluator in (autokd_latency.latency, autokd_latency.params, autokd_latency.flops, autokd_latency.model_size):
        with pytest.raises(autokd_latency.UnsupportedModelError) as info:
            evaluator(Regressor(), autokd.EvalContext())
        name = evaluator.__name__
        assert str(info.value) == (
            f"{name}: cannot evaluate a model of type "
            f"{Regressor.__module__}.test_unsupported_model_type_is_a_clear_error.<locals>.Regressor: supported are "
            f"PyTorch models (torch.nn.Module) and TensorFlow/Keras models (keras.Model, tf.Module). If the model "
            f"wraps one, have model_builder return the wrapped torch or Keras model"
        )
        assert isinstance(info.value, autokd.AutoKDError)


# --- statistics and the timing loop -----------------------------------------------------


def test_summary_statistics_by_hand():
    # 8 samples (seconds); inclusive quartiles of 1..8 ms are 2.75 and 6.25 ms.
    result = _timing.summarize([t / 1000 for t in (8, 1, 7, 2, 6, 3, 5, 4)], warmup=0, calls_per_repeat=1)
    assert result.median_ms == pytest.approx(4.5)
    assert result.mean_ms == pytest.approx(4.5)
    assert (result.min_ms, result.max_ms) == (pytest.approx(1.0), pytest.approx(8.0))
    assert (result.q1_ms, result.q3_ms) == (pytest.approx(2.75), pytest.approx(6.25))
    assert result.iqr_ms == pytest.approx(3.5)
    # sample standard deviation of 1..8 is sqrt(6) = 2.449..., over the mean 4.5
    assert result.cv == pytest.approx(6**0.5 / 4.5)
    assert result.repeats == 8
    single = _timing.summarize([0.002], warmup=1, calls_per_repeat=1)
    assert (single.median_ms, single.iqr_ms, single.cv) == (pytest.approx(2.0), 0.0, 0.0)


def test_a_fast_call_is_batched_into_samples_long_enough_to_time():
    calls = []
    samples, cpu, per_sample = _timing.time_calls(lambda: calls.append(1), warmup=3, repeats=4)
    assert per_sample > 1 and len(cpu) == 4
    # warm-up, one calibration call, then repeats x calls-per-sample
    assert len(calls) == 3 + 1 + 4 * per_sample
    assert len(samples) == 4 and all(s > 0 for s in samples)


def test_a_slow_call_is_timed_alone():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(_timing.MIN_SAMPLE_S * 1.5)

    samples, cpu, per_sample = _timing.time_calls(slow, warmup=0, repeats=3)
    assert per_sample == 1
    assert len(calls) == 1 + 3
    assert all(s >= _timing.MIN_SAMPLE_S * 1.5 for s in samples)
    # sleeping takes wall time but almost no CPU time: what a busy machine looks like
    assert all(c < s / 2 for c, s in zip(cpu, samples, strict=True))
    result = _timing.summarize(samples, cpu, warmup=0, calls_per_repeat=1)
    assert result.cpu_ms == pytest.approx(sorted(cpu)[1] * 1e3)


def test_the_garbage_collector_is_restored():
    import gc

    assert gc.isenabled()
    _timing.time_calls(lambda: None, warmup=0, repeats=2)
    assert gc.isenabled()


# --- the robust estimate (issue #16) ------------------------------------------------------


def test_the_estimate_is_the_median_of_the_fastest_one_percent():
    # 1000 samples of 1..1000 ms: the fastest 1% are 1..10 ms, their median 5.5 ms
    assert _timing.low_estimate([t / 1000 for t in range(1000, 0, -1)]) == pytest.approx(5.5 / 1000)
    # fewer than 300 samples: the fastest 3
    assert _timing.low_estimate([0.009, 0.001, 0.007, 0.002, 0.003, 0.030]) == pytest.approx(0.002)
    result = _timing.summarize([t / 1000 for t in (9, 1, 7, 2, 3, 30)], warmup=0, calls_per_repeat=1)
    assert result.latency_ms == pytest.approx(2.0) and result.median_ms == pytest.approx(5.0)


class FakeClock:
    """``time.perf_counter`` of the timing loop, advanced only by the timed calls: the
    rounds' stopping rule is tested without the machine's noise."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        monkeypatch.setattr(_timing.time, "perf_counter", lambda: self.now)


A_S = 1 / 256  # 3.90625 ms: a dyadic fraction, so the fake clock adds up exactly
B_S = A_S * 17 / 16  # 4.150390625 ms, 1/16 slower


def block_pattern(blocks):
    """Per-call delays: the calibration call, then per block 32 samples (4 rounds of 8,
    which last 0.125 s at A_S and 0.1328 s at B_S: a block closes after >= 0.1 s, so
    each block is 4 rounds) at A_S or B_S."""
    yield A_S
    for block in blocks:
        yield from [B_S if block == "b" else A_S] * 32


def test_relative_spread_is_the_standard_error_of_the_block_estimates():
    # blocks 1.0, 1.1, 0.9, 1.0: stdev sqrt(0.02 / 3) = 0.08165, / sqrt(4) = 0.040825
    assert _timing.relative_spread([1.0, 1.1, 0.9, 1.0], 1.0) == pytest.approx(0.0408248, rel=1e-5)
    assert _timing.relative_spread([1.0, 1.1, 0.9, 1.0], 0.5) == pytest.approx(0.0816497, rel=1e-5)
    assert _timing.relative_spread([1.0], 1.0) == float("inf")


def test_a_steady_machine_stops_after_the_minimum_blocks(monkeypatch):
    clock = FakeClock(monkeypatch)

    def steady():
        clock.now += A_S

    wall, cpu, calls, stats = _timing.measure_adaptive(steady, warmup=0, repeats=8, max_seconds=30, min_seconds=0)
    # 5 blocks of 4 rounds of 8 samples, all equal: spread 0 after the 5th block (0.625 s)
    assert (stats["blocks"], stats["rounds"], len(wall), calls) == (5, 20, 160, 1)
    assert stats["spread"] == 0 and stats["elapsed_s"] == 0.625
    assert stats["latency_ms"] == pytest.approx(3.90625)
    # min_seconds holds it: the 8th block ends at 1.0 s
    stats = _timing.measure_adaptive(steady, warmup=0, repeats=8, min_seconds=1.0)[3]
    assert (stats["blocks"], stats["rounds"], stats["elapsed_s"]) == (8, 32, 1.0)


def test_blocks_that_disagree_keep_the_sampling_going_until_the_spread_is_small(monkeypatch):
    clock = FakeClock(monkeypatch)
    delays = block_pattern("abababababababab")

    def call():
        clock.now += next(delays)

    wall, cpu, calls, stats = _timing.measure_adaptive(
        call, warmup=0, repeats=8, max_seconds=30, min_seconds=0, tolerance=0.01
    )
    # block estimates alternate A, B = A + d (d = A / 16); the estimate is A. After 10
    # blocks (5 each) the spread is d / 6 / A = 1/96 = 1.04% > 1%; after 11 (6 A, 5 B) the
    # standard deviation is d * sqrt(3 / 11), the spread d * sqrt(3) / 11 / A = 0.984%.
    assert (stats["blocks"], stats["rounds"], len(wall)) == (11, 44, 352)
    assert stats["spread"] == pytest.approx(3**0.5 / 11 / 16)
    assert stats["latency_ms"] == pytest.approx(A_S * 1e3)
    # a looser tolerance stops at the minimum 5 blocks: spread 1.53% <= 2%
    clock.now = 0.0
    delays = block_pattern("abababababababab")
    stats = _timing.measure_adaptive(call, warmup=0, repeats=8, max_seconds=30, min_seconds=0, tolerance=0.02)[3]
    assert (stats["blocks"], stats["rounds"]) == (5, 20)


def test_the_sampling_stops_at_max_seconds_whatever_the_spread(monkeypatch):
    clock = FakeClock(monkeypatch)
    delays = block_pattern("ab" * 20)

    def call():
        clock.now += next(delays)

    wall, cpu, calls, stats = _timing.measure_adaptive(
        call, warmup=0, repeats=8, max_seconds=1.0, min_seconds=0, tolerance=0.001
    )
    # 7 blocks (4 A of 0.125 s, 3 B of 0.1328125 s) end at 0.8984375 s; block 8 (B) has
    # rounds of 0.033203125 s, its 4th ends at 1.03125 s: past the cap, and it closes it
    assert (stats["rounds"], stats["blocks"], stats["elapsed_s"]) == (32, 8, 1.03125)
    assert stats["spread"] > 0.001
