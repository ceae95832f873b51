"""The ``output:`` section and the saved students: which trained students a search keeps
and saves (``output.save: best | front | none``), where (``<output_dir>/best/``,
``<output_dir>/front/trial-N/``), and the ``metrics.json`` and model card ``README.md``
written beside each. The weights themselves are saved by the framework's backend
(``Backend.save_student``); the ONNX copy by the ``autokd-onnx`` plugin.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from .errors import ConfigError

__all__ = [
    "CARD_FILE",
    "METRICS_FILE",
    "OutputConfig",
    "SaveContext",
    "record_budget",
    "record_phase",
    "save_outputs",
    "students_to_save",
]

log = logging.getLogger("autokd")

METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
SAVE_CHOICES = ("best", "front", "none")
QUANTIZE_CHOICES = ("none", "dynamic_int8", "static_int8")


@attrs.frozen
class OutputConfig:
    """``output``: what a search saves besides its records.

    :ivar save: ``best`` (the chosen student, in ``<output_dir>/best/``), ``front``
        (also every full-budget member of the Pareto front, in
        ``<output_dir>/front/trial-N/``) or ``none``.
    :ivar onnx: also export each saved student to ONNX (``model.onnx``; needs the
        ``autokd-onnx`` plugin).
    :ivar quantize: ``none``, ``static_int8`` (an onnxruntime static-quantised
        ``model.int8.onnx``, activations calibrated on the evaluation data) or
        ``dynamic_int8`` (dynamic quantisation, no calibration); the int8 copy's task
        metrics are measured again. Needs ``onnx: true``.
    """

    save: str = "best"
    onnx: bool = False
    quantize: str = "none"


def check_output(output: OutputConfig, problems: list[str]) -> None:
    """Append the problems of an ``output`` section (config validation)."""
    if output.save not in SAVE_CHOICES:
        problems.append(f"output.save: expected one of {', '.join(SAVE_CHOICES)}, got {output.save!r}")
    if output.quantize not in QUANTIZE_CHOICES:
        problems.append(f"output.quantize: expected one of {', '.join(QUANTIZE_CHOICES)}, got {output.quantize!r}")
    elif output.quantize != "none" and not output.onnx:
        problems.append(f"output.quantize: {output.quantize} quantises the ONNX copy: set output.onnx: true as well")
    if output.onnx and output.save == "none":
        problems.append("output.onnx: true exports the saved students, but output.save is none: save best or front")


def check_output_plugins(output: OutputConfig, framework: str) -> None:
    """Before any training: the ONNX export needs the autokd-onnx plugin (and, for
    TensorFlow, tf2onnx)."""
    if not output.onnx:
        return
    if importlib.util.find_spec("autokd_onnx") is None:
        raise ConfigError(
            "output.onnx: true needs the autokd-onnx plugin: pip install autokd-onnx (or set onnx: false)"
        )
    import autokd_onnx

    autokd_onnx.check_available(framework, output.quantize)


@attrs.frozen
class SaveContext:
    """What a backend's ``save_student`` may use besides the model and its record.

    :ivar evaluate: ``evaluate(model, hardware=False) -> dict``: the search's task
        metrics of any model called like the student (e.g. an ONNX Runtime copy);
        ``hardware=True`` adds the registered evaluators' metrics too.
    :ivar teacher: the teacher model when the backend loaded one (a tokenizer saved
        beside a student is the teacher's).
    """

    config: Any
    output_dir: str
    framework: str
    example_inputs: Any = None
    eval_data: Any = None
    teacher: Any = None
    teacher_metrics: dict | None = None
    evaluate: Callable[..., dict] | None = None
    command: str = ""

    @property
    def output(self) -> OutputConfig:
        return self.config.output


# --- which trials ------------------------------------------------------------------------


def record_budget(record: Any) -> float | list[float] | None:
    """The budget fraction a trial trained with (None: the full budget, no fidelity
    schedule; a list, one per stage, for a final distillation given train_steps)."""
    value = getattr(record, "budget", None)
    if value is None:
        value = record.extras.get("budget") if isinstance(record.extras, Mapping) else None
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [float(v) for v in value]
    return float(value)


def record_phase(record: Any) -> str:
    value = getattr(record, "phase", None)
    if value is None and isinstance(record.extras, Mapping):
        value = record.extras.get("phase")
    return value or "search"


def finished(records: Sequence[Any]) -> tuple[list, list]:
    """(full-budget search evaluations, final-distillation evaluations), successful ones
    only: the loop's rule (the front is the search's full-budget evaluations; the best
    comes from the final distillation when there is one)."""
    final = [r for r in records if r.ok and record_phase(r) == "final"]
    search = [r for r in records if r.ok and record_phase(r) != "final" and _full_budget(record_budget(r))]
    return search, final


def _full_budget(budget: float | list[float] | None) -> bool:
    if budget is None:
        return True
    return min(budget) >= 1.0 if isinstance(budget, list) else budget >= 1.0


def chosen(records: Sequence[Any], objectives, constraints) -> tuple[list, Any, bool]:
    """(Pareto front, best record, whether it meets the constraints) by :func:`finished`."""
    from .results import pareto_front, select_best

    search, final = finished(records)
    best, feasible = select_best(final or search, objectives, constraints)
    return pareto_front(search, objectives), best, feasible


def students_to_save(records: Sequence[Any], objectives, constraints, save: str) -> list[tuple[Any, str]]:
    """(record, directory relative to the output dir) of every student to save."""
    if save == "none":
        return []
    front, best, _ = chosen(records, objectives, constraints)
    out = [] if best is None else [(best, "best")]
    if save == "front":
        out += [(r, os.path.join("front", f"trial-{r.trial}")) for r in front]
    return out


# --- saving ------------------------------------------------------------------------------


def evaluate_function(agent) -> Callable[..., dict]:
    """``evaluate(model, hardware=False)``: the search's eval function on ``model``
    (and, with ``hardware=True``, the registered evaluators of the metrics it did not
    return), outside any trial."""

    def evaluate(model: Any, hardware: bool = False) -> dict:
        runner = agent.runner if agent.runner is not None else agent._make_runner()
        return _plain(runner.evaluate(model, hardware=hardware))

    return evaluate


def _backend_for(agent):
    backend = getattr(agent, "backend", None)
    if backend is not None:
        return backend
    from .plugins import registry

    try:
        return registry().trainers.get(agent.framework)
    except LookupError:
        return None


def save_outputs(agent) -> list[str]:
    """Save the students ``output.save`` asks for under ``agent.output_dir``; returns the
    directories written. The trained models are those this process holds
    (``agent.trained_model``): with ``processes`` / ``ray`` they stay in the workers, and
    only their metrics.json and model card are written."""
    output: OutputConfig = agent.config.output
    chosen = students_to_save(agent.search_result, agent.objectives, agent.constraints, output.save)
    if not chosen:
        return []
    models = {r.trial: agent.trained_model(r.candidate_number) for r, _ in chosen}
    kept_models = {trial: model for trial, model in models.items() if model is not None}
    backend = _backend_for(agent)
    evaluate = evaluate_function(agent) if agent.eval_func is not None else None
    teacher = getattr(agent, "teacher", None)
    teacher_metrics = getattr(agent, "teacher_metrics", None)
    if teacher_metrics is None and teacher is not None and evaluate is not None:
        # Every process measures (a backend's evaluation may be collective), ...
        try:
            teacher_metrics = evaluate(teacher, hardware=True)
        except Exception as exc:  # the card says the teacher was not measured
            log.warning(
                "output: measuring the teacher failed (%s: %s); the model card omits it", type(exc).__name__, exc
            )
    from .results import is_main_process, main_process_alone

    if not is_main_process():  # ... and only the main one writes files.
        return []
    with main_process_alone():
        return _save(agent, kept_models, chosen, backend, evaluate, teacher, teacher_metrics)


def _save(agent, kept_models, chosen, backend, evaluate, teacher, teacher_metrics) -> list[str]:
    output: OutputConfig = agent.config.output
    context = SaveContext(
        config=agent.config,
        output_dir=agent.output_dir,
        framework=agent.framework,
        example_inputs=agent.example_inputs,
        eval_data=agent.eval_data,
        teacher=teacher,
        teacher_metrics=teacher_metrics,
        evaluate=evaluate,
        command=" ".join(shlex.quote(a) for a in sys.argv),
    )
    written = []
    for record, relative in chosen:
        directory = os.path.join(agent.output_dir, relative)
        if os.path.isdir(directory):  # a resumed search saves afresh
            shutil.rmtree(directory)
        os.makedirs(directory)
        model = kept_models.get(record.trial)
        info = {"trial": record.trial, "phase": record_phase(record), "arch": dict(record.arch)}
        info["metrics"] = _plain(record.metrics)
        info["teacher_metrics"] = teacher_metrics
        budget = record_budget(record)
        if budget is not None:
            info["budget"] = budget
        if model is None:
            info["weights"] = None
            log.warning(
                "output: the trained student of trial %d is not in this process (e.g. a resumed search); "
                "%s holds its metrics only",
                record.trial,
                directory,
            )
        elif backend is None or not callable(getattr(backend, "save_student", None)):
            info["weights"] = None
            log.warning(
                "output: no installed backend saves trial %d's %s, so only its metrics and model card are written "
                "(install the backend of model.framework, or set output.save: none)",
                record.trial,
                type(model).__name__,
            )
        else:
            # The search's records are safe already: a student that cannot be saved (a
            # model type the backend does not know, a failed export) is reported in its
            # metrics.json and the log, and the others are still saved.
            args = (model, directory, record, context)
            info["weights"] = _attempt(
                info, "weights", lambda m, d, r, c: backend.save_student(m, d, record=r, context=c), args
            )
            if output.onnx and info["weights"] is not None:
                info["onnx"] = _attempt(info, "onnx", _export_onnx, args)
        _write_json(os.path.join(directory, METRICS_FILE), info)
        from .modelcard import model_card

        with open(os.path.join(directory, CARD_FILE), "w", encoding="utf-8") as fh:
            fh.write(model_card(info, context, relative))
        log.info("output: trial %d saved in %s", record.trial, directory)
        written.append(directory)
    return written


def _attempt(info: dict, what: str, work: Callable[..., Any], args: tuple) -> Any:
    try:
        return work(*args)
    except Exception as exc:
        info[f"{what}_error"] = f"{type(exc).__name__}: {exc}"
        log.warning("output: trial %d: saving the %s failed: %s", info["trial"], what, info[f"{what}_error"])
        return None


def _export_onnx(model: Any, directory: str, record: Any, context: SaveContext) -> dict:
    import autokd_onnx

    return autokd_onnx.export_student(model, directory, record=record, context=context)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, int | float | str | bool):
        try:
            return item()
        except (TypeError, ValueError):
            return str(value)
    return value


def _write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
