"""``AutoDistillation``: the search loop of model exploration, flash distillation and
evaluation.

One trial: ``model_arch_proposition()`` (advisor ``ask``; a point already evaluated is
answered from ``search_result`` and does not use up a trial) → ``model_builder(arch)`` →
``train_evaluate(model)`` (``train_func`` then ``eval_func``, then registered evaluators
for metrics the eval function did not return) → appended to ``trials.jsonl`` → advisor
``tell`` → Pareto front and ``best_model_arch`` updated.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from . import _trial
from .advisor import Advisor, Objective, SearchExhausted, with_budget
from .config import Config, load_config, to_dict
from .errors import AutoKDError, ConfigError
from .evaluation import EvalContext
from .output import check_output_plugins, save_outputs, students_to_save
from .plugins import registry
from .results import ResultStore, TrialRecord, pareto_front, select_best
from .space import SearchSpace

__all__ = ["AutoDistillation"]

log = logging.getLogger("autokd")

# How often an advisor may re-propose evaluated points before the loop proposes an
# unevaluated point itself (some optimisers keep proposing their incumbent).
_MAX_REPEATS = 50


class AutoDistillation:
    """Search for the best student architecture.

    :param model_builder: ``model_builder(arch: dict) -> model``.
    :param conf_fname_or_obj: a YAML path, a dict of any layout the design shows, or a
        config object.
    :param framework: ``'pytorch'`` or ``'tensorflow'``; overrides ``model.framework``.

    With user ``train_func`` and ``eval_func`` no backend plugin is needed.
    """

    def __init__(self, model_builder: Callable | None, conf_fname_or_obj: Any, framework: str | None = None):
        self.config: Config = load_config(conf_fname_or_obj, framework)
        if self.config.auto_distillation is None:
            raise ConfigError("auto_distillation: missing: a search needs an auto_distillation.search section", self.config.source)
        self.framework = self.config.model.framework
        search = self.config.search
        self.search_space = SearchSpace(search.search_space)
        self.model_builder = model_builder
        self.train_func: Callable | None = None
        self.eval_func: Callable | None = None
        self.objectives: list[Objective] = search.objectives()
        self.constraints = search.parsed_constraints()
        self.max_trials = search.max_trials
        self.seed = search.seed
        self.search_result: list[TrialRecord] = []
        self.best_model_arch: dict | None = None
        self.example_inputs: Any = None
        self.eval_data: Any = None
        self.output_dir: str | None = None
        self.show_progress = True
        # Saving the students (output.save): the backend that saves them, the teacher
        # they are compared with, and the trained models that may still be saved.
        self.backend: Any = None
        self.teacher: Any = None
        self.teacher_metrics: dict | None = None
        self.saved_students: list[str] = []
        self._kept_models: dict[int, Any] = {}
        self._trained_model: Any = None
        self._advisor: Advisor | None = None
        # The loop's own fallback proposals draw from their own RNG, never the global one.
        self._rng = random.Random(None if self.seed is None else self.seed + 7919)

    # --- advisor ------------------------------------------------------------------------
    @property
    def advisor(self) -> Advisor:
        if self._advisor is None:
            self._advisor = self._make_advisor()
        return self._advisor

    @advisor.setter
    def advisor(self, value: Advisor) -> None:
        self._advisor = value

    def _make_advisor(self) -> Advisor:
        search = self.config.search
        factory = registry().advisors.get(search.search_algorithm)
        options = dict(search.advisor_options)
        # Storage settings are part of the search section; advisors that share state use them.
        for key in ("storage", "study_name"):
            value = getattr(search, key)
            if value is not None:
                options[key] = value
        # An advisor that plans by its number of evaluations gets max_trials.
        options = with_budget(factory, options, self.max_trials)
        try:
            return factory(self.search_space, self.objectives, seed=self.seed, **options)
        except ConfigError:
            raise  # the advisor already named the field (e.g. search.storage) and the fix
        except TypeError as exc:
            raise ConfigError(
                f"auto_distillation.search.advisor_options: {search.search_algorithm} rejected the options "
                f"{sorted(options)}: {exc}"
            ) from None
        except ValueError as exc:
            raise ConfigError(f"auto_distillation.search.advisor_options: {exc}") from None

    # --- the seed's methods -------------------------------------------------------------
    def _evaluated(self) -> dict[str, TrialRecord]:
        return {self.search_space.key(r.arch): r for r in self.search_result}

    def model_arch_proposition(self) -> dict:
        """The next architecture to train: the advisor's proposal, or, when it keeps
        proposing evaluated points, an unevaluated point drawn by the loop."""
        evaluated = self._evaluated()
        for _ in range(_MAX_REPEATS):
            arch = self.search_space.validate(self.advisor.ask())
            record = evaluated.get(self.search_space.key(arch))
            if record is None:
                return arch
            # Answer from the results: the advisor learns the value again, no training.
            log.debug("advisor re-proposed evaluated arch %s (trial %d)", arch, record.trial)
            self.advisor.tell(arch, record.values(self.objectives))
        remaining = [p for p in self.search_space.points() if self.search_space.key(p) not in evaluated]
        if not remaining:
            raise SearchExhausted("every point of the search space was evaluated")
        log.info("advisor keeps proposing evaluated architectures; trying an unevaluated one")
        return remaining[self._rng.randrange(len(remaining))]

    def train_evaluate(self, model: Any) -> dict:
        """Train ``model`` with ``train_func``, evaluate it with ``eval_func`` and the
        registered evaluators; the metrics as a dict."""
        if self.train_func is None or self.eval_func is None:
            raise AutoKDError(
                "train_func and eval_func must be set before the search (or use a backend: "
                "autokd_torch.Trainer.autodistillation / TFOptimization.autodistill)"
            )
        trained = self.train_func(model)
        if trained is not None:
            model = trained
        self._trained_model = model  # what output.save may save
        metrics = self.eval_func(model)
        if isinstance(metrics, int | float) and not isinstance(metrics, bool):
            metrics = {self.objectives[0].name: float(metrics)}
        if not isinstance(metrics, Mapping):
            raise AutoKDError(f"eval_func must return a dict of metrics or a number, got {type(metrics).__name__}")
        metrics = dict(metrics)
        wanted = [o.name for o in self.objectives] + list(self.config.evaluation.record)
        for name in wanted:
            if name not in metrics:
                metrics[name] = self._evaluate_with_plugin(name, model, metrics)
        return metrics

    def _evaluate_with_plugin(self, name: str, model: Any, returned: Mapping) -> float:
        evaluators = registry().evaluators
        try:
            evaluator = evaluators.get(name, self.framework)
        except LookupError as exc:
            raise _FatalSearchError(
                f"metric {name!r} is neither returned by eval_func (it returned "
                f"{sorted(returned) or 'nothing'}) nor a registered evaluator. {exc}"
            ) from None
        extras = _trial.current_extras()
        ctx = EvalContext(
            example_inputs=self.example_inputs,
            eval_data=self.eval_data,
            options=self.config.evaluation.options_for(name),
            framework=self.framework,
            extras={} if extras is None else extras,
        )
        try:
            return float(evaluator(model, ctx))
        except ConfigError as exc:
            # A bad evaluation.<metric> option fails every trial the same way, after its
            # training: stop the search instead of recording max_trials failures.
            raise _FatalSearchError(f"metric {name!r}: {exc}") from None

    # --- the loop -----------------------------------------------------------------------
    def _run_trial(self, index: int, arch: dict) -> TrialRecord:
        extras: dict = {}
        token = _trial._current.set(extras)
        start = time.perf_counter()
        try:
            if self.model_builder is None:
                raise AutoKDError("no model_builder: pass one to AutoDistillation or use a backend's built-in builder")
            model = self.model_builder(dict(arch))
            metrics = self.train_evaluate(model)
            bad = [o.name for o in self.objectives if not _finite(metrics.get(o.name))]
            if bad:
                raise FloatingPointError(
                    "non-finite or non-numeric metric " + ", ".join(f"{n}={metrics.get(n)!r}" for n in bad)
                )
            record = TrialRecord(index, dict(arch), _plain_metrics(metrics), "ok", None, time.perf_counter() - start, extras)
            self._keep_model(record, self._trained_model)
            return record
        except _FatalSearchError:
            raise
        except Exception as exc:  # a failed trial is recorded and the search goes on
            log.warning("trial %d %s failed: %s: %s", index, arch, type(exc).__name__, exc)
            extras["traceback"] = traceback.format_exc(limit=8)
            return TrialRecord(
                index, dict(arch), {}, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - start, extras
            )
        finally:
            self._trained_model = None
            _trial._current.reset(token)

    # --- the students to save (output.save) ------------------------------------------------
    def _keep_model(self, record: TrialRecord, model: Any) -> None:
        """Keep ``record``'s trained model while it may be saved after the search (the
        best so far, or a Pareto-front member), and let go of those that no longer may."""
        if self.config.output.save == "none" or model is None:
            return
        self._kept_models[record.trial] = model
        records = [r for r in self.search_result if r.trial != record.trial] + [record]
        wanted = {r.trial for r, _ in students_to_save(records, self.objectives, self.constraints, self.config.output.save)}
        for trial in list(self._kept_models):
            if trial not in wanted:
                del self._kept_models[trial]

    @property
    def pareto_front(self) -> list[TrialRecord]:
        """The successful trials no other trial dominates (directions from the config)."""
        return pareto_front(self.search_result, self.objectives)

    def _update_best(self) -> TrialRecord | None:
        best, feasible = select_best(self.search_result, self.objectives, self.constraints)
        if best is not None and not feasible and self.constraints:
            log.warning(
                "no trial meets the constraints %s; best_model_arch ignores them",
                ", ".join(map(str, self.constraints)),
            )
        self.best_model_arch = None if best is None else dict(best.arch)
        self._best_feasible = feasible
        return best

    def summary(self) -> dict:
        best, feasible = select_best(self.search_result, self.objectives, self.constraints)
        return {
            "objectives": [{"name": o.name, "higher_is_better": o.higher_is_better} for o in self.objectives],
            "constraints": [str(c) for c in self.constraints],
            "search_algorithm": self.config.search.search_algorithm,
            "seed": self.seed,
            "trials": len(self.search_result),
            "failed": sum(1 for r in self.search_result if not r.ok),
            "pareto_front": [r.to_json() for r in self.pareto_front],
            "best_trial": None if best is None else best.trial,
            "best_model_arch": None if best is None else best.arch,
            "best_metrics": None if best is None else best.metrics,
            "best_meets_constraints": feasible,
            "config": to_dict(self.config),
        }

    def search_loop(self, output_dir: str | os.PathLike | None = None, resume: bool = False) -> dict | None:
        """Run trials until ``max_trials`` are recorded (or the space is exhausted).

        :param output_dir: where ``trials.jsonl`` and ``summary.json`` go
            (default ``./autokd-output``).
        :param resume: replay the trials recorded in ``output_dir`` into the advisor and
            continue; without it, a directory that already holds trials is refused.
        :returns: ``best_model_arch``.
        """
        self.output_dir = os.fspath(output_dir) if output_dir is not None else os.path.abspath("autokd-output")
        check_output_plugins(self.config.output, self.framework)
        store = ResultStore(self.output_dir)
        if resume:
            self.search_result = store.load()
            advisor = self.advisor
            for record in self.search_result:
                advisor.tell(record.arch, record.values(self.objectives))
            if self.search_result:
                log.info("resumed %d recorded trials from %s", len(self.search_result), store.trials_path)
        elif store.exists():
            raise AutoKDError(
                f"{store.trials_path} already holds trials: resume them with resume=True "
                f"(autokd run --resume) or choose another output directory"
            )
        else:
            self.search_result = []
        self._update_best()

        progress = _progress(self.max_trials, len(self.search_result), self.show_progress)
        try:
            while len(self.search_result) < self.max_trials:
                try:
                    arch = self.model_arch_proposition()
                except SearchExhausted as exc:
                    log.info("search space exhausted: %s", exc)
                    break
                index = len(self.search_result)
                progress.set_description(f"trial {index}: {_short(arch)}")
                record = self._run_trial(index, arch)
                store.append(record)  # flushed and fsynced before anything else happens
                self.search_result.append(record)
                self.advisor.tell(record.arch, record.values(self.objectives))
                best = self._update_best()
                store.write_summary(self.summary())
                progress.update(1)
                if best is not None:
                    progress.set_postfix_str(
                        "best " + ", ".join(f"{o.name}={best.metrics[o.name]:.4g}" for o in self.objectives)
                    )
        finally:
            progress.close()
        store.write_summary(self.summary())
        self.saved_students = save_outputs(self, self._kept_models)
        return self.best_model_arch

    def search(self, output_dir: str | os.PathLike | None = None, model_cls: Any = None, resume: bool = False):
        """The TensorFlow code path's name for :meth:`search_loop` (``model_cls`` is used
        by backends that build models themselves)."""
        return self.search_loop(output_dir, resume=resume)


class _FatalSearchError(AutoKDError):
    """A problem that would fail every trial the same way: stop the search."""


def _finite(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _plain_metrics(metrics: Mapping) -> dict:
    out = {}
    for key, value in metrics.items():
        item = getattr(value, "item", None)
        if callable(item):
            try:
                value = item()
            except (TypeError, ValueError):
                pass
        out[str(key)] = value
    return out


def _short(arch: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in arch.items())


class _NoProgress:
    def update(self, n=1): ...
    def set_description(self, text): ...
    def set_postfix_str(self, text): ...
    def close(self): ...


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return _NoProgress()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NoProgress()
    return tqdm(total=total, initial=done, unit="trial", dynamic_ncols=True, leave=True)
