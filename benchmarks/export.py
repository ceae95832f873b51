"""What ONNX Runtime and int8 give the MiniLM job's best student: latency of a batch of 8
utterances on one thread in PyTorch, in ONNX Runtime (fp32) and in ONNX Runtime after
dynamic int8 quantisation, each model's fidelity (mean cosine to the teacher's sentence
embeddings on the 378 held-out utterances), and every ratio against the teacher in
PyTorch. The four models are measured side by side: each round times every model once,
in a rotating order, and a model's latency is the median over rounds of the
``latency`` evaluator's estimate.

    python benchmarks/export.py                              # build and train the README's best arch
    python benchmarks/export.py --student autokd-output/minilm/best
    python benchmarks/export.py --rounds 7 --max-seconds 3

Needs the example (``pip install -e examples/minilm``) and ``autokd-onnx``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

BEST_ARCH = {"num_hidden_layers": 4, "hidden_size": 144, "num_attention_heads": 12, "intermediate_size": 384}


def student_from_search_trial(seed: int = 0):
    """The README's best arch, built and trained exactly as a trial of the search trains it."""
    import autokd
    from autokd_minilm import task

    config = autokd.load_config(task.DEFAULT_CONFIG)
    student = task.build_student(BEST_ARCH, seed=seed)
    trained = task.TrainFunc(config, None, show_progress=False)(student)
    return (trained if trained is not None else student).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", help="a saved student (sentence-transformers layout, e.g. a run's best/)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=2.0, help="per latency measurement")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    torch.set_num_threads(1)
    import autokd_onnx
    from autokd_latency._timing import measure_adaptive
    from autokd_minilm import task

    started = time.perf_counter()
    teacher = task.load_teacher()
    if args.student:
        student, source = task.load_student(args.student), args.student
    else:
        student, source = student_from_search_trial(), f"{BEST_ARCH} trained like a search trial"
    inputs = task.latency_inputs(args.batch_size)
    _, held_out = task.datasets()
    _, teacher_held = task.teacher_embeddings()

    with tempfile.TemporaryDirectory() as directory:
        export = autokd_onnx.export_model(student, inputs, os.path.join(directory, "model.onnx"))
        int8_path = autokd_onnx.quantize_int8(export.path, os.path.join(directory, "model.int8.onnx"))
        sizes = {"fp32": os.path.getsize(export.path), "int8": os.path.getsize(int8_path)}
        fp32 = autokd_onnx.OrtModel(export.path, threads=1)
        int8 = autokd_onnx.OrtModel(int8_path, threads=1)
        models = {
            "teacher, PyTorch": teacher,
            "student, PyTorch": student,
            "student, ORT fp32": fp32,
            "student, ORT int8": int8,
        }

        fidelity = {"teacher, PyTorch": 1.0}
        for name in list(models)[1:]:
            embeddings = task.embed(models[name], held_out)
            fidelity[name] = torch.nn.functional.cosine_similarity(embeddings, teacher_held, dim=-1).mean().item()

        def call_of(model):
            def call():
                with torch.inference_mode():
                    return model(**inputs)

            return call

        latencies: dict[str, list[float]] = {name: [] for name in models}
        load_before = os.getloadavg()[0]
        names = list(models)
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                _, _, _, stats = measure_adaptive(
                    call_of(models[name]), warmup=5, repeats=30, max_seconds=args.max_seconds
                )
                latencies[name].append(stats["latency_ms"])
            print(f"round {round_ + 1}: " + "  ".join(f"{n} {latencies[n][-1]:.2f} ms" for n in names), flush=True)

    median = {name: statistics.median(values) for name, values in latencies.items()}
    base = median["teacher, PyTorch"]
    print()
    print(
        f"student: {source}; batch {args.batch_size} utterances ({tuple(inputs['input_ids'].shape)} tokens), "
        f"1 thread, {args.rounds} alternating rounds; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs; {time.perf_counter() - started:.0f} s"
    )
    print(
        f"ONNX export: max |ORT - PyTorch| = {export.max_abs_diff:.2g}; files fp32 {sizes['fp32'] / 1e6:.1f} MB, "
        f"int8 {sizes['int8'] / 1e6:.1f} MB"
    )
    header = "| model | latency (ms) | speed-up vs teacher | fidelity | fidelity vs teacher |"
    print(header)
    print("|---|---:|---:|---:|---:|")
    for name in names:
        print(
            f"| {name} | {median[name]:.2f} | {base / median[name]:.1f}x | {fidelity[name]:.3f} | "
            f"{fidelity[name] / fidelity['teacher, PyTorch']:.3f} |"
        )
    student_torch = median["student, PyTorch"]
    print(
        f"ORT fp32 vs PyTorch (student): {student_torch / median['student, ORT fp32']:.2f}x; "
        f"ORT int8 vs PyTorch (student): {student_torch / median['student, ORT int8']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
