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
from collections.abc import Callable, Sequence
from typing import Any

from ._advisor_guard import describe_advisor, guarded_ask, guarded_tell, replay_tell
from ._factories import make_advisor, make_executor
from ._progress import NoProgress, progress_bar, short
from .advisor import Advisor, Objective, SearchExhausted
from .config import Config, load_config, to_dict
from .errors import ConfigError
from .executor import Executor, TrialNumbers, TrialTask
from .final import final_budget, final_candidates
from .front import IncrementalFront
from .output import check_output_plugins, save_outputs
from .plugins import registry
from .results import ResultStore, TrialRecord
from .resume import refuse_recorded_trials, resumable_records
from .runner import TrialRunner, accepts_budget, budget_refusal
from .schedule import FidelitySchedule
from .space import SearchSpace
from .summary import search_summary

__all__ = ["AutoDistillation"]

log = logging.getLogger("autokd")

# How often an advisor may re-propose evaluated (or running) points before the loop
# proposes an unevaluated point itself (some optimisers keep proposing their incumbent).
_MAX_REPEATS = 50


class AutoDistillation:
    """Search for the best student architecture.

    :param model_builder: ``model_builder(arch: dict) -> model``.
    :param config: a YAML path, a dict of any layout the design shows, or a config object.
    :param framework: ``'pytorch'`` or ``'tensorflow'``; overrides ``model.framework``.
    :param train_func: ``train_func(model) -> model`` (with ``search.fidelity`` or
        ``final_distillation``: ``train_func(model, budget)``); None: a backend's built-in.
    :param eval_func: ``eval_func(model) -> dict`` of metrics; None: registered evaluators.
    :param example_inputs: a batch the model can be called with (for evaluators such as
        ``latency``).
    :param eval_data: the evaluation data handed to evaluators.
    :param show_progress: a progress bar over the trials.

    Each is also an attribute, settable after construction as the design does
    (``agent.train_func = train_func``). With user ``train_func`` and ``eval_func`` no
    backend plugin is needed.
    """

    def __init__(
        self,
        model_builder: Callable | None,
        config: Any,
        *,
        framework: str | None = None,
        train_func: Callable | None = None,
        eval_func: Callable | None = None,
        example_inputs: Any = None,
        eval_data: Any = None,
        show_progress: bool = True,
    ):
        # The plugins run the search: the config's metric names are checked against them.
        self.config: Config = load_config(config, framework, plugins=registry())
        if self.config.auto_distillation is None:
            raise ConfigError(
                "auto_distillation: missing: a search needs an auto_distillation.search section", self.config.source
            )
        self.framework = self.config.model.framework
        search = self.config.search
        self.search_space = SearchSpace(search.search_space)
        self.model_builder = model_builder
        self._train_func: Callable | None = None
        self.eval_func: Callable | None = eval_func
        self.objectives: list[Objective] = search.objectives()
        self.constraints = search.parsed_constraints()
        self.max_trials = search.max_trials
        self.seed = search.seed
        self.fidelity = search.fidelity
        self.final_distillation = self.config.auto_distillation.final_distillation
        self.search_result: list[TrialRecord] = []
        self.final_result: list[TrialRecord] = []
        self.best_model_arch: dict | None = None
        self.example_inputs: Any = example_inputs
        self.eval_data: Any = eval_data
        self.output_dir: str | None = None
        self.show_progress = show_progress
        #: seconds between two writes of summary.json during the search (always written at the end)
        self.summary_interval_s = 1.0
        #: seconds between two fsyncs of trials.jsonl (every record is flushed at once; fsynced at the end)
        self.sync_interval_s = 1.0
        self.runner: TrialRunner | None = None
        self.executor: Executor | None = None
        # Saving the students (output.save): the backend that saves them, the teacher
        # they are compared with (set by autokd run and the backends' entry points).
        self.backend: Any = None
        self.teacher: Any = None
        self.teacher_metrics: dict | None = None
        self.saved_students: list[str] = []
        self._advisor: Advisor | None = None
        self._advisor_who: str | None = None
        # The loop's own fallback proposals draw from their own RNG, never the global one.
        self._rng = random.Random(None if self.seed is None else self.seed + 7919)
        self._reset_state()
        self.train_func = train_func  # checked: a budgeted search needs train_func(model, budget)

    def _reset_state(self) -> None:
        self._front = IncrementalFront(self.objectives, self.constraints)
        self._final_front = IncrementalFront(self.objectives, self.constraints)
        self._schedule: FidelitySchedule | None = None
        self._first_record: dict[str, TrialRecord] = {}  # arch key -> the candidate's first evaluation
        self._candidates: dict[int, dict] = {}  # candidate number -> arch (started)
        self._candidate_keys: set[str] = set()
        self._running: dict[int, TrialTask] = {}  # trial number -> task
        self._held_full: set[int] = set()  # candidates whose full-budget model is held
        self._trial_numbers = TrialNumbers()
        self._candidate_numbers = TrialNumbers()
        self._exhausted = False
        self._failed = 0
        self._summary_due = -float("inf")
        self._last_sync = -float("inf")
        self._config_dict: dict | None = None
        self._progress = NoProgress()

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
        fidelity = self.fidelity is not None
        return budget_refusal(func, "search.fidelity" if fidelity else "final_distillation")

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
        self._advisor_made = make_advisor(
            self.config.search, self.search_space, self.objectives, self.seed, self.max_trials
        )
        return self._advisor_made

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
        return make_executor(self.config.search.executor, runner, self.config.source)

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
        """What ``summary.json`` holds (:func:`autokd.summary.search_summary`)."""
        best, feasible = self._best()
        if self._config_dict is None:
            self._config_dict = to_dict(self.config)
        return search_summary(
            self._config_dict,
            self.config.search.search_algorithm,
            self.objectives,
            self.constraints,
            self.search_space,
            self.seed,
            self.search_result,
            self.pareto_front,
            best,
            feasible,
            failed=self._failed,
            fidelity=None if self.fidelity is None else (len(self._candidates), self._schedule),
            final_result=None if self.final_distillation is None else self.final_result,
        )

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
        check_output_plugins(self.config.output, self.framework)
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
            self._replay(resumable_records(store, self.search_space, self.objectives))
        else:
            refuse_recorded_trials(store)
            _ = self.advisor  # a bad advisor option fails here, before summary.json is written
        # Built after the replay, so workers start knowing the recorded metrics.
        self.executor = self._make_executor(self.runner)

        self._progress = progress_bar(self.max_trials, len(self._candidates), self.show_progress)
        try:
            self._run(self._next_search_task, max_concurrent)
            if self.final_distillation is not None:
                final_tasks = self._final_tasks()
                self._run(lambda: final_tasks.pop(0) if final_tasks else None, max_concurrent)
        except BaseException:
            self.executor.shutdown(cancel=True)
            raise
        else:
            self.saved_students = save_outputs(self)
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
                self._progress.set_description(f"trial {task.trial}: {short(task.arch)}")
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
        stages = self.config.auto_distillation.flash_stages() + self.config.auto_distillation.regular_stages()
        chosen = final_candidates(self.final_distillation, self._front, self.final_result, self.objectives)
        done, budget = final_budget(self.final_distillation, stages)
        return [
            TrialTask(self._trial_numbers.take(), dict(r.arch), r.candidate_number, budget, done, None, "final")
            for r in chosen
        ]

    def search(self, output_dir: str | os.PathLike | None = None, model_cls: Any = None, resume: bool = False):
        """The TensorFlow code path's name for :meth:`search_loop`, called as the design
        does (``agent.search(output_dir, model_cls)``). ``model_cls`` is accepted for that
        call and not used here: the model class is the ``model_builder``'s business (the
        backends' built-in builders are made with it, e.g. ``TFOptimization.autodistill``'s
        ``model_builder_builtin(arch, model_cls=...)``)."""
        return self.search_loop(output_dir, resume=resume)

    def trained_model(self, candidate: int) -> Any:
        """The trained model of ``candidate`` (its latest evaluation) if this process
        holds it (the ``local`` executor keeps the front's, the best's and the final
        distillation's models after the search), else None."""
        return None if self.executor is None else self.executor.model(candidate)
