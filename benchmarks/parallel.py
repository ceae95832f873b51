"""Trials in parallel (#17): throughput, executor overhead and the loop's own cost.

    python benchmarks/parallel.py                       # everything (ray parts if autokd-ray is installed)
    python benchmarks/parallel.py --sleep 2 --trials 16 --skip-cpu --skip-loop

Prints, each measured in this run side by side (the machine is shared and noisy):

1. **Sleep-bound trials** (each sleeps ``--sleep`` s: the executor's own overhead shows):
   trials per minute with 1, 2 and 4 concurrent trials for ``processes`` and ``ray``,
   and the share of the ideal speed-up (the trials' own time divided by the concurrency,
   over the wall time; goal >= 0.9). The
   workers' start (paid once per search) is left out and printed on its own.
2. **CPU-bound distillation trials** (a tiny BERT student distilled from a tiny BERT
   teacher with torch, one thread each; needs torch and transformers): trials per minute
   with 1, 2 and 4 concurrent trials on ``processes``. This machine's cores bound it.
3. **Overhead per trial** in ms of ``local``, ``processes`` and ``ray`` (instant trials,
   one at a time: submit, run, return), and as a share of a 10-second trial (goal < 1%).
4. **The loop's own cost per trial** at 100, 1,000 and 3,000 instant trials
   (``benchmarks/loop_cost.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from autokd import TrialRecord
from autokd.executor import LocalExecutor, TrialTask
from autokd.processes import ProcessesExecutor


class SleepRunner:
    """A trial runner whose trials sleep ``sleep`` seconds (0: instant)."""

    def __init__(self, sleep: float):
        self.sleep = sleep

    def __call__(self, task):
        if self.sleep:
            time.sleep(self.sleep)
        return TrialRecord(task.trial, dict(task.arch), {"score": float(task.trial)}, "ok", None, self.sleep, {})

    def release(self, candidate):
        pass

    def model(self, candidate):
        return None


class DistillRunner:
    """A trial runner that distils a tiny BERT student from a tiny BERT teacher for
    ``steps`` steps on one CPU thread (KL on the logits, MSE on the last hidden state)."""

    def __init__(self, steps: int):
        self.steps = steps

    def __call__(self, task):
        import torch
        from transformers import BertConfig, BertForSequenceClassification

        torch.set_num_threads(1)
        start = time.perf_counter()

        def bert(hidden, seed):
            config = BertConfig(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * hidden,
                                vocab_size=500, max_position_embeddings=64, num_labels=3)  # fmt: skip
            torch.manual_seed(seed)
            return BertForSequenceClassification(config)

        teacher, student = bert(128, 0).eval(), bert(64, task.trial)
        match = torch.nn.Linear(64, 128)
        optimizer = torch.optim.Adam([*student.parameters(), *match.parameters()], lr=1e-3)
        g = torch.Generator().manual_seed(task.trial)
        for _ in range(self.steps):
            ids = torch.randint(1, 500, (16, 32), generator=g)
            with torch.no_grad():
                t = teacher(input_ids=ids, output_hidden_states=True)
            s = student(input_ids=ids, output_hidden_states=True)
            kl = torch.nn.functional.kl_div(s.logits.log_softmax(-1), t.logits.softmax(-1), reduction="batchmean")
            loss = kl + torch.nn.functional.mse_loss(match(s.hidden_states[-1]), t.hidden_states[-1])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return TrialRecord(task.trial, dict(task.arch), {"loss": float(loss)}, "ok", None, time.perf_counter() - start)

    def release(self, candidate):
        pass

    def model(self, candidate):
        return None


def tasks(n: int, offset: int = 0) -> list[TrialTask]:
    return [TrialTask(trial=offset + i, arch={"i": offset + i}, candidate=offset + i) for i in range(n)]


def run(executor, todo) -> float:
    """Wall seconds to run ``todo`` keeping ``max_concurrent`` tasks running (as the loop)."""
    todo = list(todo)
    start = time.perf_counter()
    while todo or executor.running:
        while todo and executor.running < executor.max_concurrent:
            executor.submit(todo.pop(0))
        for record in executor.wait():
            assert record.ok, record.error
    return time.perf_counter() - start


def make(name: str, runner, concurrent: int, cpus: int):
    if name == "local":
        return LocalExecutor(runner, max_concurrent=concurrent)
    if name == "processes":
        return ProcessesExecutor(runner, max_concurrent=concurrent, threads_per_trial=1)
    from autokd_ray import RayExecutor

    return RayExecutor(runner, max_concurrent=concurrent, resources_per_trial={"cpu": 1})


def warm(name: str, runner_cls, arg, concurrent: int, cpus: int):
    """An executor whose workers are up (their first instant trials returned); the
    seconds that took."""
    start = time.perf_counter()
    executor = make(name, runner_cls(arg), concurrent, cpus)
    if name != "local":
        run(executor, tasks(concurrent, offset=10_000))
    return executor, time.perf_counter() - start


def throughput(names, runner_cls, arg, trials: int, levels=(1, 2, 4), ideal_s: float | None = None) -> None:
    """Trials per minute at each level of concurrency; with ``ideal_s`` (a trial's own
    time) also the share of the ideal speed-up (trials x ideal_s / concurrent)."""
    for name in names:
        base = None
        for concurrent in levels:
            executor, start_s = warm(name, runner_cls, arg, concurrent, max(levels))
            try:
                wall = run(executor, tasks(trials))
            finally:
                executor.shutdown(cancel=False)
            per_minute = trials / wall * 60
            base = base or per_minute
            line = f"  {name:<10} {concurrent} at once: {per_minute:7.1f} trials/min  {wall:6.2f} s for {trials}  "
            if ideal_s is not None:
                ideal = trials * ideal_s / concurrent
                line += f"ideal {ideal:5.2f} s: {ideal / wall:4.2f} x the ideal speed-up  "
            else:
                line += f"speed-up {per_minute / base:4.2f} over 1 at once  "
            print(line + f"(workers' start {start_s:5.2f} s)")


def overhead(names, trials: int) -> None:
    per_trial = {}
    for name in names:
        executor, _ = warm(name, SleepRunner, 0.0, 1, 1)
        try:
            run(executor, tasks(20, offset=20_000))  # steady state
            wall = run(executor, tasks(trials))
        finally:
            executor.shutdown(cancel=False)
        per_trial[name] = wall / trials * 1000
    for name, ms in per_trial.items():
        ratio = "" if name == "local" else f"  ({ms / per_trial['local']:.0f} x local)"
        print(f"  {name:<10} {ms:7.3f} ms per trial = {ms / 10_000:.4%} of a 10-s trial{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds of a sleep-bound trial")
    parser.add_argument("--trials", type=int, default=16, help="trials per sleep-bound measurement")
    parser.add_argument("--cpu-trials", type=int, default=8, help="trials per CPU-bound measurement")
    parser.add_argument("--steps", type=int, default=30, help="distillation steps of a CPU-bound trial")
    parser.add_argument("--overhead-trials", type=int, default=300)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-loop", action="store_true")
    args = parser.parse_args()

    names = ["processes"]
    try:
        import ray

        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
        names.append("ray")
    except ImportError:
        print("(ray is not installed: ray figures skipped)")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")

    print(f"\n1. sleep-bound trials ({args.sleep} s each, {args.trials} per measurement)")
    throughput(names, SleepRunner, args.sleep, args.trials, ideal_s=args.sleep)

    if not args.skip_cpu:
        print(
            f"\n2. CPU-bound distillation trials (tiny BERT, {args.steps} steps, 1 thread each, {args.cpu_trials} trials)"
        )
        try:
            import torch  # noqa: F401

            throughput(["processes"], DistillRunner, args.steps, args.cpu_trials)
        except ImportError:
            print("  (torch is not installed: skipped)")

    print(f"\n3. overhead per trial (instant trials, one at a time, {args.overhead_trials} trials)")
    overhead(["local", *names], args.overhead_trials)

    if "ray" in names:
        import ray

        ray.shutdown()

    if not args.skip_loop:
        print("\n4. the loop's own cost per trial (random advisor, two objectives, instant trials)")
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from loop_cost import run as loop_seconds_per_trial

        costs = {n: statistics.median(loop_seconds_per_trial(n, seed) for seed in (0, 1, 2)) for n in (100, 1000, 3000)}
        for n, seconds in costs.items():
            print(f"  {n:>5} trials: {seconds * 1000:6.2f} ms per trial ({seconds / costs[100]:.2f} x the cost at 100)")


if __name__ == "__main__":
    main()
