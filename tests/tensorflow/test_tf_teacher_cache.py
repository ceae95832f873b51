"""The teacher-output cache of the TensorFlow backend: hit and miss counts under the
memory budget, cached losses equal to live ones, reuse across trials and from disk, and
the cases where it turns itself off."""

from __future__ import annotations

import numpy as np
import pytest

from autokd import LayerMapping, Stage
from autokd._trial import _current

KD = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 4, 2.0)
FEATURES = Stage("s_hidden", (LayerMapping("s_hidden", "", "t_hidden", ""),), ("MSE",), (1.0,), False, 4)
ROW = 3 * 4  # one example's logits: 3 float32


def mlp(tf, width, prefix, seed):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((6,))
    hidden = tf.keras.layers.Dense(width, activation="relu", name=f"{prefix}_hidden")(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3, name=f"{prefix}_out")(hidden))


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, n).astype("int32")


def trial(run):
    """Run ``run()`` as a trial would; the extras it records."""
    extras: dict = {}
    token = _current.set(extras)
    try:
        run()
    finally:
        _current.reset(token)
    return extras


def test_hits_and_misses_under_the_memory_budget(tf):
    from autokd_tensorflow import distill
    from autokd_tensorflow.teacher import TeacherForward

    teacher = mlp(tf, 12, "t", 0)
    # room for the logits of 20 of the 32 examples, no directory for the rest
    forward = TeacherForward(teacher, cache={"memory_budget_mb": 20 * ROW / 2**20})
    extras = trial(
        lambda: distill(mlp(tf, 4, "s", 1), teacher, [], [KD], data(), batch_size=8, teacher_forward=forward)
    )
    record = extras["teacher_cache"]
    # batches 0-7 and 8-15 are stored; 16-23 (4 not stored) and 24-31 run the teacher
    assert (record["enabled"], record["hits"], record["misses"]) == (True, 16, 16)
    assert (record["prefilled"], record["bytes_in_memory"], record["bytes_on_disk"]) == (32, 20 * ROW, 0)
    assert record["dtype"] == "float32" and record["directory"] is None

    # the next trial reuses the stored rows: nothing is filled again
    extras = trial(
        lambda: distill(mlp(tf, 4, "s", 2), teacher, [], [KD], data(), batch_size=8, teacher_forward=forward)
    )
    assert (extras["teacher_cache"]["hits"], extras["teacher_cache"]["misses"]) == (16, 16)
    assert extras["teacher_cache"]["prefilled"] == 0


