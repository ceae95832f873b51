"""What the teacher-output cache (issue #8) buys on the main job's pair: the shipped
all-MiniLM-L6-v2 teacher (22.7M parameters) and a 3-layer, hidden-128 BERT student,
batches of 32 utterances padded to their longest.

    python benchmarks/teacher_cache.py [--framework pytorch|tensorflow] [--steps 12] [--rounds 3] [--search-flash-steps 10]
                                       [--search-regular-steps 40] [--no-search] [--threads N]

1. Time per distillation step, live teacher vs warm cache, side by side: a flash stage
   (layer 0 of the student against its teacher layer) and the regular stage (the
   sentence embedding), each run ``--rounds`` times for ``--steps`` steps, alternating
   which goes first; the median step of each, and their ratio (the goal is <= 0.4). The
   cache is prefilled once (its time and memory are printed). Each step is the real
   ``autokd_torch.Distillation`` step: the time between two batches drawn by the loop.
2. Wall time of a 4-trial grid search (2 or 3 layers, hidden 128 or 192) with the live
   teacher, with the cache filled as trials go, and with the cache prefilled (as
   ``minilm.yaml`` configures it), trial by trial in turn (each search is resumed for
   its next trial), with small ``train_steps``. Every trial builds its own train function
   (its flash stages depend on the student's depth) and shares one ``TeacherForward``.

The machine is shared and noisy: compare figures from the same run only.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and any(
    arg in ("--framework=tensorflow", "tensorflow") and (arg != "tensorflow" or prev == "--framework")
    for prev, arg in zip(["", *sys.argv[1:]], sys.argv[1:])
):
    # the TensorFlow pair (benchmarks/teacher_cache_tf.py) needs no torch: run it before importing torch
    import os as _os

    sys.path.insert(0, _os.path.dirname(_os.path.abspath(__file__)))
    import teacher_cache_tf

    teacher_cache_tf.main()
    sys.exit(0)

import argparse
import copy
import itertools
import json
import os
import statistics
import tempfile
import time

import torch

import autokd
from autokd_minilm.task import (
    DEFAULT_CONFIG,
    build_student,
    collate,
    datasets,
    embed,
    expand_stages,
    load_teacher,
    teacher_embeddings,
)
from autokd_torch import Distillation, FlashDistillationTrainFunc, TeacherForward, TeacherOutputCache
from autokd_torch.data import make_dataloader, repeat_batches, split_batch
from autokd_torch.train import stage_criterion

STUDENT = {"num_hidden_layers": 3, "hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 512}
BATCH = 32
OPTIMIZER = {"AdamW": {"learning_rate": 5e-4}}


class TimedBatches:
    """The loop's batches; the time of each draw (one step is the time between two)."""

    def __init__(self, batches):
        self.batches = batches
        self.times: list[float] = []

    def __iter__(self):
        return self

    def __next__(self):
        self.times.append(time.perf_counter())
        return next(self.batches)

    def step_times(self, end: float) -> list[float]:
        marks = [*self.times, end]
        return [b - a for a, b in itertools.pairwise(marks)]


def stage_config(arch: dict) -> autokd.Config:
    config = autokd.load_config(DEFAULT_CONFIG)
    return autokd.load_config({"auto_distillation": expand_stages(config, arch)})


def run_steps(stage, forward, student, steps: int, seed: int) -> list[float]:
    """``steps`` steps of ``stage``; each step's seconds but the first (warm-up)."""
    train, _ = datasets()
    batches = TimedBatches(repeat_batches(make_dataloader(train, BATCH, collate_fn=collate, seed=seed)))
    distiller = Distillation(
        criterion=stage_criterion(stage), train_steps=steps, block_name=stage.block_name, teacher=forward
    )
    distiller.student_model = student
    distiller.teacher_model = forward.teacher_model
    distiller.train_dataloader = batches
    distiller.optimizer_config = OPTIMIZER
    distiller.show_progress = False
    distiller.fit()
    return batches.step_times(time.perf_counter())[1:]


