"""``TrialRunner``: one evaluation, start to end (build or continue the model, train it,
evaluate it) as the record of it; executors call it wherever they run trials.

A runner keeps each candidate's trained model after its evaluation, so a promoted
candidate continues from the same model object at the next rung (``train_func(model,
budget)`` with the increment) and the search's chosen models can be distilled further or
saved, until the loop releases the candidate (its model is dropped and its checkpoint
directory deleted). A runner that does not hold a candidate's model (another process
evaluated it, or the search was resumed) builds it anew and trains ``done + budget`` from
scratch: the model ends with the same number of steps, at the cost of repeating ``done``.

Runners are picklable when the user's functions are (held models are not pickled).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import _trial
from .errors import AutoKDError, ConfigError
from .evaluation import EvalContext, metric_value
from .executor import TrialTask
from .results import TrialRecord, plain_metrics

__all__ = ["FatalSearchError", "TrialRunner", "accepts_budget", "add_budget", "budget_refusal", "failed_record"]

log = logging.getLogger("autokd")

CHECKPOINTS_DIR = "checkpoints"


class FatalSearchError(AutoKDError):
    """A problem that would fail every trial the same way: the search stops. Executors
    that run trials elsewhere raise it again in the driver."""


def accepts_budget(func: Callable) -> bool:
    """Whether ``func(model, budget)`` can be called: a parameter named ``budget``, or
    ``*args``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # a builtin or C function: cannot tell, trust it
        return True
    return any(p.name == "budget" or p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def budget_refusal(func: Callable, field: str) -> str:
    """The error for a train function without ``budget`` in a search that needs one
    (``field``: ``search.fidelity`` or ``final_distillation``)."""
    name = getattr(func, "__qualname__", None) or repr(func)
    return (
        f"auto_distillation.{field}: the train function {name} takes no `budget` parameter, but this search "
        f"trains each model in parts. Define it as train_func(model, budget): train `budget` (a fraction, or "
        f"one per stage) of every stage's train_steps, continuing the model it is given "
        f"(autokd.fidelity.stage_steps turns fractions into steps); or remove {field.rsplit('.', 1)[-1]}"
    )


def add_budget(done: float, budget: float | Sequence[float]) -> float | list[float]:
    """``done + budget`` for a scalar or a per-stage budget."""
    if isinstance(budget, int | float):
        return done + budget
    return [done + b for b in budget]


class TrialRunner:
    """Builds, trains and evaluates one :class:`~autokd.executor.TrialTask`.

    :param model_builder: ``model_builder(arch) -> model``.
    :param train_func: ``train_func(model)``, or ``train_func(model, budget)`` for tasks
        with a budget; may return the trained model.
    :param eval_func: ``eval_func(model) -> dict | number``.
    :param objectives: the search's objectives (a number from ``eval_func`` is the first).
    :param record: further metrics to record (``evaluation.record``).
    :param metric_options: ``evaluation.<metric>`` options, by metric name.
    :param output_dir: the search's output directory (checkpoints go under
        ``<output_dir>/checkpoints/candidate-<n>``).
    """

    def __init__(
        self,
        model_builder: Callable | None,
        train_func: Callable | None,
        eval_func: Callable | None,
        objectives: Sequence[Any],
        *,
        record: Sequence[str] = (),
        metric_options: Mapping[str, Mapping] | None = None,
        framework: str | None = None,
        example_inputs: Any = None,
        eval_data: Any = None,
        output_dir: str | None = None,
    ):
        self.model_builder = model_builder
        self.train_func = train_func
        self.eval_func = eval_func
        self.objectives = list(objectives)
        self.record = list(record)
        self.metric_options = {k: dict(v) for k, v in (metric_options or {}).items()}
        self.framework = framework
        self.example_inputs = example_inputs
        self.eval_data = eval_data
        self.output_dir = output_dir
        self._models: dict[int, tuple[Any, float]] = {}  # candidate -> (model, fraction trained)
        #: metrics some successful trial had (a metric missing from one trial only fails it)
        self.seen_metrics: set[str] = set()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_models"] = {}  # models stay where they were trained
        return state

    # --- held models ----------------------------------------------------------------------
    def model(self, candidate: int) -> Any:
        """The trained model of ``candidate`` held by this runner, or None."""
        held = self._models.get(candidate)
        return None if held is None else held[0]

    def held(self) -> list[int]:
        """The candidates whose models this runner holds."""
        return sorted(self._models)

    def checkpoint_dir(self, candidate: int) -> str | None:
        if self.output_dir is None:
            return None
        return os.path.join(self.output_dir, CHECKPOINTS_DIR, f"candidate-{candidate}")

    def release(self, candidate: int) -> None:
        """Drop ``candidate``'s model and delete its checkpoint directory."""
        self._models.pop(candidate, None)
        path = self.checkpoint_dir(candidate)
        if path is not None and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)

    # --- one evaluation ---------------------------------------------------------------------
    def __call__(self, task: TrialTask) -> TrialRecord:
        extras: dict = {}
        token = _trial._current.set(extras)
        start = time.perf_counter()
        budget = task.budget
        held = self._models.pop(task.candidate, None)
        if held is not None and not math.isclose(held[1], task.done):
            held = None  # a stale model (not the one this task continues)
        if held is None and task.done > 0 and budget is not None:
            # The model trained so far is not here (another worker, or a resumed search):
            # build it anew and train everything it should have by the end of this task.
            log.info(
                "trial %d: candidate %d's model is not held here; training it from scratch to %s of the budget",
                task.trial,
                task.candidate,
                add_budget(task.done, budget),
            )
            extras["retrained_from_scratch"] = True
            budget = add_budget(task.done, budget)
        done = held[1] if held is not None else 0.0
        context = _trial.TrialContext(
            task.trial, task.candidate, budget, done, task.rung, task.phase, self.checkpoint_dir(task.candidate)
        )
        ctx_token = _trial._context.set(context)
        try:
            if held is not None:
                model = held[0]
                extras["continued_from"] = done
            else:
                if self.model_builder is None:
                    raise AutoKDError(
                        "no model_builder: pass one to AutoDistillation or use a backend's built-in builder"
                    )
                model = self.model_builder(dict(task.arch))
            model, metrics = self.train_evaluate(model, budget)
            metrics = plain_metrics(metrics)
            bad = [o.name for o in self.objectives if metric_value(metrics.get(o.name)) is None]
            if bad:
                raise FloatingPointError(
                    "non-finite or non-numeric metric "
                    + ", ".join(f"{n}={metrics.get(n)!r} ({type(metrics.get(n)).__name__})" for n in bad)
                    + ": objectives must be finite numbers"
                )
            self._models[task.candidate] = (model, _total(task))
            self.seen_metrics.update(metrics)
            return self._record(task, metrics, "ok", None, time.perf_counter() - start, extras)
        except FatalSearchError:
            raise
        except Exception as exc:  # a failed trial is recorded and the search goes on
            log.warning("trial %d %s failed: %s: %s", task.trial, task.arch, type(exc).__name__, exc)
            extras["traceback"] = traceback.format_exc(limit=8)
            self.release(task.candidate)
            return self._record(task, {}, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - start, extras)
        finally:
            _trial._context.reset(ctx_token)
            _trial._current.reset(token)

    def _record(self, task: TrialTask, metrics, status, error, duration, extras) -> TrialRecord:
        return task_record(task, metrics, status, error, duration, extras)

    def train_evaluate(self, model: Any, budget: float | Sequence[float] | None = None) -> tuple[Any, dict]:
        """Train ``model`` (with ``budget`` when given), evaluate it with ``eval_func``
        and the registered evaluators; the trained model and its metrics."""
        if self.train_func is None or self.eval_func is None:
            raise AutoKDError(
                "train_func and eval_func must be set before the search (or use a backend: "
                "autokd_torch.Trainer.autodistillation / TFOptimization.autodistill)"
            )
        if budget is None:
            trained = self.train_func(model)
        else:
            trained = call_with_budget(self.train_func, model, budget)
        if trained is not None:
            model = trained
        return model, self.evaluate(model)

    def evaluate(self, model: Any, hardware: bool = True) -> dict:
        """``eval_func(model)`` as a dict, and (``hardware``) the registered evaluators of
        the objectives and recorded metrics it did not return."""
        metrics = self.eval_func(model)
        if isinstance(metrics, int | float) and not isinstance(metrics, bool):
            metrics = {self.objectives[0].name: float(metrics)}
        if not isinstance(metrics, Mapping):
            raise AutoKDError(f"eval_func must return a dict of metrics or a number, got {type(metrics).__name__}")
        metrics = dict(metrics)
        if hardware:
            for name in dict.fromkeys([o.name for o in self.objectives] + self.record):
                if name not in metrics:
                    metrics[name] = self._evaluate_with_plugin(name, model, metrics)
        return metrics

    def _evaluate_with_plugin(self, name: str, model: Any, returned: Mapping) -> float:
        from .plugins import registry

        try:
            evaluator = registry().evaluators.get(name, self.framework)
        except LookupError as exc:
            message = (
                f"metric {name!r} is neither returned by eval_func (it returned "
                f"{sorted(returned) or 'nothing'}) nor a registered evaluator."
            )
            # Fatal only when no trial ever had it; eval_func leaving it out for one
            # arch fails that trial, and the search (and its resume) goes on.
            if name in self.seen_metrics:
                raise LookupError(f"{message} Earlier trials had it: eval_func left it out for this arch") from None
            raise FatalSearchError(f"{message} {exc}") from None
        extras = _trial.current_extras()
        ctx = EvalContext(
            example_inputs=self.example_inputs,
            eval_data=self.eval_data,
            options=dict(self.metric_options.get(name, {})),
            framework=self.framework,
            extras={} if extras is None else extras,
        )
        try:
            return float(evaluator(model, ctx))
        except ConfigError as exc:
            # A bad evaluation.<metric> option fails every trial the same way, after its
            # training: stop the search instead of recording max_trials failures.
            raise FatalSearchError(f"metric {name!r}: {exc}") from None


