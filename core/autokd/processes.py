"""The ``processes`` executor: trials in a pool of worker processes on this machine.

``max_concurrent`` persistent workers (``multiprocessing``, spawn context: no fork of a
driver that may hold CUDA or thread pools) each load the trial runner once and then run
one trial at a time, so a trial costs a pipe round trip, not a process start. Each worker
is pinned before its interpreter starts: ``devices_per_trial`` GPUs through
``CUDA_VISIBLE_DEVICES`` (worker *i* gets the *i*-th slice of ``devices``, default the
driver's ``CUDA_VISIBLE_DEVICES``), ``threads_per_trial`` CPU threads through
``OMP_NUM_THREADS`` and friends (and ``torch.set_num_threads`` once a trial imported
torch).

A worker that dies (kill -9, segfault, out of memory) fails the trial it was running
with the reason (:func:`autokd.worker.lost_trial_record`), is replaced by a new worker
on the same devices, and the search goes on. A candidate's next rung goes to the worker
that holds its model while that worker lives (it waits for that worker rather than
retraining elsewhere); after a worker's death its candidates are rebuilt from scratch.
Only the driver writes the result store: workers send their records back.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Any

from .errors import AutoKDError, ConfigError
from .executor import Executor, TrialTask
from .runner import FatalSearchError
from .worker import (
    WORKER_ENV,
    AffinityScheduler,
    environ_with,
    exit_reason,
    lost_trial_record,
    pin_threads,
    plain_record,
    restore_environ,
    run_in_worker,
    thread_env,
)

if TYPE_CHECKING:  # pragma: no cover
    from .results import TrialRecord

__all__ = ["ProcessesExecutor", "processes_executor"]

log = logging.getLogger("autokd")

_FIELD = "auto_distillation.search.executor"
_OPTIONS = ("devices_per_trial", "threads_per_trial", "devices")
# os.environ is process-wide: workers start one at a time with their own pinning set.
_ENV_LOCK = threading.Lock()


class _Worker:
    """One worker process and its pipe."""

    def __init__(self, slot: int, process: Any, conn: Any):
        self.slot = slot
        self.process = process
        self.conn = conn
        self.started = 0.0  # when its running task was sent


class ProcessesExecutor(Executor):
    """A pool of ``max_concurrent`` worker processes on this machine.

    :param devices_per_trial: GPUs per worker (``CUDA_VISIBLE_DEVICES``); 0 hides every
        GPU; None (default) leaves the variable as the driver has it.
    :param threads_per_trial: CPU threads per worker; default ``cpu_count //
        max_concurrent`` (at least 1), so concurrent trials do not oversubscribe the CPU.
    :param devices: the GPU ids to share out (default: the driver's
        ``CUDA_VISIBLE_DEVICES``, else ``0 .. max_concurrent * devices_per_trial - 1``).
    """

    name = "processes"

    def __init__(self, runner: Any, *, max_concurrent: int = 1, **options: Any):
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"{_FIELD}: executor 'processes' has no option {', '.join(map(repr, unknown))}; "
                f"its options are {', '.join(_OPTIONS)}"
            )
        super().__init__(runner, max_concurrent=max_concurrent, **options)
        _positive(max_concurrent, "max_concurrent")
        threads = options.get("threads_per_trial")
        if threads is None:
            threads = max(1, (os.cpu_count() or 1) // max_concurrent)
        self.threads_per_trial = _positive(threads, "threads_per_trial")
        self.devices_per_trial = options.get("devices_per_trial")
        self._device_slices = _device_slices(self.devices_per_trial, options.get("devices"), max_concurrent)
        try:  # fail now, with the fix, rather than in every worker
            self._runner_bytes = pickle.dumps(runner, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - any pickling failure gets the same fix
            raise ConfigError(
                f"{_FIELD}: executor 'processes' sends the trial's functions to worker processes, but they "
                f"cannot be pickled ({type(exc).__name__}: {exc}). Define model_builder, train_func and eval_func "
                f"at module level of an importable module (no lambdas or closures), or use executor 'local'"
            ) from None
        self._ctx = multiprocessing.get_context("spawn")
        self._workers = [self._start(slot) for slot in range(max_concurrent)]
        self._scheduler = AffinityScheduler(max_concurrent)
        self._finished: list[TrialRecord] = []
        self._running = 0
        self._closed = False
        # Workers are not daemonic, so a driver that ends without shutdown() would wait for
        # them forever at exit: stop them then.
        self._finalizer = weakref.finalize(self, _stop, self._workers, self._scheduler.tasks, True)

    # --- workers --------------------------------------------------------------------------
    def _start(self, slot: int) -> _Worker:
        env = {**thread_env(self.threads_per_trial), WORKER_ENV: f"processes:{slot}"}
        devices = self._device_slices[slot]
        if devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self._runner_bytes, self.threads_per_trial, os.getpid()),
            name=f"autokd-worker-{slot}",
            daemon=False,  # a daemonic process may not start children (DataLoader workers)
        )
        # Set in the driver's environment while the worker starts, so the pinning holds
        # from the worker interpreter's first line (before any import of torch).
        with _ENV_LOCK:
            saved = environ_with(env)
            try:
                process.start()
            finally:
                restore_environ(saved)
        child_conn.close()
        log.debug("processes executor: worker %d (pid %s) started with %s", slot, process.pid, env)
        return _Worker(slot, process, parent_conn)

    def _send(self, slot: int | None) -> None:
        """Send its task (placed by the scheduler) to the worker of ``slot``."""
        if slot is None:
            return
        worker = self._workers[slot]
        worker.started = time.perf_counter()
        try:
            worker.conn.send(("run", self._scheduler.tasks[slot]))
        except OSError:  # it died since its last trial: wait() sees its sentinel and fails the task
            pass

    # --- the contract ---------------------------------------------------------------------
    def submit(self, task: TrialTask) -> None:
        if self._closed:
            raise AutoKDError("processes executor: submit() after shutdown()")
        self._running += 1
        self._send(self._scheduler.place(task))

    def wait(self, timeout: float | None = None) -> list[TrialRecord]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished and self._running:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            busy = [self._workers[slot] for slot in self._scheduler.busy()]
            ready = multiprocessing.connection.wait(
                [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=remaining
            )
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    self._collect(worker)
            if deadline is not None and time.monotonic() >= deadline:
                break
        finished, self._finished = self._finished, []
        self._running -= len(finished)
        return finished

    def _collect(self, worker: _Worker) -> None:
        """Read what a busy worker sent; a worker that died fails its task."""
        slot = worker.slot
        try:
            while self._scheduler.tasks[slot] is not None and worker.conn.poll():
                kind, record = worker.conn.recv()
                if kind == "fatal":
                    self.shutdown(cancel=True)
                    raise AutoKDError(f"processes executor: a worker could not start: {record}")
                if kind == "fatal_search":  # would fail every trial the same way: stop
                    self.shutdown(cancel=True)
                    raise FatalSearchError(record)
                self._finished.append(record)
                self._send(self._scheduler.finished(slot, holds_model=record.ok))
        except (EOFError, OSError):
            pass
        if worker.process.is_alive():
            return
        worker.process.join(timeout=1)
        task = self._scheduler.tasks[slot]
        if task is not None:
            reason = (
                f"worker process {worker.process.pid} (slot {slot}) "
                f"{exit_reason(worker.process.exitcode)} while running trial {task.trial}"
            )
            log.warning("trial %d %s failed: %s; starting a new worker", task.trial, task.arch, reason)
            elapsed = time.perf_counter() - worker.started
            self._finished.append(lost_trial_record(task, reason, elapsed, exitcode=worker.process.exitcode))
        self._scheduler.lost(slot)
        worker.conn.close()
        self._workers[slot] = self._start(slot)
        self._send(self._scheduler.next_for(slot))  # its waiting candidates are rebuilt there

    @property
    def running(self) -> int:
        return self._running

    def release(self, candidate: int) -> None:
        slot = self._scheduler.release(candidate)
        if slot is None:
            return
        try:
            self._workers[slot].conn.send(("release", candidate))
        except OSError:  # it died meanwhile: wait() sees it
            pass

    def model(self, candidate: int) -> Any:
        return None  # models live in the workers, not in the driver

    def shutdown(self, cancel: bool = True) -> None:
        """Stop the workers. With ``cancel`` (Ctrl-C, an error) running trials are killed;
        without, each worker finishes its trial first."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        _stop(self._workers, self._scheduler.tasks, cancel)
        self._scheduler.clear()


