"""The executor contract: what runs trials, and the built-in ``local`` executor.

The search loop turns each evaluation into a :class:`TrialTask` and hands it to an
:class:`Executor`; the executor runs it through a :class:`~autokd.runner.TrialRunner`
(build, train, evaluate) somewhere (in this process, in worker processes, on a Ray
cluster) and gives back the finished :class:`~autokd.TrialRecord` objects as they come.
Only the loop writes ``trials.jsonl`` and ``summary.json``.

Executors are registered through the ``register_executors(register)`` hook;
``register(name, executor_factory)`` where
``executor_factory(runner, *, max_concurrent, **options) -> Executor``.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # pragma: no cover
    from .results import TrialRecord
    from .runner import TrialRunner

__all__ = ["Executor", "LocalExecutor", "TrialTask"]


@attrs.frozen
class TrialTask:
    """One evaluation to run.

    :ivar trial: the record's trial number, fixed when the loop proposed it.
    :ivar arch: the architecture.
    :ivar candidate: the architecture's candidate number (== ``trial`` without fidelity).
    :ivar budget: the increment ``train_func(model, budget)`` trains now: a fraction of
        every stage's ``train_steps``, or one fraction per stage (a final distillation);
        None without fidelity (``train_func(model)``).
    :ivar done: the fraction of the full budget this candidate already trained.
    :ivar rung: the rung of a multi-fidelity search (None without fidelity).
    :ivar phase: ``"search"`` or ``"final"``.

    The runner keeps every trained model (it may be continued at the next rung, saved,
    or distilled further) until the loop releases its candidate.
    """

    trial: int
    arch: dict
    candidate: int
    budget: float | Sequence[float] | None = None
    done: float = 0.0
    rung: int | None = None
    phase: str = "search"


class Executor(abc.ABC):
    """Runs :class:`TrialTask` objects with a runner, up to ``max_concurrent`` at once.

    Subclasses implement :meth:`submit`, :meth:`wait`, :attr:`running`, and may override
    :meth:`release` and :meth:`shutdown`. :meth:`submit` never blocks for long; the loop
    calls it only while ``running < max_concurrent``.
    """

    name: str = ""

    def __init__(self, runner: TrialRunner, *, max_concurrent: int = 1, **options: Any):
        self.runner = runner
        self.max_concurrent = max_concurrent
        self.options = dict(options)

    @abc.abstractmethod
    def submit(self, task: TrialTask) -> None:
        """Start ``task`` (or queue it to start as soon as possible)."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> list[TrialRecord]:
        """Block until at least one submitted task finished (or ``timeout`` seconds
        passed); return the finished records. A task whose worker died comes back as a
        failed record with the reason."""

    @property
    @abc.abstractmethod
    def running(self) -> int:
        """Tasks submitted and not yet returned by :meth:`wait`."""

    def release(self, candidate: int) -> None:
        """Drop the trained model (and checkpoints) of ``candidate`` wherever it is held."""
        self.runner.release(candidate)

    def shutdown(self, cancel: bool = True) -> None:
        """Stop the executor; with ``cancel``, running tasks are abandoned (Ctrl-C)."""

    def model(self, candidate: int) -> Any:
        """The trained model of ``candidate`` if this process holds it, else None."""
        return self.runner.model(candidate)


class LocalExecutor(Executor):
    """Serial, in this process: :meth:`wait` runs the oldest submitted task and returns
    its record, so a search with ``max_concurrent: 1`` runs exactly as one loop would
    (propose, train, record, tell, propose). With ``max_concurrent`` > 1 the tasks still
    run one after another (they only let the advisor propose ahead)."""

    name = "local"

    def __init__(self, runner: TrialRunner, *, max_concurrent: int = 1, **options: Any):
        if options:
            raise ValueError(f"executor 'local' takes no options, got {sorted(options)}")
        super().__init__(runner, max_concurrent=max_concurrent)
        self._queue: deque[TrialTask] = deque()

    def submit(self, task: TrialTask) -> None:
        self._queue.append(task)

    def wait(self, timeout: float | None = None) -> list[TrialRecord]:
        if not self._queue:
            return []
        task = self._queue.popleft()
        return [self.runner(task)]

    @property
    def running(self) -> int:
        return len(self._queue)

    def shutdown(self, cancel: bool = True) -> None:
        self._queue.clear()


def local_executor(runner: TrialRunner, *, max_concurrent: int = 1, **options: Any) -> LocalExecutor:
    return LocalExecutor(runner, max_concurrent=max_concurrent, **options)
