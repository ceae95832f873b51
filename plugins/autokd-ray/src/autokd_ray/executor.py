"""The ``ray`` executor: each trial runs in a Ray actor, on this machine or a Ray cluster.

``max_concurrent`` actors, each reserving ``resources_per_trial`` (``{cpu: 2, gpu: 1}``),
get the trial runner once through the object store (one copy per node, whatever the
number of actors: the teacher's arrays and the data it holds travel once) and run one
trial at a time. An actor keeps the models it trained, so a candidate's next rung goes
back to it (:class:`autokd.worker.AffinityScheduler`). Records come back to the driver,
which alone writes the result store.

A worker lost to a node failure (or killed) is restarted by Ray and its trial retried up
to ``max_retries`` times (actor ``max_restarts`` and ``max_task_retries``); then the
trial fails with Ray's reason and a new actor takes the slot. ``shutdown(cancel=True)``
(Ctrl-C) kills the actors, which stops their running trials at once.

``address``: None starts a local Ray for the search and shuts it down after; ``auto``
or ``ray://host:port`` connects to a running cluster. A Ray the caller already started
(``ray.init`` before the search) is used as it is and left running.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from autokd import AutoKDError, ConfigError, Executor, FatalSearchError, TrialTask
from autokd.worker import WORKER_ENV, AffinityScheduler, lost_trial_record, pin_threads, run_in_worker

__all__ = ["RayExecutor", "ray_executor"]

_POLL_SECONDS = 0.5  # longest wait without returning to Python (see RayExecutor.wait)

log = logging.getLogger("autokd.ray")

_FIELD = "auto_distillation.search.executor"
_OPTIONS = ("address", "resources_per_trial", "max_retries", "init_options")
# resources_per_trial keys that are Ray's own arguments; any other key is a custom resource
_BUILTIN_RESOURCES = {"cpu": "num_cpus", "num_cpus": "num_cpus", "gpu": "num_gpus", "num_gpus": "num_gpus",
                      "memory": "memory"}  # fmt: skip


class _TrialActor:
    """Runs trials with one runner and keeps the models it trained (Ray actor body)."""

    def __init__(self, runner: Any, threads: int | None):
        os.environ[WORKER_ENV] = "ray"
        self.runner = runner
        self.threads = threads
        pin_threads(threads)

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: TrialTask):
        pin_threads(self.threads)
        outcome = run_in_worker(self.runner, task)
        if isinstance(outcome, FatalSearchError):
            return ("fatal_search", str(outcome))
        return outcome

    def release(self, candidate: int) -> None:
        self.runner.release(candidate)


class RayExecutor(Executor):
    """Trials as Ray actors.

    :param address: None (a local Ray started for the search), ``"auto"``, or
        ``"ray://host:port"``.
    :param resources_per_trial: what each trial reserves: ``cpu``, ``gpu``, ``memory``
        (bytes) and any custom resource of the cluster (default ``{cpu: 1}``).
    :param max_retries: how often a trial whose worker was lost runs again (default 1).
    :param init_options: more keyword arguments of ``ray.init`` (e.g. ``runtime_env``
        to ship the user's modules to a remote cluster).
    """

    name = "ray"

    def __init__(self, runner: Any, *, max_concurrent: int = 1, **options: Any):
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"{_FIELD}: executor 'ray' has no option {', '.join(map(repr, unknown))}; "
                f"its options are {', '.join(_OPTIONS)}"
            )
        super().__init__(runner, max_concurrent=max_concurrent, **options)
        if not isinstance(max_concurrent, int) or isinstance(max_concurrent, bool) or max_concurrent < 1:
            raise ConfigError(f"{_FIELD}.max_concurrent: must be a positive integer, got {max_concurrent!r}")
        self.max_retries = options.get("max_retries", 1)
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise ConfigError(f"{_FIELD}.max_retries: must be an integer >= 0, got {self.max_retries!r}")
        self.actor_options = _actor_options(options.get("resources_per_trial"))
        address = options.get("address")
        if address is not None and not (address == "auto" or str(address).startswith("ray://") or ":" in str(address)):
            raise ConfigError(f"{_FIELD}.address: {address!r} is not 'auto', 'ray://host:port' or 'host:port'")
        init_options = dict(options.get("init_options") or {})

        import ray

        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            if address is not None:
                init_options["address"] = address
            ray.init(**init_options)
            self._owns_ray = True  # started (or connected) for this search: shut down after
            log.info("ray executor: %s", "connected to " + str(address) if address else "started a local Ray")
        self._check_resources()
        try:  # once: every actor on a node reads the same copy
            self._runner_ref = ray.put(runner)
        except Exception as exc:  # noqa: BLE001 - any serialization failure gets the same fix
            self._shutdown_ray()
            raise ConfigError(
                f"{_FIELD}: executor 'ray' sends the trial's functions to Ray workers, but they cannot be "
                f"serialized ({type(exc).__name__}: {exc}); or use executor 'local'"
            ) from None
        threads = self.actor_options.get("num_cpus")
        self._threads = max(1, int(threads)) if threads else None
        self._actor_cls = ray.remote(_TrialActor)
        self._actors = [self._new_actor() for _ in range(max_concurrent)]
        self._scheduler = AffinityScheduler(max_concurrent)
        self._refs: dict[Any, int] = {}  # in-flight ObjectRef -> slot
        self._started: list[float] = [0.0] * max_concurrent
        self._finished: list = []
        self._running = 0
        self._closed = False

    def _check_resources(self) -> None:
        total = self._ray.cluster_resources()
        needs = {"CPU": self.actor_options.get("num_cpus", 0), "GPU": self.actor_options.get("num_gpus", 0)}
        needs.update(self.actor_options.get("resources", {}))
        short = {k: v for k, v in needs.items() if v and total.get(k, 0) < v}
        if not short:
            return
        text = (
            f"{_FIELD}.resources_per_trial: a trial needs "
            + ", ".join(f"{k}={v}" for k, v in short.items())
            + " but the Ray cluster has "
            + ", ".join(f"{k}={total.get(k, 0)}" for k in short)
        )
        if (
            self._owns_ray
            and "address" not in (self.options.get("init_options") or {})
            and not self.options.get("address")
        ):
            self._shutdown_ray()
            raise ConfigError(text + "; lower resources_per_trial or give the address of a larger cluster")
        log.warning("%s: trials wait until the cluster (its autoscaler) provides them", text)

    def _new_actor(self):
        options = dict(self.actor_options)
        options.update(max_restarts=self.max_retries, max_task_retries=self.max_retries)
        return self._actor_cls.options(**options).remote(self._runner_ref, self._threads)

    def _send(self, slot: int | None) -> None:
        if slot is None:
            return
        task = self._scheduler.tasks[slot]
        self._started[slot] = time.perf_counter()
        self._refs[self._actors[slot].run.remote(task)] = slot

    # --- the contract ---------------------------------------------------------------------
    def submit(self, task: TrialTask) -> None:
        if self._closed:
            raise AutoKDError("ray executor: submit() after shutdown()")
        self._running += 1
        self._send(self._scheduler.place(task))

    def wait(self, timeout: float | None = None) -> list:
        ray = self._ray
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished and self._running and self._refs:
            # In slices: Python runs a signal handler (Ctrl-C's KeyboardInterrupt) only when
            # ray.wait returns to it, so an unbounded wait could hold Ctrl-C until a trial ends.
            remaining = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, max(0.0, deadline - time.monotonic()))
            refs = list(self._refs)
            ready, _ = ray.wait(refs, num_returns=1, timeout=remaining)
            if ready:  # everything else that is done too
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                self._collect(ref)
            if deadline is not None and time.monotonic() >= deadline:
                break
        finished, self._finished = self._finished, []
        self._running -= len(finished)
        return finished

    def _collect(self, ref: Any) -> None:
        ray = self._ray
        slot = self._refs.pop(ref)
        task = self._scheduler.tasks[slot]
        elapsed = time.perf_counter() - self._started[slot]
        try:
            record = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            reason = (
                f"Ray worker of slot {slot} lost while running trial {task.trial} "
                f"(tried {self.max_retries + 1} time{'s' if self.max_retries else ''}): {_first_line(exc)}"
            )
            log.warning("trial %d %s failed: %s; starting a new actor", task.trial, task.arch, reason)
            self._finished.append(lost_trial_record(task, reason, elapsed, ray_error=str(exc)[:2000]))
            self._replace(slot)
            return
        except ray.exceptions.RayError as exc:  # the result object lost with its node, etc.
            reason = f"Ray could not return trial {task.trial}: {type(exc).__name__}: {_first_line(exc)}"
            self._finished.append(lost_trial_record(task, reason, elapsed, ray_error=str(exc)[:2000]))
            self._replace(slot)
            return
        if isinstance(record, tuple):  # ("fatal_search", message): would fail every trial the same way
            self.shutdown(cancel=True)
            raise FatalSearchError(record[1])
        self._finished.append(record)
        self._send(self._scheduler.finished(slot, holds_model=record.ok))

    def _replace(self, slot: int) -> None:
        self._ray.kill(self._actors[slot], no_restart=True)
        self._scheduler.lost(slot)
        self._actors[slot] = self._new_actor()
        self._send(self._scheduler.next_for(slot))

    @property
    def running(self) -> int:
        return self._running

    def release(self, candidate: int) -> None:
        slot = self._scheduler.release(candidate)
        if slot is not None:
            self._actors[slot].release.remote(candidate)

    def model(self, candidate: int) -> Any:
        return None  # models live in the actors, not in the driver

    def worker_pids(self) -> list[int]:
        """The process id of each slot's actor (for tests and debugging)."""
        return self._ray.get([actor.pid.remote() for actor in self._actors])

    def shutdown(self, cancel: bool = True) -> None:
        """Stop the actors (with ``cancel``, their running trials at once: Ctrl-C); then
        shut down the Ray this executor started."""
        if self._closed:
            return
        self._closed = True
        if not cancel and self._refs:
            self._ray.wait(list(self._refs), num_returns=len(self._refs))
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        self._refs.clear()
        self._scheduler.clear()
        self._shutdown_ray()

    def _shutdown_ray(self) -> None:
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()


def ray_executor(runner: Any, *, max_concurrent: int = 1, **options: Any) -> RayExecutor:
    """The ``ray`` executor factory (``register_executors``)."""
    return RayExecutor(runner, max_concurrent=max_concurrent, **options)


def _actor_options(resources: Mapping[str, Any] | None) -> dict[str, Any]:
    """``resources_per_trial`` as Ray actor options (``num_cpus``, ``num_gpus``,
    ``memory``, ``resources``)."""
    if resources is None:
        return {"num_cpus": 1}
    if not isinstance(resources, Mapping):
        raise ConfigError(f"{_FIELD}.resources_per_trial: a mapping such as {{cpu: 2, gpu: 1}}, got {resources!r}")
    options: dict[str, Any] = {}
    custom: dict[str, float] = {}
    for key, value in resources.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{_FIELD}.resources_per_trial.{key}: must be a number >= 0, got {value!r}")
        name = _BUILTIN_RESOURCES.get(str(key).lower())
        if name is None:
            custom[str(key)] = float(value)
        else:
            options[name] = int(value) if name == "memory" else value
    options.setdefault("num_cpus", 1)
    if custom:
        options["resources"] = custom
    return options


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")