@pytest.mark.parametrize(("dtype", "tolerance"), [("float32", 1e-5), ("float16", 1e-3)])
def test_cached_losses_equal_live_ones(tf, dtype, tolerance):
    from autokd_tensorflow import distill
    from autokd_tensorflow.teacher import TeacherForward

    teacher = mlp(tf, 12, "t", 0)
    live_student, cached_student = mlp(tf, 4, "s", 1), mlp(tf, 4, "s", 1)
    tf.keras.utils.set_random_seed(5)  # the same feature matcher for both
    live = distill(live_student, teacher, [FEATURES], [KD], data(), batch_size=8)
    forward = TeacherForward(teacher, cache={"dtype": dtype})
    cached: list = []
    tf.keras.utils.set_random_seed(5)
    extras = trial(
        lambda: cached.extend(
            distill(cached_student, teacher, [FEATURES], [KD], data(), batch_size=8, teacher_forward=forward)
        )
    )
    assert (extras["teacher_cache"]["hits"], extras["teacher_cache"]["misses"]) == (64, 0)
    for a, b in zip(cached, live):
        np.testing.assert_allclose(a.losses, b.losses, rtol=tolerance)
    if dtype == "float32":
        for a, b in zip(cached_student.weights, live_student.weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_rows_beyond_memory_go_to_disk_and_a_later_run_reuses_them(tf, tmp_path):
    from autokd_tensorflow import distill
    from autokd_tensorflow.teacher import TeacherForward

    teacher = mlp(tf, 12, "t", 0)
    first = TeacherForward(teacher, cache={"memory_budget_mb": 0}, output_dir=tmp_path)
    record = trial(lambda: distill(mlp(tf, 4, "s", 1), teacher, [], [KD], data(), batch_size=8, teacher_forward=first))[
        "teacher_cache"
    ]
    assert (record["hits"], record["misses"], record["bytes_on_disk"]) == (32, 0, 32 * ROW)
    assert record["directory"].startswith(str(tmp_path / "teacher_cache"))

    again = TeacherForward(teacher, cache={"memory_budget_mb": 0}, output_dir=tmp_path)  # as --resume makes it
    record = trial(lambda: distill(mlp(tf, 4, "s", 1), teacher, [], [KD], data(), batch_size=8, teacher_forward=again))[
        "teacher_cache"
    ]
    assert (record["prefilled"], record["hits"], record["misses"]) == (0, 32, 0)


def test_the_cache_turns_off_with_the_reason(tf, caplog):
    from autokd_tensorflow import distill
    from autokd_tensorflow.teacher import TeacherForward

    teacher = mlp(tf, 12, "t", 0)
    x, y = data()
    forward = TeacherForward(teacher, cache=True)
    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    record = trial(
        lambda: distill(mlp(tf, 4, "s", 1), teacher, [], [KD], batched, batch_size=8, teacher_forward=forward)
    )["teacher_cache"]
    assert record["enabled"] is False and (record["hits"], record["misses"]) == (0, 0)
    assert "carries no example indices to key the cache by; pass a mapping of arrays" in record["reason"]

    trial(lambda: distill(mlp(tf, 4, "s", 1), teacher, [], [KD], (x, y), batch_size=8, teacher_forward=forward))
    teacher.get_layer("t_out").kernel.assign_add(tf.ones_like(teacher.get_layer("t_out").kernel))
    record = trial(
        lambda: distill(mlp(tf, 4, "s", 1), teacher, [], [KD], (x, y), batch_size=8, teacher_forward=forward)
    )["teacher_cache"]
    assert record["enabled"] is False
    assert record["reason"].startswith("the teacher's weights changed since its outputs were stored")
    assert record["bytes_in_memory"] == 0

    off = TeacherForward(teacher, cache={"enabled": False})
    record = trial(lambda: distill(mlp(tf, 4, "s", 1), teacher, [], [KD], (x, y), batch_size=8, teacher_forward=off))[
        "teacher_cache"
    ]
    assert record["reason"] == "disabled by train.teacher_cache.enabled: false"


def test_continued_and_accumulated_stages_look_up_only_the_batches_they_train(tf):
    import types

    from autokd_tensorflow import distill, engine_settings
    from autokd_tensorflow.teacher import TeacherForward

    teacher = mlp(tf, 12, "t", 0)
    settings = engine_settings(types.SimpleNamespace(gradient_accumulation_steps=2))
    stage = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 4, 2.0)
    live_student, cached_student = mlp(tf, 4, "s", 1), mlp(tf, 4, "s", 1)
    (live,) = distill(live_student, teacher, [], [stage], data(40), batch_size=8, budget=1.0, settings=settings)
    forward = TeacherForward(teacher, cache=True)
    x, y = data(40)
    losses = []
    for _ in range(2):
        cached: list = []
        record = trial(
            lambda c=cached: c.extend(
                distill(
                    cached_student,
                    teacher,
                    [],
                    [stage],
                    (x, y),
                    batch_size=8,
                    budget=0.5,
                    settings=settings,
                    teacher_forward=forward,
                )
            )
        )
        # 2 optimizer steps of 2 micro-batches of 8: only those 32 examples are looked up
        assert (record["teacher_cache"]["hits"], record["teacher_cache"]["misses"]) == (32, 0)
        losses += cached[0].losses
    np.testing.assert_allclose(losses, live.losses, rtol=1e-5)
    for a, b in zip(cached_student.weights, live_student.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
