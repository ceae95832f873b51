"""How a TensorFlow stage trains: through Keras ``fit`` (callbacks, distribution
strategies), with the engine settings of ``train`` (mixed precision, gradient
accumulation, clipping, learning-rate schedules), and continued across budgets."""

from __future__ import annotations

import gc
import math
import types

import numpy as np
import pytest

from autokd import ConfigError, LayerMapping, LRSchedulerConfig, Stage

KD = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 4, 2.0)


def mlp(tf, width, prefix, seed):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((6,))
    hidden = tf.keras.layers.Dense(width, activation="relu", name=f"{prefix}_hidden")(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3, name=f"{prefix}_out")(hidden))


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, n).astype("int32")


def weights(model):
    return [w.numpy().copy() for w in model.weights]


def train_settings(**values):
    from autokd_tensorflow.engine import engine_settings

    return engine_settings(types.SimpleNamespace(**values))


# --- Keras conventions ------------------------------------------------------------------


def test_a_keras_callback_receives_each_step_loss_and_can_stop_the_stage(tf):
    from autokd_tensorflow import Distiller

    class Seen(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.losses, self.stages = [], []

        def on_train_begin(self, logs=None):
            self.stages.append(self.model.name)

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))
            if len(self.losses) == 3:
                self.model.stop_training = True

    seen = Seen()
    teacher, student = mlp(tf, 12, "t", 0), mlp(tf, 4, "s", 1)
    stage = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 10, 2.0)
    result = Distiller(
        student, teacher, stage, data(), batch_size=8, name="regular_distillation[0]", callbacks=[seen]
    )()
    assert seen.stages == ["regular_distillation_0"]
    assert result.losses == seen.losses and len(seen.losses) == 3  # EarlyStopping-style stop after 3 steps
    assert result.steps_done == 3


def test_a_mirrored_strategy_trains_as_without_one(tf):
    from autokd_tensorflow import Distiller

    def run(strategy):
        with strategy.scope():
            teacher, student = mlp(tf, 12, "t", 0), mlp(tf, 4, "s", 1)
        result = Distiller(student, teacher, KD, data(), {"SGD": {"learning_rate": 0.1}}, batch_size=8)()
        return result.losses, weights(student)

    plain_losses, plain_weights = run(tf.distribute.get_strategy())
    mirrored_losses, mirrored_weights = run(tf.distribute.MirroredStrategy(["/cpu:0"]))
    np.testing.assert_allclose(mirrored_losses, plain_losses, rtol=1e-5)
    for a, b in zip(mirrored_weights, plain_weights):
        np.testing.assert_allclose(a, b, atol=1e-6)


# --- engine settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mixed_precision": "fp16"}, "train.mixed_precision: 'fp16' needs a GPU"),
        ({"mixed_precision": "int8"}, "train.mixed_precision: 'int8' is not a precision"),
        ({"gradient_accumulation_steps": 0}, r"train.gradient_accumulation_steps: an integer >= 1, got 0"),
        ({"max_grad_norm": -1.0}, r"train.max_grad_norm: a number > 0.0, got -1.0"),
        ({"lr_scheduler": {"type": "polynomial"}}, "train.lr_scheduler.type: 'polynomial' is not a schedule"),
        (
            {"lr_scheduler": {"type": "linear", "warmup_ratio": 0.1, "warmup_steps": 3}},
            "train.lr_scheduler: give warmup_ratio or warmup_steps, not both",
        ),
        ({"lr_scheduler": {"type": "linear", "warmup_ratio": 1.5}}, r"train.lr_scheduler.warmup_ratio: a share"),
        ({"device": "tpu"}, "train.device: 'tpu' is not a device TensorFlow places work on"),
        (
            {"lr_scheduler": {"type": "polynomial"}},
            r"use one of \['constant', 'linear', 'cosine', 'warmup_stable_decay'\]",
        ),
        (
            {"lr_scheduler": {"type": "warmup_stable_decay"}},
            "train.lr_scheduler.decay_ratio: warmup_stable_decay needs",
        ),
        (
            {"lr_scheduler": {"type": "linear", "decay_ratio": 0.2}},
            "train.lr_scheduler.decay_ratio: only warmup_stable",
        ),
        ({"group_by_length": True}, "train.group_by_length: autokd-tensorflow does not group batches by length"),
    ],
)
def test_settings_the_backend_cannot_honour_are_refused_with_the_reason(tf, values, message):
    if tf.config.list_physical_devices("GPU") and values.get("mixed_precision") == "fp16":
        pytest.skip("fp16 is allowed with a GPU")
    with pytest.raises(ConfigError, match=message):
        train_settings(**values)


