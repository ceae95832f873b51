"""``train``'s engine keys (issue #14): device, mixed_precision, gradient_accumulation_steps,
max_grad_norm and lr_scheduler, read and refused with their paths (the core alone: what the
machine has is the backend's check)."""

from __future__ import annotations

import pytest

from autokd import ConfigError, load_config
from autokd.config import LRSchedulerConfig, TrainConfig


def test_the_engine_keys_are_read():
    train = load_config(
        {
            "train": {
                "device": "cuda:1",
                "mixed_precision": "bf16",
                "gradient_accumulation_steps": 4,
                "max_grad_norm": 1.0,
                "lr_scheduler": {"type": "cosine", "warmup_ratio": 0.1},
            }
        }
    ).train
    assert (train.device, train.mixed_precision, train.gradient_accumulation_steps, train.max_grad_norm) == (
        "cuda:1",
        "bf16",
        4,
        1.0,
    )
    assert train.lr_scheduler == LRSchedulerConfig("cosine", warmup_ratio=0.1)
    assert train.lr_scheduler.warmup(25) == 3  # ceil(0.1 * 25)
    assert LRSchedulerConfig("linear", warmup_steps=7).warmup(25) == 7
    wsd = LRSchedulerConfig("warmup_stable_decay", warmup_steps=7, decay_ratio=0.2)
    # the decay is ceil(0.2 * steps), at most what follows the warm-up
    assert (wsd.warmup(150), wsd.decay(150), wsd.decay(21), wsd.decay(8)) == (7, 30, 5, 1)
    assert train.set_fields() == {
        "device",
        "mixed_precision",
        "gradient_accumulation_steps",
        "max_grad_norm",
        "lr_scheduler",
    }


def test_the_defaults_train_as_before():
    train = TrainConfig()
    assert (train.device, train.mixed_precision, train.gradient_accumulation_steps, train.max_grad_norm) == (
        "auto",
        "no",
        1,
        None,
    )
    assert train.lr_scheduler == LRSchedulerConfig("constant") and train.set_fields() == set()


def test_impossible_settings_are_refused_with_their_paths():
    with pytest.raises(ConfigError) as err:
        load_config(
            {
                "train": {
                    "device": "gpu",
                    "mixed_precision": "fp8",
                    "gradient_accumulation_steps": 0,
                    "max_grad_norm": 0,
                    "lr_scheduler": {"type": "step", "warmup_ratio": 1.5, "warmup_steps": 3},
                }
            }
        )
    problems = str(err.value).split("\n  - ")[1:]
    assert problems == [
        "train.device: 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'",
        "train.mixed_precision: 'no', 'fp16' or 'bf16', got 'fp8'",
        "train.gradient_accumulation_steps: must be at least 1, got 0",
        "train.max_grad_norm: must be positive (or null for no clipping), got 0.0",
        "train.lr_scheduler.type: one of constant, constant_with_warmup, linear, cosine, cosine_with_restarts, "
        "polynomial, inverse_sqrt, warmup_stable_decay, got 'step'",
        "train.lr_scheduler: give warmup_ratio or warmup_steps, not both",
        "train.lr_scheduler.warmup_ratio: a fraction of the stage's steps in [0, 1], got 1.5",
    ]


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (
            {"device": "cpu", "mixed_precision": "fp16"},
            "train.mixed_precision: fp16 needs a CUDA GPU and device is 'cpu'; use bf16 or no",
        ),
        (
            {"lr_scheduler": {"warmup_steps": 10}},
            "train.lr_scheduler.type: 'constant' has no warm-up; use 'constant_with_warmup' (or linear, cosine)",
        ),
        (
            {"lr_scheduler": {"type": "linear", "warmup_steps": -1}},
            "train.lr_scheduler.warmup_steps: must be >= 0, got -1",
        ),
        (
            {"lr_scheduler": {"type": "linear", "warmup": 3}},
            "train.lr_scheduler.warmup: unknown key (known keys here: type, warmup_ratio, warmup_steps, decay_ratio)",
        ),
        (
            {"lr_scheduler": {"type": "warmup_stable_decay"}},
            "train.lr_scheduler.decay_ratio: warmup_stable_decay needs the fraction of the stage's steps to decay "
            "over, in (0, 1] (e.g. 0.2), got None",
        ),
        (
            {"lr_scheduler": {"type": "warmup_stable_decay", "warmup_ratio": 0.5, "decay_ratio": 0.6}},
            "train.lr_scheduler: warmup_ratio + decay_ratio must be at most 1, got 0.5 + 0.6",
        ),
        (
            {"lr_scheduler": {"type": "linear", "decay_ratio": 0.2}},
            "train.lr_scheduler.decay_ratio: only warmup_stable_decay decays at the end of a stage; drop it, or use "
            "type warmup_stable_decay",
        ),
    ],
)
def test_one_bad_setting(train, message):
    with pytest.raises(ConfigError) as err:
        load_config({"train": train})
    assert message in str(err.value)


def test_distillation_train_is_checked_too():
    with pytest.raises(ConfigError, match=r"distillation\.train\.gradient_accumulation_steps: must be at least 1"):
        load_config({"distillation": {"train": {"gradient_accumulation_steps": 0}}})
