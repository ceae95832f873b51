"""What ONNX Runtime and int8 give the MiniLM job's best student: latency of a batch of 8
utterances on one thread in PyTorch, in ONNX Runtime (fp32) and in ONNX Runtime after
each int8 quantisation tried (:func:`int8_variants`), each model's fidelity (mean cosine
to the teacher's sentence embeddings on the 378 held-out utterances) and the cosine of
each ONNX copy to the PyTorch student's own embeddings, and every ratio against the
teacher and the student in PyTorch. The models are measured side by side: each round
times every model once, in a rotating order, and a model's latency is the median over
rounds of the ``latency`` timing loop's estimate.

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


def int8_variants(path: str, calibration: list[dict]) -> dict:
    """The int8 copies compared: onnxruntime's dynamic quantisation as ``output.quantize:
    dynamic_int8`` did before (signed int8 weights), with 7-bit weights (``reduce_range``)
    and with unsigned weights, and static QDQ quantisation (``static_int8``) of every op
    and of the MatMuls only, calibrated on 16 batches of 32 training utterances."""
    from onnxruntime.quantization import QuantType

    from autokd_onnx.quantize import quantize_dynamic_int8, quantize_static_int8

    return {
        "student, ORT dynamic int8, 8-bit weights (before)": lambda out: quantize_dynamic_int8(
            path, out, reduce_range=False
        ),
        "student, ORT dynamic int8, 7-bit weights (`dynamic_int8`)": lambda out: quantize_dynamic_int8(path, out),
        "student, ORT dynamic int8, unsigned weights": lambda out: quantize_dynamic_int8(
            path, out, weight_type=QuantType.QUInt8, reduce_range=False
        ),
        "student, ORT static int8, every op": lambda out: quantize_static_int8(
            path, out, calibration, op_types_to_quantize=None
        ),
        "student, ORT static int8, MatMuls (`static_int8`)": lambda out: quantize_static_int8(path, out, calibration),
    }


def names_after(models: dict, first: str) -> list[str]:
    names = list(models)
    return names[names.index(first) + 1 :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", help="a saved student (sentence-transformers layout, e.g. a run's best/)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=3.0, help="per latency measurement")
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
        names = [i.name for i in autokd_onnx.make_session(export.path).get_inputs()]
        train, _ = task.datasets()
        calibration = [
            {n: batch[n].numpy() for n in names}
            for batch in (task.collate([train[i] for i in range(s, s + 32)]) for s in range(0, 32 * 16, 32))
        ]
        sizes = {"student, ORT fp32": os.path.getsize(export.path)}
        models = {"teacher, PyTorch": teacher, "student, PyTorch": student}
        models["student, ORT fp32"] = autokd_onnx.OrtModel(export.path, threads=1)
        for name, quantize in int8_variants(export.path, calibration).items():
            path = os.path.join(directory, f"{len(models)}.onnx")
            quantize(path)
            sizes[name] = os.path.getsize(path)
            models[name] = autokd_onnx.OrtModel(path, threads=1)

        fidelity = {"teacher, PyTorch": 1.0}
        for name in list(models)[1:]:
            embeddings = task.embed(models[name], held_out)
            fidelity[name] = torch.nn.functional.cosine_similarity(embeddings, teacher_held, dim=-1).mean().item()

        def call_of(model):
            def call():
                with torch.inference_mode():
                    return model(**inputs)

            return call

        fp32_student = task.embed(student, held_out)
        to_fp32 = {
            name: torch.nn.functional.cosine_similarity(task.embed(models[name], held_out), fp32_student, dim=-1)
            .mean()
            .item()
            for name in names_after(models, "student, PyTorch")
        }
        latencies: dict[str, list[float]] = {name: [] for name in models}
        load_before = os.getloadavg()[0]
        names = list(models)
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                _, _, _, stats = measure_adaptive(
                    call_of(models[name]), warmup=5, repeats=10, min_seconds=1.0, max_seconds=args.max_seconds
                )
                latencies[name].append(stats["latency_ms"])
            print(f"round {round_ + 1}: " + "  ".join(f"{latencies[n][-1]:.2f}" for n in names) + " ms", flush=True)

    median = {name: statistics.median(values) for name, values in latencies.items()}
    base = median["teacher, PyTorch"]
    print()
    print(
        f"student: {source}; batch {args.batch_size} utterances ({tuple(inputs['input_ids'].shape)} tokens), "
        f"1 thread, {args.rounds} alternating rounds; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs; {time.perf_counter() - started:.0f} s"
    )
    print(f"ONNX export: max |ORT - PyTorch| = {export.max_abs_diff:.2g}")
    print(
        "| model | latency (ms) | speed-up vs teacher | vs student in PyTorch | fidelity | cosine to the fp32 "
        "student | file (MB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    student_torch = median["student, PyTorch"]
    for name in names:
        cosine = f"{to_fp32[name]:.3f}" if name in to_fp32 else ""
        size = f"{sizes[name] / 1e6:.1f}" if name in sizes else ""
        print(
            f"| {name} | {median[name]:.2f} | {base / median[name]:.1f}x | {student_torch / median[name]:.2f}x | "
            f"{fidelity[name]:.3f} | {cosine} | {size} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
