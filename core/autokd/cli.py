"""The ``autokd`` command: ``run``, ``plugins`` and ``report``.

Exit status: 0 on success, 2 for a bad config or command line (the message names each
bad field, no traceback), 1 for any other failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import attrs

from .errors import AutoKDError, ConfigError, StoreError, UnknownNameError
from .imports import import_object

__all__ = ["import_string", "main", "run_config"]

log = logging.getLogger("autokd")


#: The name before :func:`autokd.import_object` was public; kept for existing callers.
import_string = import_object


def run_config(
    config_path: str,
    output_dir: str | None = None,
    resume: bool = False,
    max_trials: int | None = None,
    seed: int | None = None,
    progress: bool = True,
):
    """Run the search a YAML config describes; returns the :class:`AutoDistillation`."""
    from .autodistillation import AutoDistillation
    from .config import load_config
    from .plugins import registry

    config = load_config(config_path, plugins=registry())
    if config.auto_distillation is None:
        raise ConfigError(
            "auto_distillation: missing: `autokd run` needs an auto_distillation.search section", config_path
        )
    search = config.search
    try:  # an advisor that is not installed is a config problem: say so before any work
        registry().advisors.registration(search.search_algorithm)
    except UnknownNameError as exc:
        raise ConfigError(f"auto_distillation.search.search_algorithm: {exc}", config_path) from None
    if max_trials is not None or seed is not None:
        search = attrs.evolve(
            search,
            max_trials=search.max_trials if max_trials is None else max_trials,
            seed=search.seed if seed is None else seed,
        )
        config = attrs.evolve(config, auto_distillation=attrs.evolve(config.auto_distillation, search=search))
    output_dir = output_dir or os.path.join(
        "autokd-output", config.model.name or os.path.splitext(os.path.basename(config_path))[0]
    )

    # Every import string is resolved and checked now, before any training.
    user_builder = None
    if config.model.builder and ":" in config.model.builder:
        fn = import_string(config.model.builder, "model.builder", callable_=True)
        options = dict(config.model.builder_options)
        user_builder = (lambda arch: fn(arch, **options)) if options else fn
    train_func = import_string(config.train.function, "train.function", True) if config.train.function else None
    eval_func = (
        import_string(config.evaluation.function, "evaluation.function", True) if config.evaluation.function else None
    )
    for field, spec in (("data.train", config.data.train), ("data.eval", config.data.eval)):
        if spec:
            import_string(spec, field, callable_=True)
    teacher_spec = config.model.teacher
    if teacher_spec and ":" in teacher_spec and not os.path.isdir(teacher_spec):  # else a folder the backend loads
        import_string(teacher_spec, "model.teacher", callable_=True)

    example_inputs = eval_data = teacher = backend = None
    if user_builder is None or train_func is None or eval_func is None:
        framework = config.model.framework
        try:
            backend = registry().trainers.get(framework)
        except UnknownNameError as exc:
            missing = [
                name
                for name, given in (
                    ("model.builder", user_builder),
                    ("train.function", train_func),
                    ("evaluation.function", eval_func),
                )
                if given is None
            ]
            raise ConfigError(
                f"{', '.join(missing)}: not given, so the {framework} backend's built-in functions are needed, "
                f"but: {exc}"
            ) from None
        functions = backend.search_functions(
            config, output_dir=output_dir, model_builder=user_builder, train_func=train_func, eval_func=eval_func
        )
        user_builder, train_func, eval_func = functions.model_builder, functions.train_func, functions.eval_func
        example_inputs, eval_data, teacher = functions.example_inputs, functions.eval_data, functions.teacher

    agent = AutoDistillation(user_builder, config)
    agent.train_func = train_func
    agent.eval_func = eval_func
    agent.example_inputs = example_inputs
    agent.eval_data = eval_data
    agent.show_progress = progress
    agent.backend, agent.teacher = backend, teacher
    agent.search_loop(output_dir, resume=resume)
    return agent


# --- report --------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_report(output_dir: str) -> str:
    """The trials as a table, the Pareto front and the best arch.

    Reads only: the store is never repaired or rewritten here. The front and the best
    trial are computed from ``trials.jsonl`` (``summary.json`` may be stale after a
    kill); ``summary.json`` gives only the objectives and constraints."""
    from .report import load_view

    view = load_view(output_dir)  # reads only; front and chosen trial recomputed from trials.jsonl
    records, objectives = view.records, view.objectives
    arch_keys = list(dict.fromkeys(k for r in records for k in r.arch))
    metric_keys = list(
        dict.fromkeys(k for r in records for k in r.metrics if not isinstance(r.metrics[k], dict | list))
    )
    front, best = {r.trial for r in view.front}, (view.best.trial if view.best is not None else None)
    header = ["trial", *arch_keys, *metric_keys, "status", "time_s", ""]
    rows = []
    for r in records:
        mark = ("best " if r.trial == best else "") + ("front" if r.trial in front else "")
        rows.append(
            [
                str(r.trial),
                *(_fmt(r.arch.get(k, "")) for k in arch_keys),
                *(_fmt(r.metrics.get(k, "")) for k in metric_keys),
                r.status if r.ok else f"failed: {(r.error or '')[:40]}",
                f"{r.duration_s:.1f}",
                mark.strip(),
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append("")
    if objectives:
        lines.append(
            "objectives: "
            + ", ".join(f"{o.name} ({'higher' if o.higher_is_better else 'lower'} is better)" for o in objectives)
        )
    else:
        lines.append(f"objectives: unknown ({os.path.join(output_dir, 'summary.json')} is missing): no front or best")
    lines.append(f"pareto front: trials {sorted(front)}")
    if view.best is not None:
        note = "" if view.best_feasible or not view.constraints else " (no trial meets the constraints)"
        lines.append(f"best trial {best}: {view.best.arch}{note}")
    return "\n".join(lines)


def _report_command(output_dirs: list[str], merged_dir: str | None) -> None:
    """One output dir: its report, and ``report/pareto.png`` + ``report/index.html`` in it.
    Several: merged into one (``autokd.merge``), then reported (the pictures only when
    the merged trials are kept with ``--merged-dir``)."""
    from .report import MATPLOTLIB_HINT, write_report

    if len(output_dirs) == 1 and merged_dir is None:
        print(format_report(output_dirs[0]))
        written = write_report(output_dirs[0])
        print(MATPLOTLIB_HINT if written is None else "wrote " + ", ".join(written))
        return
    import tempfile

    from .merge import merge_output_dirs

    with tempfile.TemporaryDirectory(prefix="autokd-merged-") as tmp:
        merged = merge_output_dirs(output_dirs, merged_dir or tmp)
        print(format_report(merged.output_dir))
        print(merged.legend())
        if merged_dir is not None:
            written = write_report(merged.output_dir)
            print(MATPLOTLIB_HINT if written is None else "wrote " + ", ".join(written))


def format_plugins() -> str:
    from .plugins import registry

    reg = registry()
    lines = []
    for info in reg.plugins:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(no distribution)"
        lines.append(f"{info.name}: {dist}" + (f"  FAILED: {info.error}" if info.error else ""))
        by_kind: dict[str, list[str]] = {}
        for r in info.registrations:
            label = r.name + (f" [{r.framework}]" if r.framework and r.kind != "trainers" else "")
            if r.aliases:
                label += f" (aliases: {', '.join(r.aliases)})"
            by_kind.setdefault(r.kind, []).append(label)
        for kind in reg.KINDS:
            if kind in by_kind:
                lines.append(f"  {kind}: {', '.join(by_kind[kind])}")
    return "\n".join(lines)


# --- entry point ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autokd", description="Search a small student model and distil it from a teacher."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the search a YAML config describes")
    run.add_argument("config", help="YAML config file")
    run.add_argument("--output-dir", help="where trials.jsonl and summary.json go (default autokd-output/<model.name>)")
    run.add_argument("--resume", action="store_true", help="continue the search recorded in the output dir")
    run.add_argument("--max-trials", type=int, help="override search.max_trials")
    run.add_argument("--seed", type=int, help="override search.seed")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub.add_parser("plugins", help="list plugins and what each registered")
    report = sub.add_parser("report", help="show the trials, Pareto front and best arch of an output dir")
    report.add_argument("output_dir", nargs="+", help="an output dir; several (drivers of one search) are merged")
    report.add_argument("--merged-dir", help="where merged trials go (default: a temporary dir, removed after)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    # A config key autokd deprecates is shown to whoever runs the config (Python hides
    # DeprecationWarning outside __main__ by default).
    warnings.filterwarnings("default", category=DeprecationWarning, module="autokd")
    try:
        if args.command == "run":
            if args.max_trials is not None and args.max_trials <= 0:
                parser.error("--max-trials must be positive")
            agent = run_config(
                args.config, args.output_dir, args.resume, args.max_trials, args.seed, not args.no_progress
            )
            print(format_report(agent.output_dir))
            print(f"results in {agent.output_dir}")
        elif args.command == "plugins":
            print(format_plugins())
        elif args.command == "report":
            _report_command(args.output_dir, args.merged_dir)
        return 0
    except (ConfigError, UnknownNameError, StoreError) as exc:
        if args.verbose:
            raise
        print(f"autokd: error: {exc}", file=sys.stderr)
        return 2
    except AutoKDError as exc:
        if args.verbose:
            raise
        print(f"autokd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("autokd: interrupted; recorded trials are kept (rerun with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
