"""How the TensorFlow stages train: the ``train`` engine settings (issue #14, item 6).

``train.mixed_precision`` (a Keras mixed-precision policy), ``gradient_accumulation_steps``,
``max_grad_norm`` (the optimizer's ``global_clipnorm``) and ``lr_scheduler`` (a Keras
``LearningRateSchedule`` with transformers' ``get_scheduler`` formulas) are read from the
config's ``train`` section with ``getattr`` (the keys are the core's ``TrainConfig``'s;
any object carrying them works), checked before any training, and applied by
:mod:`autokd_tensorflow.distillation`. TensorFlow already places the work on a GPU when
it has one, so ``train.device`` other than ``auto`` / ``cpu`` / ``gpu`` / ``cuda[:N]`` is
refused with the reason.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from autokd import ConfigError, LRSchedulerConfig

from . import _tf

__all__ = [
    "EngineSettings",
    "TransformersSchedule",
    "engine_settings",
    "precision_policy",
    "resize_schedule",
    "scheduled_learning_rate",
]

# train.mixed_precision values and the Keras policy each one means.
_POLICIES = {
    None: None,
    "no": None,
    "fp32": None,
    "float32": None,
    "bf16": "mixed_bfloat16",
    "mixed_bfloat16": "mixed_bfloat16",
    "fp16": "mixed_float16",
    "mixed_float16": "mixed_float16",
}
SCHEDULES = ("constant", "linear", "cosine", "warmup_stable_decay")


@attrs.frozen
class EngineSettings:
    """The engine settings of ``train`` as the TensorFlow stages apply them.

    :ivar policy: the Keras mixed-precision policy of the students (None: float32).
    :ivar accumulation: micro-batches per optimizer step.
    :ivar max_grad_norm: global-norm clipping of each optimizer step's gradient.
    :ivar schedule: the core's ``train.lr_scheduler`` (its ``warmup`` and ``decay`` count
        a stage's steps as for PyTorch), or None (a constant rate).
    """

    policy: str | None = None
    accumulation: int = 1
    max_grad_norm: float | None = None
    schedule: LRSchedulerConfig | None = None

    def record(self, batch_size: int) -> dict:
        """What a trial's ``extras.train`` says about how it was trained."""
        devices = _tf.tensorflow().config.list_logical_devices("GPU")
        return {
            "device": "gpu" if devices else "cpu",
            "mixed_precision": self.policy or "no",
            "processes": 1,
            "gradient_accumulation_steps": self.accumulation,
            "max_grad_norm": self.max_grad_norm,
            "lr_scheduler": None
            if self.schedule is None
            else {
                "type": self.schedule.type,
                "warmup_ratio": self.schedule.warmup_ratio,
                "warmup_steps": self.schedule.warmup_steps,
                **({"decay_ratio": self.schedule.decay_ratio} if self.schedule.decay_ratio is not None else {}),
            },
            "effective_batch_size": batch_size * self.accumulation,
        }


def _field(section: Any, name: str, default: Any = None) -> Any:
    if isinstance(section, Mapping):
        return section.get(name, default)
    return getattr(section, name, default)


def _number(value: Any, field: str, kind: type, minimum: float, inclusive: bool = True) -> Any:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and (kind is float or float(value).is_integer())
    ok = ok and math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
    if not ok:
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        raise ConfigError(f"{field}: a{'n integer' if kind is int else ' number'} {bound}, got {value!r}")
    return kind(value)


