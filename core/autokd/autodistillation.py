"""``AutoDistillation``: the search loop of model exploration, flash distillation and
evaluation.

One trial: ``model_arch_proposition()`` (advisor ``ask``; a point already evaluated is
answered from ``search_result`` and does not use up a trial) → a
:class:`~autokd.executor.TrialTask` handed to the executor (``search.executor``; the
default ``local`` runs it here and now) → its :class:`~autokd.runner.TrialRunner` builds
the model, trains it (``train_func``) and evaluates it (``eval_func``, then registered
evaluators) → the record is appended to ``trials.jsonl`` → advisor ``tell`` → Pareto
front and ``best_model_arch`` updated. Up to ``max_concurrent`` trials run at once; the
advisor is asked for new points while others are pending.

With ``search.fidelity`` each candidate is first trained with a fraction of the steps and
only the best go on (:mod:`autokd.schedule`); with ``final_distillation`` the chosen
architectures are distilled to the end after the search (:mod:`autokd.final`).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._advisor_guard import describe_advisor, guarded_ask, guarded_tell, replay_tell
from .advisor import Advisor, Objective, SearchExhausted, with_budget, with_workers
from .config import Config, load_config, to_dict
from .errors import ConfigError, StoreError, UnknownNameError
from .executor import Executor, TrialTask
from .final import choose_final, final_budget
from .front import IncrementalFront
from .plugins import registry
from .results import ResultStore, TrialRecord, check_resume
from .runner import FatalSearchError, TrialRunner, accepts_budget
from .schedule import FidelitySchedule
from .space import SearchSpace

__all__ = ["AutoDistillation"]

log = logging.getLogger("autokd")

# How often an advisor may re-propose evaluated (or running) points before the loop
# proposes an unevaluated point itself (some optimisers keep proposing their incumbent).
_MAX_REPEATS = 50

_FatalSearchError = FatalSearchError  # the name before the runner had its own module


class AutoDistillation:
    """Search for the best student architecture.

    :param model_builder: ``model_builder(arch: dict) -> model``.
    :param conf_fname_or_obj: a YAML path, a dict of any layout the design shows, or a
        config object.
    :param framework: ``'pytorch'`` or ``'tensorflow'``; overrides ``model.framework``.

    With user ``train_func`` and ``eval_func`` no backend plugin is needed. With
    ``search.fidelity`` (or ``final_distillation``) the train function takes the budget:
    ``train_func(model, budget)``.
    """

    def __init__(self, model_builder: Callable | None, conf_fname_or_obj: Any, framework: str | None = None):
        self.config: Config = load_config(conf_fname_or_obj, framework)
        if self.config.auto_distillation is None:
            raise ConfigError(
                "auto_distillation: missing: a search needs an auto_distillation.search section", self.config.source
            )
        self.framework = self.config.model.framework
        search = self.config.search
        self.search_space = SearchSpace(search.search_space)
        self.model_builder = model_builder
        self._train_func: Callable | None = None
        self.eval_func: Callable | None = None
        self.objectives: list[Objective] = search.objectives()
        self.constraints = search.parsed_constraints()
        self.max_trials = search.max_trials
        self.seed = search.seed
        self.fidelity = search.fidelity
        self.final_distillation = self.config.auto_distillation.final_distillation
        self.search_result: list[TrialRecord] = []
        self.final_result: list[TrialRecord] = []
        self.best_model_arch: dict | None = None
        self.example_inputs: Any = None
        self.eval_data: Any = None
        self.output_dir: str | None = None
        self.show_progress = True
        #: seconds between two writes of summary.json during the search (always written at the end)
        self.summary_interval_s = 1.0
        #: seconds between two fsyncs of trials.jsonl (every record is flushed at once; fsynced at the end)
        self.sync_interval_s = 1.0
        self.runner: TrialRunner | None = None
        self.executor: Executor | None = None
        self._advisor: Advisor | None = None
        self._advisor_who: str | None = None
        # The loop's own fallback proposals draw from their own RNG, never the global one.
        self._rng = random.Random(None if self.seed is None else self.seed + 7919)
        self._reset_state()

    def _reset_state(self) -> None:
        self._front = IncrementalFront(self.objectives, self.constraints)
        self._final_front = IncrementalFront(self.objectives, self.constraints)
        self._schedule: FidelitySchedule | None = None
        self._first_record: dict[str, TrialRecord] = {}  # arch key -> the candidate's first evaluation
        self._candidates: dict[int, dict] = {}  # candidate number -> arch (started)
        self._candidate_keys: set[str] = set()
        self._running: dict[int, TrialTask] = {}  # trial number -> task
        self._held_full: set[int] = set()  # candidates whose full-budget model is held
        self._trial_numbers = _Numbers()
        self._candidate_numbers = _Numbers()
        self._exhausted = False
        self._failed = 0
        self._summary_due = -float("inf")
        self._last_sync = -float("inf")
        self._config_dict: dict | None = None
        self._progress = _NoProgress()

    # --- functions ------------------------------------------------------------------------
    @property
    def train_func(self) -> Callable | None:
        return self._train_func

    @train_func.setter
    def train_func(self, func: Callable | None) -> None:
        if func is not None and self._needs_budget() and not accepts_budget(func):
            raise ConfigError(self._budget_refusal(func), self.config.source)
        self._train_func = func

    def _needs_budget(self) -> bool:
        return self.fidelity is not None or self.final_distillation is not None

    def _budget_refusal(self, func: Callable) -> str:
        field = (
            "auto_distillation.search.fidelity" if self.fidelity is not None else "auto_distillation.final_distillation"
        )
        name = getattr(func, "__qualname__", None) or repr(func)
        return (
            f"{field}: the train function {name} takes no `budget` parameter, but this search trains each "
            f"model in parts. Define it as train_func(model, budget): train `budget` (a fraction, or one per "
            f"stage) of every stage's train_steps, continuing the model it is given "
            f"(autokd.fidelity.stage_steps turns fractions into steps); or remove {field.rsplit('.', 1)[1]}"
        )

    # --- advisor ------------------------------------------------------------------------
    @property
    def advisor(self) -> Advisor:
        if self._advisor is None:
            self._advisor = self._make_advisor()
        return self._advisor

    @advisor.setter
    def advisor(self, value: Advisor) -> None:
        self._advisor = value
        self._advisor_who = None

    @property
    def _who(self) -> str:
        """The advisor as errors name it: its registered name, plugin and distribution."""
        if self._advisor_who is None:
            made_here = self._advisor is not None and getattr(self, "_advisor_made", None) is self._advisor
            self._advisor_who = describe_advisor(
                self.advisor, self.config.search.search_algorithm if made_here else None
            )
        return self._advisor_who

    def _make_advisor(self) -> Advisor:
        search = self.config.search
        factory = registry().advisors.get(search.search_algorithm)
        options = dict(search.advisor_options)
        # Storage settings are part of the search section; advisors that share state use them.
        for key in ("storage", "study_name"):
            value = getattr(search, key)
            if value is not None:
                options[key] = value
        # An advisor that plans by its number of evaluations gets max_trials, one that
        # plans for parallel evaluations the number of trials running at once.
        options = with_budget(factory, options, self.max_trials)
        options = with_workers(factory, options, search.executor.max_concurrent)
        try:
            self._advisor_made = factory(self.search_space, self.objectives, seed=self.seed, **options)
            return self._advisor_made
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
    def model_arch_proposition(self, pending: Sequence[dict] = ()) -> dict | None:
        """The next architecture to train: the advisor's proposal, or, when it keeps
        proposing evaluated or running points, an unevaluated point drawn by the loop.
        None when every unevaluated point is running (wait for a result)."""
        evaluated = self._first_record
        for _ in range(_MAX_REPEATS):
            arch = guarded_ask(self.advisor, self.search_space, self._who, pending)
            key = self.search_space.key(arch)
            record = evaluated.get(key)
            if record is not None:
                # Answer from the results: the advisor learns the value again, no training.
                log.debug("advisor re-proposed evaluated arch %s (trial %d)", arch, record.trial)
                replay_tell(self.advisor, arch, record.values(self.objectives), self._who)
                continue
            if key in self._candidate_keys:
                continue  # running: ask again (an advisor that does not track pending points)
            return arch
        point = self.search_space.unevaluated_point(self._candidate_keys, self._rng)
        if point is None:
            if self._running:
                return None
            raise SearchExhausted("every point of the search space was evaluated")
        log.info("advisor keeps proposing evaluated or running architectures; trying an unevaluated one")
        return point

    def train_evaluate(self, model: Any) -> dict:
        """Train ``model`` with ``train_func``, evaluate it with ``eval_func`` and the
        registered evaluators; the metrics as a dict."""
        return self._make_runner().train_evaluate(model)[1]

    def _make_runner(self) -> TrialRunner:
        return TrialRunner(
            self.model_builder,
            self.train_func,
            self.eval_func,
            self.objectives,
            # constraint metrics too: `params <= N` must be computed to be checked (#13)
            record=[*self.config.evaluation.record, *(c.metric for c in self.constraints)],
            metric_options=self.config.evaluation.metric_options,
            framework=self.framework,
            example_inputs=self.example_inputs,
            eval_data=self.eval_data,
            output_dir=self.output_dir,
        )

    def _make_executor(self, runner: TrialRunner) -> Executor:
        cfg = self.config.search.executor
        try:
            factory = registry().executors.get(cfg.name)
        except UnknownNameError as exc:
            raise ConfigError(f"auto_distillation.search.executor.name: {exc}", self.config.source) from None
        try:
            return factory(runner, max_concurrent=cfg.max_concurrent, **cfg.options)
        except ConfigError:
            raise  # the executor already named the field (e.g. search.executor.devices_per_trial) and the fix
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"auto_distillation.search.executor: {cfg.name}: {exc}", self.config.source) from None

    # --- results ------------------------------------------------------------------------
    @property
    def pareto_front(self) -> list[TrialRecord]:
        """The successful full-budget search evaluations no other one dominates
        (directions from the config)."""
        return self._front.front

    def _best(self) -> tuple[TrialRecord | None, bool]:
        """The best record: of the final distillation when it has one, else of the search."""
        best, feasible = self._final_front.best()
        if best is None:
            best, feasible = self._front.best()
        return best, feasible

    def summary(self) -> dict:
        best, feasible = self._best()
        if self._config_dict is None:
            self._config_dict = to_dict(self.config)
        summary = {
            "objectives": [{"name": o.name, "higher_is_better": o.higher_is_better} for o in self.objectives],
            "constraints": [str(c) for c in self.constraints],
            "search_algorithm": self.config.search.search_algorithm,
            "search_space": self.search_space.to_dict(),
            "seed": self.seed,
            "trials": len(self.search_result),
            "failed": self._failed,
            "pareto_front": [r.to_json() for r in self.pareto_front],
            "best_trial": None if best is None else best.trial,
            "best_model_arch": None if best is None else best.arch,
            "best_metrics": None if best is None else best.metrics,
            "best_meets_constraints": feasible,
            "config": self._config_dict,
        }
        if self.fidelity is not None:
            summary["candidates"] = len(self._candidates)
            summary["rung_budgets"] = list(self._schedule.budgets) if self._schedule else None
        if self.final_distillation is not None:
            summary["best_phase"] = None if best is None else best.phase
            summary["final"] = [r.to_json() for r in self.final_result]
        return summary

    # --- the loop -----------------------------------------------------------------------
    def search_loop(self, output_dir: str | os.PathLike | None = None, resume: bool = False) -> dict | None:
        """Run trials until ``max_trials`` candidates are evaluated (or the space is
        exhausted), then the final distillation if configured.

        :param output_dir: where ``trials.jsonl`` and ``summary.json`` go
            (default ``./autokd-output``).
        :param resume: replay the trials recorded in ``output_dir`` into the advisor and
            continue (a running rung continues where it stopped; only evaluations without
            a record run); without it, a directory that already holds trials is refused.
        :returns: ``best_model_arch``.
        """
        self.output_dir = os.fspath(output_dir) if output_dir is not None else os.path.abspath("autokd-output")
        self._store = store = ResultStore(self.output_dir)
        if self.train_func is not None and self._needs_budget() and not accepts_budget(self.train_func):
            raise ConfigError(self._budget_refusal(self.train_func), self.config.source)
        with store.lock():  # one run per output directory (StoreError naming the holder's pid)
            return self._search_locked(store, resume)

    def _search_locked(self, store: ResultStore, resume: bool) -> dict | None:
        self._reset_state()
        max_concurrent = self.config.search.executor.max_concurrent
        if self.fidelity is not None:
            self._schedule = FidelitySchedule(
                self.fidelity, self.max_trials, self.objectives, self.constraints, asynchronous=max_concurrent > 1
            )
        self.runner = self._make_runner()
        self.executor = None
        self.search_result, self.final_result = [], []
        if resume:
            records = store.load(repair=True)
            check_resume(records, store.read_summary(), self.search_space, self.objectives, store.output_dir)
            self._replay(records)
        elif store.holds_results():
            what = store.trials_path if store.exists() else store.summary_path
            raise StoreError(
                f"{what} already holds trials: resume them with resume=True "
                f"(autokd run --resume) or choose another output directory (--output-dir)"
            )
        else:
            _ = self.advisor  # a bad advisor option fails here, before summary.json is written
        # Built after the replay, so workers start knowing the recorded metrics.
        self.executor = self._make_executor(self.runner)

        self._progress = _progress(self.max_trials, len(self._candidates), self.show_progress)
        try:
            self._run(self._next_search_task, max_concurrent)
            if self.final_distillation is not None:
                final_tasks = self._final_tasks()
                self._run(lambda: final_tasks.pop(0) if final_tasks else None, max_concurrent)
        except BaseException:
            self.executor.shutdown(cancel=True)
            raise
        else:
            self.executor.shutdown(cancel=False)
        finally:
            # Even after Ctrl-C or an error: summary.json always matches trials.jsonl.
            self._progress.close()
            store.sync()
            self._update_best()
            store.write_summary(self.summary())
        return self.best_model_arch

    def _run(self, next_task: Callable[[], TrialTask | None], max_concurrent: int) -> None:
        """Keep up to ``max_concurrent`` tasks running; record each as it finishes."""
        while True:
            while self.executor.running < max_concurrent:
                task = next_task()
                if task is None:
                    break
                self._running[task.trial] = task
                self._progress.set_description(f"trial {task.trial}: {_short(task.arch)}")
                self.executor.submit(task)
            if self.executor.running == 0:
                return
            for record in self.executor.wait():
                self._finish(record)

    def _next_search_task(self) -> TrialTask | None:
        schedule = self._schedule
        if schedule is not None:
            promotion = schedule.next_promotion()
            if promotion is not None:
                schedule.mark_running(promotion.candidate, promotion.rung)
                arch = self._candidates[promotion.candidate]
                return TrialTask(
                    self._trial_numbers.take(),
                    arch,
                    promotion.candidate,
                    promotion.budget,
                    promotion.done,
                    promotion.rung,
                )
        if self._exhausted or len(self._candidates) >= self.max_trials:
            return None
        pending = [self._candidates[t.candidate] for t in self._running.values() if t.done == 0]
        try:
            arch = self.model_arch_proposition(pending)
        except SearchExhausted as exc:
            if self._running:
                return None  # ask again when a result came in
            log.info("search space exhausted: %s", exc)
            self._exhausted = True
            if schedule is not None:
                schedule.stop_new_candidates()
                return self._next_search_task()  # the rungs can complete now
            return None
        if arch is None:
            return None
        trial = self._trial_numbers.take()
        candidate = trial if schedule is None else self._candidate_numbers.take()
        self._candidates[candidate] = arch
        self._candidate_keys.add(self.search_space.key(arch))
        if schedule is None:
            return TrialTask(trial, arch, candidate)
        rung, budget = schedule.start(candidate)
        return TrialTask(trial, arch, candidate, budget, 0.0, rung)

    def _finish(self, record: TrialRecord) -> None:
        """A finished evaluation: recorded first (flushed; fsynced at most once a
        second), then learnt from."""
        now = time.monotonic()
        sync = now - self._last_sync >= self.sync_interval_s
        self._store.append(record, sync=sync)
        if sync:
            self._last_sync = now
        self._running.pop(record.trial, None)
        self._take(record)
        if now >= self._summary_due:
            started = time.monotonic()
            self._store.write_summary(self.summary())
            # At most one write per summary_interval_s, and at most ~5% of the loop's time
            # however large the front grows (the JSON of a 300-trial front takes ~0.1 s).
            cost = time.monotonic() - started
            self._summary_due = started + max(self.summary_interval_s, 20 * cost)

    def _take(self, record: TrialRecord, replayed: bool = False) -> None:
        self.search_result.append(record)
        if not record.ok:
            self._failed += 1
        if record.phase == "final":
            self.final_result.append(record)
            self._final_front.add(record)  # the final models are all kept
            self._update_best()
            return
        arch, candidate = record.arch, record.candidate_number
        key = self.search_space.key(arch)
        first = key not in self._first_record
        if first:
            self._first_record[key] = record
            self._candidates.setdefault(candidate, arch)
            self._candidate_keys.add(key)
        values = record.values(self.objectives)
        tell = replay_tell if replayed else guarded_tell
        if self._schedule is not None:
            tell(self.advisor, arch, values, self._who, budget=record.budget, rung=record.rung)
            self._schedule.record(record)
        else:
            tell(self.advisor, arch, values, self._who)
        if record.ok:
            self.runner.seen_metrics.update(record.metrics)
        if record.full_budget:
            if record.ok and not replayed:
                self._held_full.add(candidate)
            # full-budget models are kept while on the front or best (for saving and a
            # final distillation)
            self._release_full(self._front.add(record))
        if self._schedule is not None:
            for dropped in self._schedule.collect_dropped():
                self._release(dropped)
        self._update_best()
        if first and not replayed:
            self._progress.update(1)

    def _update_best(self) -> None:
        best, _ = self._best()
        self.best_model_arch = None if best is None else dict(best.arch)
        if best is not None and self.show_progress:
            self._progress.set_postfix_str(
                "best " + ", ".join(f"{o.name}={best.metrics[o.name]:.4g}" for o in self.objectives)
            )

    def _release_full(self, records: Sequence[TrialRecord]) -> None:
        for record in records:
            if record.candidate_number in self._held_full:
                self._held_full.discard(record.candidate_number)
                self._release(record.candidate_number)

    def _release(self, candidate: int) -> None:
        # While replaying, no executor yet: nothing is held, but checkpoints are deleted.
        (self.executor or self.runner).release(candidate)

    def _replay(self, records: list[TrialRecord]) -> None:
        """Tell the advisor (and the schedule) every recorded evaluation, in trial order."""
        for record in sorted(records, key=lambda r: r.trial):
            self._take(record, replayed=True)
        self._trial_numbers.used(r.trial for r in records)
        self._candidate_numbers.used(r.candidate_number for r in records)
        if records:
            log.info("resumed %d recorded evaluations from %s", len(records), self._store.trials_path)

    def _final_tasks(self) -> list[TrialTask]:
        final = self.final_distillation
        best, _ = self._front.best()
        chosen = choose_final(self._front.front, best, self.objectives, self.constraints, final.candidates)
        stages = self.config.auto_distillation.flash_stages() + self.config.auto_distillation.regular_stages()
        done, budget = final_budget(final, stages)
        distilled = {r.candidate_number for r in self.final_result}
        return [
            TrialTask(self._trial_numbers.take(), dict(r.arch), r.candidate_number, budget, done, None, "final")
            for r in chosen
            if r.candidate_number not in distilled
        ]

    def search(self, output_dir: str | os.PathLike | None = None, model_cls: Any = None, resume: bool = False):
        """The TensorFlow code path's name for :meth:`search_loop` (``model_cls`` is used
        by backends that build models themselves)."""
        return self.search_loop(output_dir, resume=resume)

    def trained_model(self, candidate: int) -> Any:
        """The trained model of ``candidate`` (its latest evaluation) if this process
        holds it (the ``local`` executor keeps the front's, the best's and the final
        distillation's models after the search), else None."""
        return None if self.executor is None else self.executor.model(candidate)


class _Numbers:
    """Trial or candidate numbers: the gaps a resumed search left first, then new ones."""

    def __init__(self):
        self._gaps: list[int] = []
        self._next = 0

    def used(self, numbers) -> None:
        taken = set(numbers)
        self._next = max(taken, default=-1) + 1
        self._gaps = sorted(set(range(self._next)) - taken)

    def take(self) -> int:
        if self._gaps:
            return self._gaps.pop(0)
        self._next += 1
        return self._next - 1


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
