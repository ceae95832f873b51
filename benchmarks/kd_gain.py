"""What distillation buys: a small MLP student on scikit-learn's digits, trained for the same
number of steps with and without a teacher, over 5 fixed seeds.

    python benchmarks/kd_gain.py [--steps 150] [--student-hidden 16] [--train-size 0]
                                 [--temperature 4] [--kd-weight 0.5]

The teacher (an MLP of width 256) is trained once on the labels. Each student run uses
``autokd_torch.Distillation`` with ``KnowledgeDistillationLoss``: without distillation
the weights are [1, 0] (cross entropy against the labels only), with distillation
[1 - kd_weight, kd_weight] with ``KL`` at the temperature. Same seed, same initial weights and batch order
in both runs. ``--train-size N`` trains the students on the first N training examples
only (the teacher always sees all of them), where soft targets usually matter more.
Accuracy is on the held-out quarter of the digits.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from autokd_torch import Distillation, KnowledgeDistillationLoss

SEEDS = (0, 1, 2, 3, 4)


def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return (x_train, y_train), (x_test, y_test)


def mlp(hidden: int, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def accuracy(model: nn.Module, data) -> float:
    x, y = data
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def train_teacher(train, steps: int = 600) -> nn.Module:
    teacher = mlp(256, seed=1000)
    x, y = train
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1000)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(teacher(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return teacher.eval()


def train_student(
    teacher, train, *, seed: int, steps: int, hidden: int, distil: bool, temperature: float, kd_weight: float
) -> nn.Module:
    weights = [1.0 - kd_weight, kd_weight] if distil else [1.0, 0.0]
    criterion = KnowledgeDistillationLoss(temperature, ["CE", "KL"], weights)
    distiller = Distillation(criterion=criterion, train_steps=steps, name="with KD" if distil else "without KD")
    distiller.optimizer_config = {"Adam": {"learning_rate": 1e-2}}
    distiller.student_model = mlp(hidden, seed)
    distiller.teacher_model = teacher
    distiller.train_dataset = torch.utils.data.TensorDataset(*train)
    distiller.seed = seed
    distiller.show_progress = False
    return distiller.fit()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--student-hidden", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=0, help="students see only this many examples (0: all)")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument(
        "--kd-weight", type=float, default=0.5, help="weight of the teacher term (the labels get the rest)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    start = time.perf_counter()
    train, test = digits()
    teacher = train_teacher(train)
    student_train = train if not args.train_size else (train[0][: args.train_size], train[1][: args.train_size])
    print(
        f"digits: {len(train[0])} train / {len(test[0])} held-out; students see {len(student_train[0])}; "
        f"student MLP width {args.student_hidden}, {args.steps} steps, batch 32, Adam 1e-2; "
        f"KD: KL, T={args.temperature:g}, weights {1 - args.kd_weight:g}/{args.kd_weight:g}"
    )
    print(f"teacher (MLP width 256, trained on labels): held-out accuracy {accuracy(teacher, test):.4f}")
    print(f"{'seed':>4}  {'without KD':>10}  {'with KD':>8}  {'gain':>7}")
    without, with_kd = [], []
    options = dict(steps=args.steps, hidden=args.student_hidden, temperature=args.temperature, kd_weight=args.kd_weight)
    for seed in SEEDS:
        a = accuracy(train_student(teacher, student_train, seed=seed, distil=False, **options), test)
        b = accuracy(train_student(teacher, student_train, seed=seed, distil=True, **options), test)
        without.append(a)
        with_kd.append(b)
        print(f"{seed:>4}  {a:>10.4f}  {b:>8.4f}  {b - a:>+7.4f}")
    gains = [b - a for a, b in zip(without, with_kd, strict=True)]
    print(
        f"mean  {statistics.mean(without):>10.4f}  {statistics.mean(with_kd):>8.4f}  {statistics.mean(gains):>+7.4f}"
        f"   (gain sd {statistics.stdev(gains):.4f}, {sum(g > 0 for g in gains)}/{len(gains)} seeds better)"
    )
    print(f"wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