def engine_settings(train: Any, field: str = "train") -> EngineSettings:
    """The engine settings of a ``train`` section (a ``TrainConfig``, any object with
    the attributes, or a dict); a setting the TensorFlow backend cannot honour is an
    error naming it, raised before any training."""
    tf = _tf.tensorflow()
    device = _field(train, "device", "auto")
    if device not in (None, "auto", "cpu", "gpu") and not str(device).startswith("cuda"):
        raise ConfigError(
            f"{field}.device: {device!r} is not a device TensorFlow places work on; use auto (a GPU when there is "
            f"one, else the CPU), cpu, gpu or cuda[:N]"
        )
    if str(device).startswith(("cuda", "gpu")) and not tf.config.list_physical_devices("GPU"):
        raise ConfigError(f"{field}.device: {device!r} asked for, but TensorFlow sees no GPU on this machine")

    precision = _field(train, "mixed_precision", "no")
    if precision not in _POLICIES:
        raise ConfigError(
            f"{field}.mixed_precision: {precision!r} is not a precision; use no, bf16 (mixed_bfloat16) or fp16 "
            f"(mixed_float16)"
        )
    policy = _POLICIES[precision]
    if policy == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        raise ConfigError(
            f"{field}.mixed_precision: {precision!r} needs a GPU (float16 matrix products are emulated on the CPU, "
            f"far slower than float32, and TensorFlow sees no GPU here); use bf16 on the CPU, or no"
        )

    if _field(train, "group_by_length", False):
        raise ConfigError(
            f"{field}.group_by_length: autokd-tensorflow does not group batches by length; drop it, or batch your "
            f"own tf.data pipeline with tf.data.Dataset.bucket_by_sequence_length and train on that"
        )

    accumulation = _field(train, "gradient_accumulation_steps", None)
    accumulation = 1 if accumulation is None else _number(accumulation, f"{field}.gradient_accumulation_steps", int, 1)
    max_grad_norm = _field(train, "max_grad_norm", None)
    if max_grad_norm is not None:
        max_grad_norm = _number(max_grad_norm, f"{field}.max_grad_norm", float, 0.0, inclusive=False)

    schedule = _field(train, "lr_scheduler", None)
    if schedule is not None:
        where = f"{field}.lr_scheduler"
        if isinstance(schedule, str):
            schedule = {"type": schedule}
        kind = _field(schedule, "type", "linear")
        if kind == "constant_with_warmup":  # transformers' name of a constant rate after a warm-up
            kind = "constant"
        if kind not in SCHEDULES:
            raise ConfigError(
                f"{where}.type: {kind!r} is not a schedule the TensorFlow backend has; use one of {list(SCHEDULES)}"
            )
        ratio, steps = _field(schedule, "warmup_ratio", None), _field(schedule, "warmup_steps", None)
        if ratio is not None and steps is not None:
            raise ConfigError(f"{where}: give warmup_ratio or warmup_steps, not both")
        if ratio is not None:
            ratio = _number(ratio, f"{where}.warmup_ratio", float, 0.0)
            if ratio > 1:
                raise ConfigError(f"{where}.warmup_ratio: a share of the stage's steps in [0, 1], got {ratio!r}")
        if steps is not None:
            steps = _number(steps, f"{where}.warmup_steps", int, 0)
        decay = _field(schedule, "decay_ratio", None)
        if kind == "warmup_stable_decay":
            if decay is None:
                raise ConfigError(
                    f"{where}.decay_ratio: warmup_stable_decay needs the share of a stage's steps to decay over"
                )
            decay = _number(decay, f"{where}.decay_ratio", float, 0.0, inclusive=False)
            if decay > 1:
                raise ConfigError(f"{where}.decay_ratio: a share of the stage's steps in (0, 1], got {decay!r}")
        elif decay is not None:
            raise ConfigError(f"{where}.decay_ratio: only warmup_stable_decay decays at the end of a stage; drop it")
        # a constant rate without warm-up is the optimizer's own (the core's default schedule)
        schedule = (
            None if kind == "constant" and not ratio and not steps else LRSchedulerConfig(kind, ratio, steps, decay)
        )
    return EngineSettings(policy, accumulation, max_grad_norm, schedule)


@contextlib.contextmanager
def precision_policy(policy: str | None) -> Iterator[None]:
    """Build models under the Keras mixed-precision ``policy`` (a layer takes its policy
    when it is made, so students must be built inside), restoring the global policy
    after."""
    if policy is None:
        yield
        return
    mixed = _tf.keras().mixed_precision
    previous = mixed.global_policy()
    mixed.set_global_policy(policy)
    try:
        yield
    finally:
        mixed.set_global_policy(previous)


def _schedule_base():
    return _tf.keras().optimizers.schedules.LearningRateSchedule