def test_the_settings_come_from_the_train_section_with_defaults():
    settings = train_settings()
    assert (settings.policy, settings.accumulation, settings.max_grad_norm, settings.schedule) == (None, 1, None, None)
    settings = train_settings(
        mixed_precision="bf16",
        gradient_accumulation_steps=4,
        max_grad_norm=1.0,
        lr_scheduler={"type": "cosine", "warmup_steps": 2},
    )
    assert settings.policy == "mixed_bfloat16" and settings.accumulation == 4
    assert settings.record(8)["effective_batch_size"] == 32
    assert settings.record(8)["lr_scheduler"] == {"type": "cosine", "warmup_ratio": None, "warmup_steps": 2}
    # the core's default schedule (a constant rate, no warm-up) leaves the optimizer's rate alone
    constant = types.SimpleNamespace(type="constant", warmup_ratio=None, warmup_steps=None)
    assert train_settings(lr_scheduler=constant).schedule is None
    warm = types.SimpleNamespace(type="constant_with_warmup", warmup_ratio=None, warmup_steps=3)
    assert train_settings(lr_scheduler=warm).schedule == LRSchedulerConfig("constant", None, 3)


def _transformers_factor(kind, step, warmup, total, decay=0):
    """transformers.optimization's lr_lambda of each schedule (num_cycles=0.5; a linear
    decay for warmup_stable_decay)."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    if kind == "constant":
        return 1.0
    if kind == "warmup_stable_decay":
        stable = total - warmup - decay
        return 1.0 if step < warmup + stable else max(0.0, 1.0 - float(step - warmup - stable) / float(max(1, decay)))
    if kind == "linear":
        return max(0.0, float(total - step) / float(max(1, total - warmup)))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


@pytest.mark.parametrize(
    ("kind", "warmup"),
    [
        ("linear", {"warmup_ratio": 0.25}),
        ("cosine", {"warmup_steps": 3}),
        ("constant", {"warmup_steps": 2}),
        ("linear", {}),
        ("warmup_stable_decay", {"warmup_steps": 2, "decay_ratio": 0.3}),
    ],
)
def test_each_step_learning_rate_follows_transformers_formulas(tf, kind, warmup):
    from autokd_tensorflow import Distiller

    rates = []

    class Rate(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):  # the rate the step applied
            rates.append(float(self.model.optimizer.learning_rate))

    total = 10
    teacher, student = mlp(tf, 12, "t", 0), mlp(tf, 4, "s", 1)
    stage = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, total, 1.0)
    settings = train_settings(lr_scheduler={"type": kind, **warmup})
    distiller = Distiller(
        student,
        teacher,
        stage,
        data(),
        {"SGD": {"learning_rate": 0.5}},
        batch_size=8,
        callbacks=[Rate()],
        settings=settings,
    )
    distiller()
    warmup_steps = warmup.get("warmup_steps", math.ceil(total * warmup.get("warmup_ratio", 0.0)))
    decay = math.ceil(total * warmup.get("decay_ratio", 0.0))
    expected = [0.5 * _transformers_factor(kind, step, warmup_steps, total, decay) for step in range(total)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-9)
    assert int(distiller.optimizer.iterations) == total


def test_four_micro_batches_of_8_make_the_update_of_one_batch_of_32(tf):
    from autokd_tensorflow import Distiller

    x, y = data(32)
    teacher = mlp(tf, 12, "t", 0)
    one, four = mlp(tf, 4, "s", 1), mlp(tf, 4, "s", 1)
    stage = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 1, 2.0)
    sgd = {"SGD": {"learning_rate": 0.5}}
    whole = Distiller(one, teacher, stage, (x, y), sgd, batch_size=32)()
    accumulated = Distiller(
        four, teacher, stage, (x, y), sgd, batch_size=8, settings=train_settings(gradient_accumulation_steps=4)
    )()
    assert accumulated.losses[0] == pytest.approx(whole.losses[0], rel=1e-5)
    assert not np.allclose(weights(one)[0], weights(mlp(tf, 4, "s", 1))[0])  # the step did move the weights
    for a, b in zip(weights(four), weights(one)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_max_grad_norm_clips_the_global_norm_of_each_step(tf):
    from autokd_tensorflow import Distiller

    teacher, student = mlp(tf, 12, "t", 0), mlp(tf, 4, "s", 1)
    stage = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 1, 2.0)
    before = weights(student)
    Distiller(
        student,
        teacher,
        stage,
        data(),
        {"SGD": {"learning_rate": 1.0}},
        batch_size=8,
        settings=train_settings(max_grad_norm=1e-3),
    )()
    moved = math.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(weights(student), before)))
    assert moved == pytest.approx(1e-3, rel=1e-4)  # the unclipped gradient's norm is far above 1e-3


def test_bf16_students_train_within_tolerance_of_fp32(tf):
    from autokd_tensorflow import Distiller
    from autokd_tensorflow.engine import precision_policy

    teacher = mlp(tf, 12, "t", 0)
    fp32 = mlp(tf, 4, "s", 1)
    with precision_policy("mixed_bfloat16"):
        bf16 = mlp(tf, 4, "s", 1)
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # restored
    assert bf16.get_layer("s_hidden").compute_dtype == "bfloat16"
    settings = train_settings(mixed_precision="bf16")
    a = Distiller(fp32, teacher, KD, data(), batch_size=8)()
    b = Distiller(bf16, teacher, KD, data(), batch_size=8, settings=settings)()
    np.testing.assert_allclose(b.losses, a.losses, rtol=3e-2)


# --- budgets (issue #15) --------------------------------------------------------------------


def test_a_third_then_two_thirds_trains_as_the_whole_budget_at_once(tf):
    from autokd_tensorflow import distill
    from autokd_tensorflow.distillation import _CONTINUED

    stage = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 9, 2.0)
    teacher = mlp(tf, 12, "t", 0)
    adam = {"Adam": {"learning_rate": 0.01}}
    settings = train_settings(lr_scheduler={"type": "linear", "warmup_steps": 2})
    train = data(40)  # 5 batches of 8: the continued stage must pick up the data where it stopped
    at_once = mlp(tf, 4, "s", 1)
    (whole,) = distill(at_once, teacher, [], [stage], train, adam, batch_size=8, budget=1.0, settings=settings)

    rungs = mlp(tf, 4, "s", 1)
    (first,) = distill(rungs, teacher, [], [stage], train, adam, batch_size=8, budget=1 / 3, settings=settings)
    distiller = _CONTINUED[rungs]["regular_distillation[0]"][0]
    assert (first.train_steps, first.steps_done, int(distiller.optimizer.iterations)) == (3, 3, 3)
    (second,) = distill(rungs, teacher, [], [stage], train, adam, batch_size=8, budget=2 / 3, settings=settings)
    assert _CONTINUED[rungs]["regular_distillation[0]"][0] is distiller
    assert (second.train_steps, second.steps_done, int(distiller.optimizer.iterations)) == (6, 9, 9)
    assert second.traces == 1  # the continued stage reuses its traced step
    np.testing.assert_allclose(first.losses + second.losses, whole.losses, rtol=1e-5)
    for a, b in zip(weights(rungs), weights(at_once)):
        np.testing.assert_allclose(a, b, atol=1e-6)

    del rungs, distiller
    gc.collect()
    assert len(_CONTINUED) == 1  # only at_once's state is left: the state does not keep a student alive


def test_a_final_distillation_goes_on_along_a_schedule_over_all_its_steps(tf):
    from autokd_tensorflow import distill
    from autokd_tensorflow.distillation import _CONTINUED

    stage = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 6, 2.0)
    teacher, student = mlp(tf, 12, "t", 0), mlp(tf, 4, "s", 1)
    adam = {"Adam": {"learning_rate": 0.01}}
    settings = train_settings(lr_scheduler={"type": "linear"})
    distill(student, teacher, [], [stage], data(40), adam, batch_size=8, budget=1.0, settings=settings)
    distiller = _CONTINUED[student]["regular_distillation[0]"][0]
    schedule = distiller.optimizer._learning_rate
    assert float(schedule(6)) == 0.0  # the configured 6 steps' line ends here
    # 1.5x: the schedule now spans 9 steps and goes on from step 6 (not a rate of 0 past the 6 steps)
    (final,) = distill(student, teacher, [], [stage], data(40), adam, batch_size=8, budget=0.5, settings=settings)
    assert (final.train_steps, final.steps_done, final.traces) == (3, 9, 1)  # the traced step reads the new length
    assert [float(schedule(s)) for s in (6, 7, 8)] == pytest.approx([0.01 * (9 - s) / 9 for s in (6, 7, 8)])
    assert final.weights_after != final.weights_before


def test_a_final_distillation_with_warmup_stable_decay_holds_the_rate_then_cools_down_again(tf):
    from autokd_tensorflow import distill
    from autokd_tensorflow.distillation import _CONTINUED

    stage = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 6, 2.0)
    teacher, student = mlp(tf, 12, "t", 0), mlp(tf, 4, "s", 1)
    adam = {"Adam": {"learning_rate": 0.01}}
    settings = train_settings(lr_scheduler={"type": "warmup_stable_decay", "decay_ratio": 0.5})
    distill(student, teacher, [], [stage], data(40), adam, batch_size=8, budget=1.0, settings=settings)
    schedule = _CONTINUED[student]["regular_distillation[0]"][0].optimizer._learning_rate
    assert [float(schedule(s)) for s in range(6)] == pytest.approx([0.01] * 4 + [0.01 * 2 / 3, 0.01 / 3])
    distill(student, teacher, [], [stage], data(40), adam, batch_size=8, budget=1.0, settings=settings)
    # 2x: 12 steps, the last 6 decaying, so back to the full rate at step 6 (as autokd-torch)
    assert [float(schedule(s)) for s in range(6, 12)] == pytest.approx([0.01 * (12 - s) / 6 for s in range(6, 12)])


def test_one_fraction_per_stage_and_budget_none_is_a_fresh_full_run(tf):
    from autokd_tensorflow import distill

    teacher, student = mlp(tf, 12, "t", 0), mlp(tf, 4, "s", 1)
    flash = Stage("s_hidden", (LayerMapping("s_hidden", "", "t_hidden", ""),), ("MSE",), (1.0,), False, 6)
    flash_result, regular_result = distill(student, teacher, [flash], [KD], data(), batch_size=8, budget=[0.5, 0.25])
    assert (flash_result.train_steps, regular_result.train_steps) == (3, 1)
    flash_result, regular_result = distill(student, teacher, [flash], [KD], data(), batch_size=8, budget=None)
    assert (flash_result.steps_done, regular_result.steps_done) == (6, 4)
    with pytest.raises(ConfigError, match="budget: budget has 3 fractions for 2 stages"):
        distill(student, teacher, [flash], [KD], data(), batch_size=8, budget=[0.1, 0.2, 0.3])
