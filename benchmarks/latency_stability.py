"""How stable is the ``latency`` evaluator? Measures three BERT sizes built from configs,
each ``--rounds`` times (the sizes interleaved, in a rotating order, so a slow spell of
the machine hits all of them), and prints per size the coefficient of variation of the
reported latency across rounds, and whether the three sizes ranked right every round.

    python benchmarks/latency_stability.py                       # PyTorch, 10 rounds
    python benchmarks/latency_stability.py --framework tensorflow # in a TF env (threads pinned)
    python benchmarks/latency_stability.py --seq-len 64 --repeats 20 --threads 2
    python benchmarks/latency_stability.py --same L2-H128 --seq-len 16   # issue #16's check

Exits 1 if any round ranked the sizes wrong.

``--same SIZE`` instead calls the evaluator ``--rounds`` times in a row on one model and
prints the CV of what it reports (the low-quantile estimate) next to the CV of the median
of the same samples (what it reported before #16), the seconds each call took, and the
machine's load average; ``--fixed-seconds 2`` alternates each call with one that samples
for a fixed 2 s (the same estimator without the stop rule), side by side.

    python benchmarks/latency_stability.py --same MLP --fixed-seconds 2
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings

# (name, BertConfig overrides): each size has several times the FLOPs of the previous one.
SIZES = [
    ("L2-H128", dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512)),
    ("L4-H256", dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024)),
    ("L4-H512", dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, intermediate_size=2048)),
]


def build(framework: str, overrides: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers<5 warns that its TF classes are deprecated
        import transformers

        config = transformers.BertConfig(vocab_size=30522, max_position_embeddings=512, **overrides)
        if framework == "pytorch":
            return transformers.BertModel(copy.deepcopy(config)).eval()
        return transformers.TFBertModel(copy.deepcopy(config))


def _cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=["pytorch", "tensorflow"], default="pytorch")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=None, help="evaluator default if left out")
    parser.add_argument("--repeats", type=int, default=None, help="evaluator default if left out")
    parser.add_argument("--threads", type=int, default=None, help="evaluator default if left out")
    parser.add_argument("--min-seconds", type=float, default=None, help="evaluator default if left out")
    parser.add_argument("--max-seconds", type=float, default=None, help="evaluator default if left out")
    parser.add_argument("--tolerance", type=float, default=None, help="evaluator default if left out")
    parser.add_argument(
        "--fixed-seconds",
        type=float,
        default=None,
        help="with --same: alternate each call with one sampling for exactly this long (no stop rule)",
    )
    parser.add_argument(
        "--same",
        choices=["MLP", *(name for name, _ in SIZES)],
        help="--rounds calls in a row on one model (MLP: 192-768-192, batch 8, ~0.2-0.4 ms here)",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import autokd_latency
    from autokd import EvalContext

    options = {"batch_size": args.batch_size, "seq_len": args.seq_len}
    for name in ("warmup", "repeats", "threads", "min_seconds", "max_seconds", "tolerance"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)

    if args.framework == "tensorflow":
        # TF's thread pools can only be fixed before its runtime starts: pin them to the
        # evaluator's thread count (default 1) so both frameworks are measured alike.
        default_threads = next(o.default for o in autokd_latency.OPTIONS["latency"] if o.name == "threads")
        autokd_latency.pin_tensorflow_threads(args.threads or default_threads)

    if args.same:
        return same_model(args, options)

    models = [(name, build(args.framework, overrides)) for name, overrides in SIZES]
    flops = {
        name: autokd_latency.count_flops(model, batch_size=args.batch_size, seq_len=args.seq_len, ops="matmul").total
        for name, model in models
    }
    params = {name: autokd_latency.count_params(model).total for name, model in models}
    expected = [name for name, _ in models]  # fastest first

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    reported: dict[str, list[float]] = {name: [] for name, _ in models}
    within_cv: dict[str, list[float]] = {name: [] for name, _ in models}
    cpu_ms: dict[str, list[float]] = {name: [] for name, _ in models}
    rankings_right = []
    for round_ in range(args.rounds):
        order = models[round_ % len(models) :] + models[: round_ % len(models)]
        this_round = {}
        for name, model in order:
            context = EvalContext(options=dict(options))
            this_round[name] = autokd_latency.latency(model, context)
            within_cv[name].append(context.extras["latency"]["cv"])
            cpu_ms[name].append(context.extras["latency"]["cpu_ms"])
        for name, value in this_round.items():
            reported[name].append(value)
        ranking = sorted(this_round, key=this_round.get)
        rankings_right.append(ranking == expected)
        print(
            f"round {round_ + 1:2d}: "
            + "  ".join(f"{name} {this_round[name]:8.2f} ms" for name in expected)
            + ("" if ranking == expected else "  <- ranked wrong"),
            flush=True,
        )
    elapsed = time.perf_counter() - start
    threads = context.extras["latency"]["threads"]

    print()
    print(
        f"{args.framework}, batch {args.batch_size} x {args.seq_len} tokens, "
        f"threads {threads}, {args.rounds} rounds in {elapsed:.0f} s, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'size':8s} {'params':>11s} {'GFLOPs':>7s} {'latency ms':>11s} {'CV (rounds)':>12s} "
        f"{'CV (within)':>12s} {'CPU ms':>8s} {'CPU CV (rounds)':>16s}"
    )
    for name in expected:
        print(
            f"{name:8s} {params[name]:>11,d} {flops[name] / 1e9:>7.3f} {statistics.median(reported[name]):>11.2f} "
            f"{_cv(reported[name]):>12.1%} {statistics.fmean(within_cv[name]):>12.1%} "
            f"{statistics.median(cpu_ms[name]):>8.2f} {_cv(cpu_ms[name]):>16.1%}"
        )
    print(
        "CV (rounds): of the reported latency (the median of a measurement) across rounds; CV (within): of the\n"
        "samples inside one measurement, averaged; CPU ms: the process's CPU time per call, which a busy machine\n"
        "does not inflate (with 1 thread a latency well above it means the machine was contended)."
    )
    right = sum(rankings_right)
    verdict = "yes" if right == args.rounds else "no"
    print(f"ranking right every round: {verdict} ({right}/{args.rounds})")
    return 0 if right == args.rounds else 1


def same_model(args, options: dict) -> int:
    """``--rounds`` evaluator calls in a row on one model: the CV of the reported latency
    (the low-quantile estimate) and of the median of the same samples, and the time each
    call took; with ``--fixed-seconds S`` each call is followed by one that samples for
    exactly S seconds (the same estimator without the stop rule), side by side."""
    import autokd_latency
    from autokd import EvalContext

    if args.same == "MLP":
        import torch

        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(192, 768), torch.nn.GELU(), torch.nn.Linear(768, 192)).eval()
        options = {k: v for k, v in options.items() if k not in ("batch_size", "seq_len")}
        example = torch.randn(8, 192)
    else:
        model = build(args.framework, dict(SIZES)[args.same])
        example = None
    fixed = {**options, "min_seconds": args.fixed_seconds, "max_seconds": args.fixed_seconds, "tolerance": 1e-12}
    variants = [("adaptive", options)] + ([(f"fixed {args.fixed_seconds:g} s", fixed)] if args.fixed_seconds else [])
    reported = {name: [] for name, _ in variants}
    medians = {name: [] for name, _ in variants}
    cost = {name: [] for name, _ in variants}
    load_before = os.getloadavg()
    for call in range(args.rounds):
        for name, variant_options in variants:
            context = EvalContext(example_inputs=example, options=dict(variant_options))
            start = time.perf_counter()
            reported[name].append(autokd_latency.latency(model, context))
            cost[name].append(time.perf_counter() - start)
            extras = context.extras["latency"]
            medians[name].append(extras["median_ms"])
            spread = "n/a" if extras["spread"] is None else format(extras["spread"], ".1%")
            print(
                f"call {call + 1:2d} {name:>10s}: latency {reported[name][-1]:.3f} ms  (median of samples "
                f"{medians[name][-1]:.3f} ms, {extras['samples']} samples in {extras['blocks']} blocks, "
                f"spread {spread}, {cost[name][-1]:.2f} s)",
                flush=True,
            )
    print()
    print(
        f"{args.framework} {args.same}, "
        + ("batch 8 x 192 features" if args.same == "MLP" else f"batch {args.batch_size} x {args.seq_len} tokens")
        + "; load average "
        f"{load_before[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'':22s} {'latency ms':>10s} {'CV':>6s} {'median of samples ms':>21s} {'CV':>6s} {'s per call':>11s}")
    for name, _ in variants:
        print(
            f"{name + ' (low quantile)':22s} {statistics.median(reported[name]):10.3f} {_cv(reported[name]):6.1%} "
            f"{statistics.median(medians[name]):21.3f} {_cv(medians[name]):6.1%} {statistics.fmean(cost[name]):11.2f}"
        )
    first = variants[0][0]
    print(f"ratio of CVs ({first}: low quantile / median of samples): {_cv(reported[first]) / _cv(medians[first]):.2f}")
    if args.fixed_seconds:
        second = variants[1][0]
        print(
            f"{first} / {second}: CV {_cv(reported[first]) / _cv(reported[second]):.2f}, "
            f"time per call {statistics.fmean(cost[first]) / statistics.fmean(cost[second]):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
