"""The options each evaluator accepts (``evaluation.<metric>`` in a config), validated
all at once so one run reports every bad option with its path and the accepted ones."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from autokd import ConfigError

__all__ = ["OPTIONS", "Option", "validate_options"]


def _positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"expected a positive integer, got {value!r}"
    return None


def _non_negative_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"expected an integer >= 0, got {value!r}"
    return None


def _positive_number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return f"expected a positive number, got {value!r}"
    return None


def _non_negative_number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return f"expected a number >= 0, got {value!r}"
    return None


def _boolean(value: Any) -> str | None:
    if not isinstance(value, bool):
        return f"expected true or false, got {value!r}"
    return None


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value not in choices:
            return f"expected one of {', '.join(map(repr, choices))}, got {value!r}"
        return None

    return check


@attrs.frozen
class Option:
    """One option: its name, default, a check returning a problem (or None) and a line
    of documentation."""

    name: str
    default: Any
    check: Callable[[Any], str | None]
    doc: str


_BATCH_SIZE = Option(
    "batch_size",
    None,
    _positive_int,
    "rows per batch: the example batch is sliced or repeated to this size (default: the example "
    "batch's size, or 1 when inputs are built from the model's config)",
)
_SEQ_LEN = Option(
    "seq_len",
    None,
    _positive_int,
    "sequence length: the example batch is cut or repeated along dimension 1 to this length "
    "(default: the example's own, or 128 capped at max_position_embeddings when inputs are built)",
)

OPTIONS: dict[str, tuple[Option, ...]] = {
    "latency": (
        _BATCH_SIZE,
        _SEQ_LEN,
        Option("warmup", 5, _non_negative_int, "untimed calls before timing"),
        Option("repeats", 30, _positive_int, "timed samples per round (the clock is read between rounds)"),
        Option(
            "threads",
            1,
            _positive_int,
            "intra-op threads during the measurement (torch.set_num_threads; TensorFlow: see the docs; "
            "ONNX Runtime: the session's intra_op_num_threads)",
        ),
        Option(
            "tolerance",
            0.01,
            _positive_number,
            "sampling stops once the estimate's relative standard error (from its 0.1 s blocks) is at most this",
        ),
        Option("min_seconds", 1.5, _non_negative_number, "sample at least this long (contention comes in spells)"),
        Option("max_seconds", 4.0, _positive_number, "time limit of the sampling (the spread may still be larger)"),
    ),
    "params": (Option("trainable_only", False, _boolean, "return the trainable count instead of the total"),),
    "flops": (
        _BATCH_SIZE,
        _SEQ_LEN,
        Option(
            "ops",
            "all",
            _one_of("all", "matmul"),
            "'all': everything the framework's counter counts; 'matmul': matrix products, "
            "convolutions and attention only (what PyTorch's counter counts, so TensorFlow and "
            "PyTorch figures compare)",
        ),
    ),
    "model_size": (),
}
# The ONNX Runtime latencies take the same options and follow the same timing rules.
OPTIONS["onnx_latency"] = OPTIONS["latency"]
OPTIONS["onnx_latency_int8"] = OPTIONS["latency"]


def validate_options(evaluator: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options of ``evaluator`` with defaults filled in; raises
    :class:`autokd.ConfigError` naming every bad option and the accepted ones."""
    accepted = OPTIONS[evaluator]
    names = [o.name for o in accepted]
    path = f"evaluation.{evaluator}"
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{path}: expected a mapping of options, got {type(options).__name__} {options!r}")
    problems: list[str] = []
    for key in options:
        if key not in names:
            if not names:
                problems.append(f"{path}.{key}: unknown option: {evaluator} takes no options")
                continue
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{path}.{key}: unknown option (accepted: {', '.join(names)}){hint}")
    resolved: dict[str, Any] = {}
    for option in accepted:
        value = options.get(option.name, option.default)
        if option.name in options and not (value is None and option.default is None):
            problem = option.check(value)
            if problem is not None:
                problems.append(f"{path}.{option.name}: {problem}")
                continue
        resolved[option.name] = value
    if problems:
        raise ConfigError(problems)
    return resolved
