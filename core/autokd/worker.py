"""What every executor that runs trials in other processes shares: the failed record of
a trial whose worker was lost, why a process ended (in words), and pinning a worker's
CPU threads. Used by the ``processes`` executor and by ``autokd-ray``, so both report a
lost worker the same way.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .executor import TrialTask
    from .results import TrialRecord
    from .runner import FatalSearchError

__all__ = [
    "WORKER_ENV",
    "AffinityScheduler",
    "in_executor_worker",
    "exit_reason",
    "lost_trial_record",
    "pin_threads",
    "plain_record",
    "run_in_worker",
    "thread_env",
]

# Set in every worker process of an executor (processes, ray): a trial's code can tell it
# shares files with concurrent trials (autokd-torch's teacher cache maps its files
# read-only there).
WORKER_ENV = "AUTOKD_EXECUTOR_WORKER"


def in_executor_worker() -> bool:
    """Whether this process is an executor's worker (trials may run beside it)."""
    return bool(os.environ.get(WORKER_ENV))


# The environment variables that size the thread pools of the numeric libraries a trial
# may load (OpenMP: PyTorch's CPU kernels; MKL; OpenBLAS: numpy; numexpr; TensorFlow).
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)

# What a signal that ends a worker usually means, for the record's error.
_SIGNAL_CAUSES = {
    "SIGKILL": "killed (out of memory, or kill -9)",
    "SIGSEGV": "segmentation fault",
    "SIGBUS": "bus error",
    "SIGABRT": "aborted",
    "SIGTERM": "terminated",
    "SIGILL": "illegal instruction",
    "SIGFPE": "floating-point exception",
}


def exit_reason(exitcode: int | None) -> str:
    """Why a process ended, from its exit code (negative: the signal that ended it)."""
    if exitcode is None:
        return "stopped responding"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            return f"killed by signal {-exitcode}"
        cause = _SIGNAL_CAUSES.get(name)
        return f"killed by {name}" + (f": {cause}" if cause else "")
    return f"exited with status {exitcode}"


def lost_trial_record(task: TrialTask, reason: str, duration_s: float = 0.0, **extras: Any) -> TrialRecord:
    """The failed record of ``task`` whose worker was lost (died, or its node failed):
    the search records it and goes on."""
    from .runner import task_record

    return task_record(task, {}, "failed", f"WorkerLost: {reason}", float(duration_s), {"worker_lost": True, **extras})


def run_in_worker(runner: Any, task: TrialTask) -> TrialRecord | FatalSearchError:
    """``runner(task)`` in a worker: the record, or the :class:`FatalSearchError` that
    must stop the search (the executor raises it again in the driver). A runner that
    raises anything else (a bug: it records a trial's own errors) fails the trial."""
    from .runner import FatalSearchError, task_record

    try:
        return runner(task)
    except FatalSearchError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - see the docstring
        trace = {"traceback": traceback.format_exc(limit=8)}
        return task_record(task, {}, "failed", f"{type(exc).__name__}: {exc}", 0.0, trace)


def plain_record(record: TrialRecord) -> TrialRecord:
    """``record`` as the result store would read it back (JSON values only): what a worker
    sends when the record itself cannot be pickled (an extra holding a live object)."""
    from .results import TrialRecord, _json_default

    return TrialRecord.from_json(json.loads(json.dumps(record.to_json(), default=_json_default)))


def thread_env(threads: int | None) -> dict[str, str]:
    """The environment that limits a worker's CPU thread pools to ``threads``."""
    if threads is None:
        return {}
    return dict.fromkeys(_THREAD_VARS, str(int(threads)))


def pin_threads(threads: int | None) -> None:
    """Limit the thread pools of the frameworks this process already imported (PyTorch
    reads ``OMP_NUM_THREADS`` only when it starts its pool; a trial imports it late)."""
    if threads is None:
        return
    torch = sys.modules.get("torch")
    set_num_threads = getattr(torch, "set_num_threads", None)
    if set_num_threads is not None and torch.get_num_threads() != threads:
        set_num_threads(int(threads))


def environ_with(env: Mapping[str, str]) -> dict[str, str | None]:
    """Set ``env`` in ``os.environ``; returns what to restore with :func:`restore_environ`."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    return saved


def restore_environ(saved: Mapping[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class AffinityScheduler:
    """Which worker slot runs which task, for executors with a fixed set of workers.

    A task goes to the slot that holds its candidate's model (trained at an earlier rung)
    and waits for that slot if it is busy: continuing the model there costs only the new
    increment, where another worker would retrain the candidate from scratch. Any other
    task goes to an idle slot, or waits for the first slot to free. A slot whose worker was
    lost forgets its candidates; the tasks waiting for it run on its replacement.
    """

    def __init__(self, slots: int):
        self.tasks: list[TrialTask | None] = [None] * slots  # the task each slot runs
        self._queues: list[deque[TrialTask]] = [deque() for _ in range(slots)]
        self._holder: dict[int, int] = {}  # candidate -> slot holding its model
        self._pending: deque[TrialTask] = deque()

    def place(self, task: TrialTask) -> int | None:
        """The slot to start ``task`` on now, or None when it was queued."""
        slot = self._holder.get(task.candidate)
        if slot is not None:
            if self.tasks[slot] is None and not self._queues[slot]:
                return self._start(slot, task)
            self._queues[slot].append(task)
            return None
        for slot, running in enumerate(self.tasks):
            if running is None and not self._queues[slot]:
                return self._start(slot, task)
        self._pending.append(task)
        return None

    def finished(self, slot: int, holds_model: bool) -> TrialTask | None:
        """Slot ``slot`` finished its task (and keeps its model when ``holds_model``); the
        next task it should start, if any."""
        task = self.tasks[slot]
        self.tasks[slot] = None
        if task is not None and holds_model:
            self._holder[task.candidate] = slot
        return self.next_for(slot)

    def lost(self, slot: int) -> None:
        """The worker of ``slot`` died: its models are gone."""
        self.tasks[slot] = None
        for candidate in [c for c, s in self._holder.items() if s == slot]:
            del self._holder[candidate]

    def next_for(self, slot: int) -> TrialTask | None:
        """The task an idle ``slot`` should start now: one waiting for it, else any."""
        if self.tasks[slot] is not None:
            return None
        if self._queues[slot]:
            return self._start(slot, self._queues[slot].popleft())
        if self._pending:
            return self._start(slot, self._pending.popleft())
        return None

    def release(self, candidate: int) -> int | None:
        """Forget ``candidate``; the slot that held its model (to tell the worker)."""
        return self._holder.pop(candidate, None)

    def busy(self) -> list[int]:
        return [slot for slot, task in enumerate(self.tasks) if task is not None]

    def clear(self) -> None:
        self._pending.clear()
        for queue in self._queues:
            queue.clear()

    def _start(self, slot: int, task: TrialTask) -> int:
        self.tasks[slot] = task
        return slot
