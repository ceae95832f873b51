"""What a TensorFlow stage's Keras ``fit`` is made of and what it returns: the layer-less
model whose ``fit`` runs the stage's step, the callback keeping each step's loss, and the
stage's result with a fingerprint of the student's weights."""

from __future__ import annotations

import math
from typing import Any

import attrs

from . import _tf

# isort: split
import numpy as np

__all__ = ["LossRecorder", "StageResult", "stage_model", "weights_fingerprint"]


@attrs.define
class StageResult:
    """What one stage did: its losses step by step and a fingerprint of the student's
    weights (sum of absolute values) before and after."""

    name: str
    block_name: str | None
    train_steps: int
    losses: list[float]
    trained_variables: int
    weights_before: float
    weights_after: float
    traces: int = 0  # Python runs of the step: 1 when a tf.function traced it once, one per step eagerly
    steps_done: int = 0  # the stage's optimizer steps so far on this student, earlier budgets included

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "block_name": self.block_name,
            "train_steps": self.train_steps,
            "steps_done": self.steps_done,
            "first_loss": self.losses[0] if self.losses else None,
            "last_loss": self.losses[-1] if self.losses else None,
            "trained_variables": self.trained_variables,
        }


def weights_fingerprint(model: Any) -> float:
    """The sum of the absolute values of every weight: changes when any weight does."""
    return float(sum(np.abs(w.numpy()).astype(np.float64).sum() for w in model.weights))


def stage_model(train_step: Any, name: str):
    """A Keras model whose ``fit`` runs ``train_step``: it holds no layers of its own
    (the student is reached through the criterion), so Keras' fit loop, callbacks and
    distribution strategy drive a step that Keras' compiled loss could not express."""
    keras = _tf.keras()

    class StageModel(keras.Model):
        def __init__(self):
            super().__init__(name=name)
            self._autokd_train_step = train_step

        def train_step(self, data):
            return self._autokd_train_step(data)

        def call(self, inputs, training=None):  # pragma: no cover - fit only
            raise NotImplementedError("a distillation stage is trained with fit(), not called")

    return StageModel()


class LossRecorder(_tf.keras().callbacks.Callback):
    """Keeps each step's loss of a stage; a non-finite loss stops the stage with an error."""

    def __init__(self, name: str, first_step: int):
        super().__init__()
        self.name = name
        self.first_step = first_step
        self.losses: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        value = float((logs or {}).get("loss", float("nan")))
        if not math.isfinite(value):
            raise FloatingPointError(f"{self.name}: the loss is {value} at step {self.first_step + len(self.losses)}")
        self.losses.append(value)