def teacher_forward_ms(teacher, rounds: int) -> float:
    train, _ = datasets()
    loader = make_dataloader(train, BATCH, collate_fn=collate, seed=99)
    times = []
    for item, _ in zip(loader, range(rounds * 4), strict=False):
        inputs = split_batch(item.batch)[1]
        start = time.perf_counter()
        with torch.no_grad():
            teacher(**inputs)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def step_benchmark(steps: int, rounds: int) -> None:
    teacher = load_teacher()
    train, _ = datasets()
    config = stage_config(STUDENT)
    flash, regular = config.auto_distillation.flash_stages()[0], config.auto_distillation.regular_stages()[0]
    stages = {"flash 1/3 " + flash.block_name: flash, "regular 1/1": regular}

    live = TeacherForward(teacher)
    cached = TeacherForward(teacher, cache=TeacherOutputCache(prefill=True))
    for stage in stages.values():
        cached.require([(m.teacher_layer, m.teacher_process) for m in stage.layer_mappings])
    start = time.perf_counter()
    cached.prepare(train, data_collator=collate, batch_size=BATCH, show_progress=False)
    prefill_s = time.perf_counter() - start
    cache = cached.cache
    print(
        f"student {STUDENT}, batch {BATCH}, torch threads {torch.get_num_threads()}; "
        f"training set {len(train)} utterances"
    )
    print(
        f"cache prefill: {len(train)} examples in {prefill_s:.1f} s; cache memory {cache.memory_bytes / 2**20:.1f} MB "
        f"({cache.dtype}, {len(cached.feature_specs)} features), {cache.disk_bytes} bytes on disk"
    )
    print(f"teacher forward alone: median {teacher_forward_ms(teacher, rounds):.0f} ms per batch")

    base = build_student(STUDENT)
    times: dict[tuple[str, str], list[float]] = {}
    for round_index in range(rounds):
        for name, stage in stages.items():
            order = [("live", live), ("cached", cached)]
            if round_index % 2:
                order.reverse()
            for mode, forward in order:
                student = copy.deepcopy(base)
                times.setdefault((name, mode), []).extend(run_steps(stage, forward, student, steps, round_index))

    print(f"\nmedian time per distillation step ({rounds} rounds x {steps - 1} timed steps, interleaved)")
    print(f"{'stage':34s} {'live teacher':>13s} {'warm cache':>11s} {'ratio':>6s}")
    every = {"live": [], "cached": []}
    for name in stages:
        live_ms = 1000 * statistics.median(times[(name, "live")])
        cached_ms = 1000 * statistics.median(times[(name, "cached")])
        every["live"] += times[(name, "live")]
        every["cached"] += times[(name, "cached")]
        print(f"{name:34s} {live_ms:10.0f} ms {cached_ms:8.0f} ms {cached_ms / live_ms:6.2f}")
    live_ms, cached_ms = (1000 * statistics.median(every[m]) for m in ("live", "cached"))
    print(f"{'all steps':34s} {live_ms:10.0f} ms {cached_ms:8.0f} ms {cached_ms / live_ms:6.2f}  (goal <= 0.4)")
    print(f"hits {cached.hits} / misses {cached.misses} examples in the cached runs")


class SharedTeacherTrainFunc:
    """The MiniLM example's train function (stages expanded for each student), with every
    trial's built-in train function sharing one ``TeacherForward``."""

    def __init__(self, config: autokd.Config, forward: TeacherForward):
        self.config = config
        self.forward = forward

    def __call__(self, student):
        arch = {k: getattr(student.config, k) for k in self.config.search.search_space}
        stages = autokd.load_config(
            {
                "auto_distillation": expand_stages(self.config, arch),
                "train": {"batch_size": BATCH, "optimizer": OPTIMIZER},
            }
        )
        train, _ = datasets()
        train_func = FlashDistillationTrainFunc(
            stages, None, train, data_collator=collate, seed=0, show_progress=False, teacher_forward=self.forward
        )
        return train_func(student)