def processes_executor(runner: Any, *, max_concurrent: int = 1, **options: Any) -> ProcessesExecutor:
    """The ``processes`` executor factory (``register_executors``)."""
    return ProcessesExecutor(runner, max_concurrent=max_concurrent, **options)


def _positive(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{_FIELD}.{key}: must be a positive integer, got {value!r}")
    return value


def _device_slices(per_trial: Any, devices: Any, workers: int) -> list[list[str] | None]:
    """The ``CUDA_VISIBLE_DEVICES`` of each worker (None: inherit the driver's)."""
    if per_trial is None:
        if devices is not None:
            raise ConfigError(f"{_FIELD}.devices: given without devices_per_trial; say how many each trial gets")
        return [None] * workers
    if not isinstance(per_trial, int) or isinstance(per_trial, bool) or per_trial < 0:
        raise ConfigError(f"{_FIELD}.devices_per_trial: must be an integer >= 0, got {per_trial!r}")
    if per_trial == 0:
        return [[] for _ in range(workers)]  # CUDA_VISIBLE_DEVICES="" : CPU only
    if devices is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and visible.strip():
            devices = [d.strip() for d in visible.split(",") if d.strip()]
        else:
            devices = list(range(workers * per_trial))
    devices = [str(d) for d in devices]
    if len(devices) < workers * per_trial:
        raise ConfigError(
            f"{_FIELD}: max_concurrent={workers} trials with devices_per_trial={per_trial} need "
            f"{workers * per_trial} GPUs, but only {len(devices)} are available ({', '.join(devices) or 'none'}); "
            f"lower max_concurrent or devices_per_trial"
        )
    return [devices[i * per_trial : (i + 1) * per_trial] for i in range(workers)]


def _stop(workers: list[_Worker], tasks: list[TrialTask | None], cancel: bool) -> None:
    for worker, task in zip(workers, tasks, strict=True):
        try:
            if cancel and task is not None:
                worker.process.terminate()
            else:
                worker.conn.send(("stop", None))
        except (OSError, ValueError):
            pass
    for worker in workers:
        worker.process.join(timeout=5 if cancel else None)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
        worker.conn.close()


# --- the worker process ---------------------------------------------------------------------


def _watch_parent(parent_pid: int) -> None:
    """End this worker when the driver is gone (kill -9 of the driver): no orphan keeps
    training a trial nobody will record."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _worker_main(conn: Any, runner_bytes: bytes, threads: int | None, parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group: the driver decides what stops (shutdown).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    try:
        runner = pickle.loads(runner_bytes)
    except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the search
        conn.send(
            ("fatal", f"loading the trial's functions failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        )
        return
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return
        if kind == "stop":
            return
        if kind == "release":
            runner.release(payload)
            continue
        task: TrialTask = payload
        pin_threads(threads)
        record = run_in_worker(runner, task)
        if isinstance(record, FatalSearchError):
            conn.send(("fatal_search", str(record)))
            continue
        try:
            conn.send(("done", record))
        except (pickle.PicklingError, TypeError, AttributeError):
            conn.send(("done", plain_record(record)))
