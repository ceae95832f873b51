"""``autokd-minilm``: the AutoDistillation search that compresses all-MiniLM-L6-v2.

Writes to the output directory: ``trials.jsonl``, ``summary.json``, ``report/pareto.png``
and ``report/index.html`` (``autokd report``'s), the best student in ``best/``
(sentence-transformers layout, with its tokenizer, ``metrics.json`` and a model card) and
prints the teacher and the best student side by side.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time

import attrs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="autokd-minilm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="YAML config (default: the shipped minilm.yaml)")
    parser.add_argument("--output-dir", default=os.path.join("autokd-output", "minilm"))
    parser.add_argument("--max-trials", type=int, default=None, help="override search.max_trials")
    parser.add_argument("--seed", type=int, default=None, help="override search.seed")
    parser.add_argument("--resume", action="store_true", help="continue the search recorded in --output-dir")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--train-steps",
        type=int,
        nargs=2,
        metavar=("FLASH", "REGULAR"),
        default=None,
        help="override the steps of each flash stage and of the regular stage (e.g. a quick smoke run)",
    )
    parser.add_argument(
        "--augment-copies",
        type=int,
        default=None,
        metavar="N",
        help="train on the utterances and N copies of each with words replaced by the teacher's nearest words "
        "(default: autokd_minilm.task.AUGMENT_COPIES; 0: the utterances alone)",
    )
    args = parser.parse_args(argv)
    if args.augment_copies is not None and args.augment_copies < 0:
        parser.error(f"--augment-copies must be 0 or more, got {args.augment_copies}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import autokd

    from .data import MissingAssetError

    try:
        return _run(args)
    except MissingAssetError as exc:
        print(f"autokd-minilm: {exc}", file=sys.stderr)
        return 2
    except (autokd.ConfigError, autokd.UnknownNameError) as exc:
        print(f"autokd-minilm: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import autokd
    from autokd import write_report

    from . import task
    from .report import arch_label, comparison_table

    log = logging.getLogger("autokd.minilm")
    started = time.perf_counter()
    task.teacher_path()  # a missing asset is reported before any work
    from .data import corpus_dir

    corpus_dir()
    config = autokd.load_config(args.config or task.DEFAULT_CONFIG)
    search = config.search
    if args.max_trials is not None or args.seed is not None:
        search = attrs.evolve(
            search,
            max_trials=args.max_trials if args.max_trials is not None else search.max_trials,
            seed=args.seed if args.seed is not None else search.seed,
        )
        config = attrs.evolve(config, auto_distillation=attrs.evolve(config.auto_distillation, search=search))
    if args.train_steps is not None:
        flash_steps, regular_steps = args.train_steps
        ad = config.auto_distillation
        config = attrs.evolve(
            config,
            auto_distillation=attrs.evolve(
                ad,
                flash_distillation=attrs.evolve(ad.flash_distillation, train_steps=[flash_steps]),
                regular_distillation=attrs.evolve(ad.regular_distillation, train_steps=[regular_steps]),
            ),
        )
    out = args.output_dir
    os.makedirs(out, exist_ok=True)

    log.info("loading the teacher and the chatterbot utterances")
    train, held_out = task.datasets()
    log.info(
        "data: %d train / %d held-out utterances in %d topics", len(train), len(held_out), len(train.utterances.topics)
    )
    task.teacher_embeddings()

    agent = autokd.AutoDistillation(lambda arch: task.build_student(arch, seed=search.seed or 0), config)
    if args.augment_copies is not None:
        task.set_augmentation(args.augment_copies)
    log.info("training data: %d examples (the utterances and altered copies)", len(task.training_data()))
    agent.train_func = task.TrainFunc(config, out, show_progress=not args.no_progress)
    agent.eval_func = task.EvalFunc(out, list(config.search.search_space))
    latency_options = config.evaluation.options_for("latency")
    agent.example_inputs = task.latency_inputs(latency_options.get("batch_size", 8))
    agent.show_progress = not args.no_progress
    agent.teacher = task.load_teacher()  # output.save: its tokenizer and metrics go beside best/
    agent.search_loop(out, resume=args.resume)

    # the chosen student: its final distillation if the config has one, else its
    # full-budget search evaluation (lower rungs of a multi-fidelity search are screening)
    chosen = [
        r
        for r in agent.search_result
        if r.ok and r.arch == agent.best_model_arch and (r.full_budget or r.phase == "final")
    ]
    best = max(chosen, key=lambda r: (r.phase == "final", r.trial), default=None)
    full = [r for r in agent.search_result if r.full_budget]
    if best is None:
        log.error("no trial succeeded; see %s", os.path.join(out, "trials.jsonl"))
        return 1
    best_dir = os.path.join(out, "best")  # saved by the search (output.save), with metrics.json and README.md
    if not os.path.exists(os.path.join(best_dir, "modules.json")):  # e.g. resumed: the student is from EvalFunc
        if os.path.exists(best_dir):
            shutil.rmtree(best_dir)
        shutil.copytree(task.student_dir(out, best.arch), best_dir)
    write_report(out, arch_label=arch_label)  # report/pareto.png and report/index.html

    teacher_row = _teacher_metrics(agent, task)
    student_row = dict(best.metrics)
    # the two latencies of the table come from one side-by-side measurement (alternating
    # rounds), not from minutes apart: on a shared machine only the ratio is stable
    teacher_row["latency"], student_row["latency"] = _side_by_side_latency(
        agent, [task.load_teacher(), task.load_student(best_dir)]
    )
    table = comparison_table(
        [
            ("teacher all-MiniLM-L6-v2", teacher_row),
            (f"student (trial {best.trial}{', final' if best.phase == 'final' else ''})", student_row),
        ]
    )
    print()
    print(f"best arch: {best.arch}")
    note = (
        f"latency: ms per batch of {latency_options.get('batch_size', 8)}, median of {LATENCY_ROUNDS} rounds "
        f"measuring teacher and student in turn: the student is {teacher_row['latency'] / student_row['latency']:.1f}x faster"
    )
    print(table)
    print(note)
    with open(os.path.join(out, "comparison.md"), "w", encoding="utf-8") as fh:
        fh.write(f"{table}\n\n{note}\n")
    screened = len({r.candidate_number for r in agent.search_result if r.phase == "search"})
    print(
        f"\n{screened} candidates, {len(full)} trained to the full budget, {len(agent.search_result)} evaluations "
        f"in {time.perf_counter() - started:.0f} s; results in {out} "
        f"(trials.jsonl, summary.json, report/pareto.png, report/index.html, best/)"
    )
    return 0


LATENCY_ROUNDS = 5


def _side_by_side_latency(agent, models) -> list[float]:
    """Each model's median latency over rounds that measure the models in turn, with the
    search's latency options."""
    import statistics

    import autokd

    latency = autokd.registry().evaluators.get("latency", "pytorch")
    options = agent.config.evaluation.options_for("latency")
    samples = [[] for _ in models]
    for _ in range(LATENCY_ROUNDS):
        for model, out in zip(models, samples):
            ctx = autokd.EvalContext(example_inputs=agent.example_inputs, options=options, framework="pytorch")
            out.append(latency(model, ctx))
    return [statistics.median(s) for s in samples]


def _teacher_metrics(agent, task) -> dict:
    """The teacher's parameters, probe accuracy and (trivially) fidelity, with the same
    evaluators as the students."""
    import autokd

    teacher = task.load_teacher()
    ctx = autokd.EvalContext(
        example_inputs=agent.example_inputs, options=agent.config.evaluation.options_for("params"), framework="pytorch"
    )
    row = {
        "fidelity": 1.0,
        "general_fidelity": 1.0,
        "params": autokd.registry().evaluators.get("params", "pytorch")(teacher, ctx),
    }
    train_emb, held_emb = task.teacher_embeddings()
    row["probe_accuracy"] = task.probe_accuracy(train_emb, held_emb)
    return row


if __name__ == "__main__":
    sys.exit(main())