def fidelity(student) -> dict:
    _, held_out = datasets()
    _, teacher_held = teacher_embeddings()
    student_held = embed(student, held_out)
    return {"fidelity": torch.nn.functional.cosine_similarity(student_held, teacher_held, dim=-1).mean().item()}


def search_config(flash_steps: int, regular_steps: int) -> dict:
    import yaml

    with open(DEFAULT_CONFIG, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    search = doc["auto_distillation"]["search"]
    search.update(
        search_space={
            "num_hidden_layers": [2, 3],
            "hidden_size": [128, 192],
            "num_attention_heads": [4],
            "intermediate_size": [512],
        },
        search_algorithm="grid",
        metrics=["fidelity"],
        higher_is_better=[True],
        constraints=[],
        max_trials=4,
    )
    search.pop("advisor_options", None)
    # whole trials, one after another: no multi-fidelity rungs (this train function takes
    # no budget) and no final distillation
    search.pop("fidelity", None)
    doc["auto_distillation"].pop("final_distillation", None)
    doc["auto_distillation"]["flash_distillation"]["train_steps"] = [flash_steps]
    doc["auto_distillation"]["regular_distillation"]["train_steps"] = [regular_steps]
    doc.pop("evaluation", None)
    return doc


def search_benchmark(flash_steps: int, regular_steps: int) -> None:
    doc = search_config(flash_steps, regular_steps)
    config = autokd.load_config(doc)
    teacher = load_teacher()
    teacher_embeddings()  # computed once, outside the timings
    variants = {
        "live teacher": None,
        "cache, filled as trials go": TeacherOutputCache(prefill=False),
        "cache, prefilled (minilm.yaml)": TeacherOutputCache(prefill=True),
    }
    root = tempfile.mkdtemp(prefix="autokd-teacher-cache-")
    outputs = {name: os.path.join(root, f"search-{i}") for i, name in enumerate(variants)}
    train_funcs = {
        name: SharedTeacherTrainFunc(config, TeacherForward(teacher, cache=c)) for name, c in variants.items()
    }
    wall = dict.fromkeys(variants, 0.0)
    for trial in range(4):
        for name, train_func in train_funcs.items():
            agent = autokd.AutoDistillation(lambda arch: build_student(arch), doc)
            agent.train_func, agent.eval_func, agent.show_progress = train_func, fidelity, False
            agent.max_trials = trial + 1
            start = time.perf_counter()
            agent.search_loop(outputs[name], resume=trial > 0)
            wall[name] += time.perf_counter() - start

    print(
        f"\n4-trial grid search (2-3 layers x hidden 128/192; flash {flash_steps} steps per layer, regular "
        f"{regular_steps} steps; trials interleaved across the searches)"
    )
    for name, seconds in wall.items():
        with open(os.path.join(outputs[name], "trials.jsonl"), encoding="utf-8") as fh:
            trials = [json.loads(line) for line in fh]
        caches = [t["extras"].get("teacher_cache", {}) for t in trials]
        detail = ", ".join(f"{c.get('hits', 0)}/{c.get('misses', 0)}" for c in caches)
        status = "ok" if all(t["status"] == "ok" for t in trials) else "FAILED TRIALS"
        memory = max((c.get("bytes_in_memory", 0) for c in caches), default=0) / 2**20
        print(
            f"{name:32s} {seconds:7.1f} s  ({seconds / wall['live teacher']:.2f} of live; "
            f"hits/misses per trial {detail}; cache {memory:.1f} MB; {status})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--framework",
        choices=["pytorch", "tensorflow"],
        default="pytorch",
        help="tensorflow: the TF backend's cache (benchmarks/teacher_cache_tf.py)",
    )
    parser.add_argument("--steps", type=int, default=12, help="steps per timed run (the first is not timed)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--search-flash-steps", type=int, default=10)
    parser.add_argument("--search-regular-steps", type=int, default=40)
    parser.add_argument("--no-search", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    step_benchmark(args.steps, args.rounds)
    if not args.no_search:
        search_benchmark(args.search_flash_steps, args.search_regular_steps)


if __name__ == "__main__":
    main()
