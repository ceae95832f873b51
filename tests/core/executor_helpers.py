"""Trial runners for the executor tests (a unique module name: worker processes and Ray
workers import it by name to unpickle the runner)."""

from __future__ import annotations

import ctypes
import os
import time

from autokd import TrialRecord


class SleepRunner:
    """A trial runner (the contract's ``TrialRunner``) whose trials sleep.

    ``arch['x']`` is the trial's score; ``arch['sleep']`` overrides the sleep; ``arch['crash']``
    ends the worker (``'segv'``: a real segmentation fault; ``'exit'``: ``os._exit(3)``). It
    keeps a "model" per candidate (the fraction trained so far) so tests see whether a rung
    continued a held model.
    """

    def __init__(self, sleep: float = 0.5, pid_dir: str | None = None):
        self.sleep = sleep
        self.pid_dir = pid_dir
        self.models: dict[int, float] = {}

    def __call__(self, task) -> TrialRecord:
        start = time.perf_counter()
        if self.pid_dir is not None:
            path = os.path.join(self.pid_dir, f"trial-{task.trial}.pid")
            with open(path + ".tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.replace(path + ".tmp", path)
        crash = task.arch.get("crash")
        if crash == "segv":
            ctypes.string_at(0)
        elif crash == "exit":
            os._exit(3)
        time.sleep(task.arch.get("sleep", self.sleep))
        continued = task.candidate in self.models
        trained = self.models.get(task.candidate, 0.0) + (1.0 if task.budget is None else task.budget)
        self.models[task.candidate] = trained
        extras = {
            "pid": os.getpid(),
            "continued": continued,
            "trained": trained,
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        if task.arch.get("fail"):
            return TrialRecord(task.trial, dict(task.arch), {}, "failed", "ValueError: asked to fail", 0.0, extras)
        metrics = {"score": float(task.arch["x"])}
        return TrialRecord(task.trial, dict(task.arch), metrics, "ok", None, time.perf_counter() - start, extras)

    def release(self, candidate: int) -> None:
        self.models.pop(candidate, None)

    def model(self, candidate: int):
        return self.models.get(candidate)


def wait_all(executor, timeout: float = 60.0) -> list[TrialRecord]:
    """Every record of the submitted tasks (fails the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    records = []
    while executor.running:
        if time.monotonic() > deadline:
            raise AssertionError(f"{executor.running} tasks still running after {timeout} s")
        records += executor.wait(timeout=1.0)
    return records


def first_start(start_log) -> float:
    """The time.time() at which the first training of a search started."""
    with open(start_log) as fh:
        return min(float(line) for line in fh.read().split())


def wait_for_file(path: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.02)
    with open(path) as fh:
        return fh.read()


# --- user functions of a search (AutoDistillation) whose trials sleep ---------------------


def build(arch):
    return dict(arch)


class SleepTrain:
    """``train_func``: sleeps ``sleep`` seconds; appends the arch to ``log_path`` when it
    starts (to count trainings); writes its pid to ``pid_dir/<hidden>-<layers>.pid``."""

    def __init__(self, sleep: float, log_path=None, pid_dir=None, long_arch=None, start_log=None):
        self.sleep, self.log_path, self.pid_dir, self.long_arch = sleep, log_path, pid_dir, long_arch
        self.start_log = start_log  # a file each training appends its start time (time.time()) to

    def __call__(self, model):
        if self.start_log is not None:
            with open(self.start_log, "a") as fh:
                fh.write(f"{time.time()}\n")
        if self.log_path is not None:
            with open(self.log_path, "a") as fh:
                fh.write(f"{model['hidden']}-{model['layers']}\n")
        if self.pid_dir is not None:
            path = os.path.join(self.pid_dir, f"{model['hidden']}-{model['layers']}.pid")
            with open(path + ".tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.replace(path + ".tmp", path)
        long = self.long_arch is not None and all(model[k] == v for k, v in self.long_arch.items())
        time.sleep(60 if long else self.sleep)
        return model


def evaluate(model):
    return {"score": float(model["hidden"] * model["layers"]), "cost": float(model["hidden"] + model["layers"])}


def search_config(max_trials=8, seed=3, executor=None, algorithm="random"):
    search = {
        "search_space": {"hidden": [1, 2, 3, 4, 5, 6], "layers": [1, 2, 3, 4]},
        "search_algorithm": algorithm,
        "metrics": ["score", "cost"],
        "higher_is_better": [True, False],
        "max_trials": max_trials,
        "seed": seed,
    }
    if executor is not None:
        search["executor"] = executor
    return {"model": {"name": "sleepy", "framework": "pytorch"}, "auto_distillation": {"search": search}}
