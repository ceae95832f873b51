"""The cost of autokd's built-in distillation step against a hand-written PyTorch KD loop
(issue #14): the same BERT pair, data, loss, optimizer and device, the teacher-output
cache off.

    python benchmarks/kd_overhead.py                  # CPU, 6 rounds of 12 steps each
    python benchmarks/kd_overhead.py --device cuda    # on a GPU (scripts/gpu_check.sh)

Rounds alternate (built-in, hand-written, built-in, ...) so that both see the same machine
load; each round trains a fresh copy of the student. A step's time is the time between two
optimizer steps (a global optimizer step hook, the same for both loops), the first step of
each round (set-up) left out. It prints the median step time of each loop and their ratio;
the goal is a ratio <= 1.03.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

SEQ_LEN, VOCAB, LABELS = 64, 1000, 3


def bert(hidden: int, layers: int, seed: int):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 4,
        max_position_embeddings=SEQ_LEN,
        num_labels=LABELS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertForSequenceClassification(copy.deepcopy(config))


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.input_ids = torch.randint(1, VOCAB, (n, SEQ_LEN), generator=g)
        self.labels = torch.randint(0, LABELS, (n,), generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {
            "input_ids": self.input_ids[i],
            "attention_mask": torch.ones(SEQ_LEN, dtype=torch.long),
            "labels": self.labels[i],
        }


TEMPERATURE = 2.0


def builtin_round(student, teacher, data, args) -> None:
    from autokd_torch import Distillation, KnowledgeDistillationLoss

    run = Distillation(
        {
            "distillation": {
                "train": {
                    "optimizer": {"AdamW": {"learning_rate": 1e-4}},
                    "batch_size": args.batch_size,
                    "device": args.device,
                    "teacher_cache": {"enabled": False},
                }
            }
        },
        criterion=KnowledgeDistillationLoss(TEMPERATURE, ["CE", "KL"], [0.5, 0.5]),
        train_steps=args.steps,
    )
    run.student_model, run.teacher_model, run.train_dataset = student, teacher, data
    run.show_progress = False
    run.fit()


def handwritten_round(student, teacher, data, args) -> None:
    from transformers import default_data_collator

    device = torch.device(args.device)
    student.to(device).train()
    teacher.to(device).eval()
    generator = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(
        data, batch_size=args.batch_size, shuffle=True, collate_fn=default_data_collator, generator=generator
    )
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    batches = iter(loader)
    for _ in range(args.steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            teacher_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = student(**batch).logits
        ce = F.cross_entropy(logits, batch["labels"])
        kl = F.kl_div(
            F.log_softmax(logits / TEMPERATURE, -1), F.softmax(teacher_logits / TEMPERATURE, -1), reduction="batchmean"
        )
        loss = 0.5 * ce + 0.5 * kl * TEMPERATURE**2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # the built-in step reads the loss too (its history, the non-finite check)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    teacher, student = bert(128, 4, seed=0).eval(), bert(64, 2, seed=1)
    data = Tokens(256)
    stamps: list[float] = []

    def stamp(optimizer, *_):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    handle = register_optimizer_step_post_hook(stamp)
    steps = {"built-in": [], "hand-written": []}
    loops = {"built-in": builtin_round, "hand-written": handwritten_round}
    try:
        for _ in range(args.rounds):
            for name, loop in loops.items():
                stamps.clear()
                loop(copy.deepcopy(student), teacher, data, args)
                # the first step carries the round's set-up: left out
                steps[name].extend(b - a for a, b in zip(stamps, stamps[1:]))
    finally:
        handle.remove()
    builtin, handwritten = (statistics.median(steps[n]) for n in ("built-in", "hand-written"))
    print(f"device {args.device}, {args.rounds} rounds x {args.steps} steps, batch {args.batch_size}")
    print(f"built-in step     median {builtin * 1e3:.2f} ms ({len(steps['built-in'])} steps)")
    print(f"hand-written step median {handwritten * 1e3:.2f} ms ({len(steps['hand-written'])} steps)")
    print(f"ratio built-in / hand-written: {builtin / handwritten:.3f} (goal <= 1.03)")


if __name__ == "__main__":
    main()
