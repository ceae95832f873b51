"""Does successive halving find as good a student for fewer steps? (issue #15)

The MiniLM main job (``examples/minilm``, its shipped ``minilm.yaml`` with BO, 5 random
starts, as the advisor) searched two ways with the same number of candidates
(architectures) seen and the same seed:

  halving    ``search.fidelity: {schedule: successive_halving, min_fraction, eta}``: every
             candidate trains ``min_fraction`` of the configured steps, the best ``1/eta``
             of each rung go on, continuing, until the full budget
  full       the same advisor (BO), every candidate trained its full steps

Per run: the best held-out fidelity among full-budget evaluations that meet the parameter
constraint, and the optimizer steps spent. A candidate's full budget is ``flash steps x its
layers + regular steps``; under halving a candidate spent ``its highest budget x`` that
(the increments of ``autokd.fidelity.stage_steps`` add up exactly). No final
distillation in either, so the two searches are compared on the search alone.

Goal: the same best fidelity for <= 0.5x the steps (or better fidelity for the same).

Run:  HF_HUB_OFFLINE=1 python benchmarks/multifidelity.py [--candidates 8] [--seeds 0 1 2]
      (in the environment of ``scripts/demo.sh``: ``.venv/bin/python benchmarks/multifidelity.py``)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import yaml

TEACHER_PARAMS = 22_713_216


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--candidates", type=int, default=8, help="architectures seen by each search (8: the whole space)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--min-fraction", type=float, default=1 / 9)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--output-dir", default=None, help="keep the runs here (default: a temporary directory)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from autokd_minilm import task

    with open(task.DEFAULT_CONFIG, encoding="utf-8") as fh:
        base = yaml.safe_load(fh)
    base["auto_distillation"].pop("final_distillation", None)
    base["auto_distillation"]["search"].pop("fidelity", None)
    # the comparison: BO proposing the candidates in both searches
    base["auto_distillation"]["search"]["search_algorithm"] = "BO"
    base["auto_distillation"]["search"]["advisor_options"] = {"n_startup_trials": 5}
    root = args.output_dir or tempfile.mkdtemp(prefix="autokd-multifidelity-")
    rows = []
    for seed in args.seeds:
        row = {"seed": seed}
        for mode in ("halving", "full"):
            cfg = json.loads(json.dumps(base))
            if mode == "halving":
                cfg["auto_distillation"]["search"]["fidelity"] = {
                    "schedule": "successive_halving",
                    "min_fraction": args.min_fraction,
                    "eta": args.eta,
                }
            out = os.path.join(root, f"{mode}-seed{seed}")
            os.makedirs(out, exist_ok=True)
            path = os.path.join(out, "config.yaml")
            with open(path, "w", encoding="utf-8") as fh:
                yaml.safe_dump(cfg, fh)
            started = time.perf_counter()
            _search(path, out, args.candidates, seed)
            best, steps = _score(out, cfg)
            row[mode] = {"fidelity": best, "steps": steps, "seconds": time.perf_counter() - started}
            print(
                f"seed {seed} {mode}: best fidelity {best:.4f}, {steps} steps, {row[mode]['seconds']:.0f} s", flush=True
            )
        rows.append(row)
    _print_table(rows, args)


def _search(config_path: str, out: str, candidates: int, seed: int) -> None:
    from autokd_minilm.__main__ import main as minilm

    code = minilm(
        [
            "--config",
            config_path,
            "--output-dir",
            out,
            "--max-trials",
            str(candidates),
            "--seed",
            str(seed),
            "--no-progress",
        ]
    )
    if code != 0:
        raise SystemExit(f"the search in {out} failed (exit {code})")


def _score(out: str, cfg: dict) -> tuple[float, int]:
    """Best constrained full-budget fidelity and the optimizer steps spent, from trials.jsonl."""
    ad = cfg["auto_distillation"]
    flash = ad["flash_distillation"]["train_steps"][0]
    regular = sum(ad["regular_distillation"]["train_steps"])
    limit = TEACHER_PARAMS / 4
    best, spent = float("-inf"), {}
    with open(os.path.join(out, "trials.jsonl"), encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    for r in records:
        if r.get("phase", "search") != "search":
            continue
        full = flash * int(r["arch"]["num_hidden_layers"]) + regular
        budget = float(r.get("budget") or 1.0)
        key = r.get("candidate", r["trial"])
        spent[key] = max(spent.get(key, 0.0), budget * full)
        if r["status"] == "ok" and budget >= 1.0 - 1e-9 and r["metrics"]["params"] <= limit:
            best = max(best, r["metrics"]["fidelity"])
    return best, round(sum(spent.values()))


def _print_table(rows: list[dict], args) -> None:
    print()
    print(
        f"MiniLM job, {args.candidates} candidates per search, successive halving min_fraction "
        f"{args.min_fraction:.4f} eta {args.eta} vs full-budget BO"
    )
    print("| seed | halving fidelity | halving steps | full fidelity | full steps | steps ratio | fidelity diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        h, f = r["halving"], r["full"]
        print(
            f"| {r['seed']} | {h['fidelity']:.4f} | {h['steps']} | {f['fidelity']:.4f} | {f['steps']} "
            f"| {h['steps'] / f['steps']:.2f} | {h['fidelity'] - f['fidelity']:+.4f} |"
        )
    ratio = statistics.median(r["halving"]["steps"] / r["full"]["steps"] for r in rows)
    diff = statistics.median(r["halving"]["fidelity"] - r["full"]["fidelity"] for r in rows)
    print(f"median steps ratio (halving / full) {ratio:.2f}; median fidelity difference {diff:+.4f}")


if __name__ == "__main__":
    main()