class TransformersSchedule(_schedule_base()):
    """A Keras learning-rate schedule with the formulas of transformers'
    ``get_scheduler`` (``optimization.py``), as a function of the optimizer's step:

    - warm-up (every type): ``lr * step / max(1, warmup)`` while ``step < warmup``;
    - ``constant``: ``lr`` after it (transformers' ``constant_with_warmup``; ``constant``
      when there is no warm-up);
    - ``linear``: ``lr * max(0, (total - step) / max(1, total - warmup))``;
    - ``cosine``: ``lr * max(0, (1 + cos(pi * progress)) / 2)`` with ``progress = (step -
      warmup) / max(1, total - warmup)`` (half a cosine period);
    - ``warmup_stable_decay``: ``lr`` until the last ``decay`` steps, then ``lr * max(0,
      (total - step) / max(1, decay))`` (a linear decay to 0).
    """

    def __init__(self, learning_rate: float, kind: str, warmup_steps: int, total_steps: int, decay_steps: int = 0):
        super().__init__()
        tf = _tf.tensorflow()
        self.learning_rate = float(learning_rate)
        self.kind = kind
        # variables, not numbers: a traced training step reads the lengths :meth:`resize` sets
        self._warmup = tf.Variable(float(warmup_steps), trainable=False, dtype=tf.float32)
        self._total = tf.Variable(float(total_steps), trainable=False, dtype=tf.float32)
        self._decay = tf.Variable(float(decay_steps), trainable=False, dtype=tf.float32)

    @property
    def warmup_steps(self) -> int:
        return int(self._warmup.numpy())

    @property
    def total_steps(self) -> int:
        return int(self._total.numpy())

    @property
    def decay_steps(self) -> int:
        return int(self._decay.numpy())

    def resize(self, warmup_steps: int, total_steps: int, decay_steps: int = 0) -> None:
        """Spread the schedule over ``total_steps`` (a final distillation past the
        configured steps, :func:`autokd.schedule_steps`); the optimizer's step goes on."""
        self._warmup.assign(float(warmup_steps))
        self._total.assign(float(total_steps))
        self._decay.assign(float(decay_steps))

    def __call__(self, step):
        tf = _tf.tensorflow()
        step = tf.cast(step, tf.float32)
        warmup, total = tf.identity(self._warmup), tf.identity(self._total)
        warming = step / tf.maximum(1.0, warmup)
        if self.kind == "constant":
            after = tf.ones_like(step)
        elif self.kind == "linear":
            after = tf.maximum(0.0, (total - step) / tf.maximum(1.0, total - warmup))
        elif self.kind == "warmup_stable_decay":
            decay = tf.identity(self._decay)
            after = tf.minimum(1.0, tf.maximum(0.0, (total - step) / tf.maximum(1.0, decay)))
        else:
            progress = (step - warmup) / tf.maximum(1.0, total - warmup)
            after = tf.maximum(0.0, 0.5 * (1.0 + tf.cos(math.pi * progress)))
        return self.learning_rate * tf.where(step < warmup, warming, after)

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "kind": self.kind,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay_steps": self.decay_steps,
        }


def scheduled_learning_rate(settings: EngineSettings, learning_rate: float, total_steps: int):
    """The learning rate of a stage of ``total_steps`` optimizer steps: ``learning_rate``
    itself without a schedule, else a :class:`TransformersSchedule`."""
    if settings.schedule is None:
        return learning_rate
    schedule = settings.schedule
    return TransformersSchedule(
        learning_rate, schedule.type, schedule.warmup(total_steps), total_steps, schedule.decay(total_steps)
    )


def resize_schedule(optimizer: Any, settings: EngineSettings, total_steps: int) -> None:
    """Spread the learning-rate schedule of ``optimizer`` (made by :func:`~autokd_tensorflow.
    optimizers.make_optimizer` with ``settings``) over ``total_steps``, its warm-up
    measured again as for a stage of that many steps; nothing to do without a schedule."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = getattr(inner, "_learning_rate", None)  # tf-keras keeps the schedule it was given there
    if isinstance(schedule, TransformersSchedule):
        config = settings.schedule
        schedule.resize(config.warmup(total_steps), total_steps, config.decay(total_steps))