def task_record(task: TrialTask, metrics: dict, status: str, error: str | None, duration: float, extras: dict):
    """The record of ``task``'s evaluation."""
    fidelity = task.budget is not None
    return TrialRecord(
        task.trial,
        dict(task.arch),
        metrics,
        status,
        error,
        duration,
        extras,
        budget=_recorded_budget(task) if fidelity else None,
        rung=task.rung,
        candidate=task.candidate if (fidelity or task.phase != "search") else None,
        phase=task.phase,
    )


def failed_record(task: TrialTask, reason: str, duration: float = 0.0) -> TrialRecord:
    """A failed record for ``task`` (e.g. its worker died), as an executor returns it."""
    return task_record(task, {}, "failed", reason, duration, {})


def call_with_budget(train_func: Callable, model: Any, budget: float | Sequence[float]) -> Any:
    """``train_func(model, budget)``, by keyword when ``budget`` is keyword-only."""
    try:
        param = inspect.signature(train_func).parameters.get("budget")
    except (TypeError, ValueError):
        param = None
    if param is not None and param.kind is inspect.Parameter.KEYWORD_ONLY:
        return train_func(model, budget=budget)
    return train_func(model, budget)


def _total(task: TrialTask) -> float:
    """The fraction of the full budget a model holds after ``task`` (a per-stage budget
    of a final distillation counts as its largest stage's)."""
    if task.budget is None:
        return 1.0  # trained without fidelity: the full budget
    trained_to = add_budget(task.done, task.budget)
    if isinstance(trained_to, int | float):
        return float(trained_to)
    return float(max(trained_to, default=0.0))


def _recorded_budget(task: TrialTask) -> float | list[float]:
    """What a record says was trained: the cumulative fraction of the configured steps."""
    return add_budget(task.done, task.budget)
