"""The evaluators on TensorFlow/Keras models (tf_keras as transformers<5 uses it, Keras 3,
and plain tf.Module): FLOPs against counts worked out by hand, parameters against
variable sizes, model size against a saved file, latency against a 4x larger model."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

tf = pytest.importorskip("tensorflow")

from latency_models import bert_config, bert_forward_flops  # noqa: E402

import autokd  # noqa: E402
import autokd_latency  # noqa: E402
from autokd import EvalContext  # noqa: E402
from autokd_latency import _tensorflow  # noqa: E402


@pytest.fixture(autouse=True)
def _runtime_threads_are_the_default(monkeypatch):
    # Most tests measure with the TF runtime's threads; the one-time warning about that is
    # checked by its own test.
    monkeypatch.setattr(_tensorflow, "_warned_threads", True)


def tf_keras_mlp(width: int, in_features: int = 64, classes: int = 10):
    tf_keras = pytest.importorskip("tf_keras")
    return tf_keras.Sequential(
        [
            tf_keras.layers.Dense(width, activation="relu", input_shape=(in_features,)),
            tf_keras.layers.Dense(classes),
        ]
    )


def tiny_tf_bert(**overrides):
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "TFBertModel"):
        pytest.skip("this transformers has no TensorFlow models (transformers<5 has)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.TFBertModel(bert_config(**overrides))


# --- FLOPs ------------------------------------------------------------------------------


def test_flops_of_a_dense_layer():
    # MatMul [5, 8] x [8, 4]: 2*5*8*4; the profiler also counts the bias add, one per output
    model = tf_keras_mlp(4, in_features=8, classes=3)
    context = EvalContext(example_inputs=tf.ones((5, 8)))
    matmul = 2 * 5 * 8 * 4 + 2 * 5 * 4 * 3
    bias = 5 * 4 + 5 * 3
    assert autokd_latency.flops(model, context) == matmul + bias
    assert context.extras["flops"]["by_op"] == {"MatMul": matmul, "BiasAdd": bias}
    assert context.extras["flops"]["counter"] == "tf.compat.v1.profiler (float_operation)"
    context = EvalContext(example_inputs=tf.ones((5, 8)), options={"ops": "matmul", "batch_size": 10})
    assert autokd_latency.flops(model, context) == 2 * matmul
    assert context.extras["flops"]["input_shapes"] == {"0": [10, 8]}


def test_flops_of_a_keras3_model_from_numpy():
    keras = pytest.importorskip("keras")
    np = pytest.importorskip("numpy")
    if keras.__version__.split(".")[0] != "3":
        pytest.skip("Keras 3 is not installed")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    assert autokd_latency.flops(model, EvalContext(example_inputs=np.ones((3, 8), np.float32))) == 2 * 3 * 8 * 4 + 3 * 4


def test_flops_of_a_tiny_bert_match_the_hand_count():
    model = tiny_tf_bert()
    context = EvalContext(options={"batch_size": 2, "seq_len": 16})
    total = autokd_latency.flops(model, context)
    record = context.extras["flops"]
    # the matrix products are the hand count, exactly as torch counts them
    attention = 2 * 2 * (2 * 2 * 16 * 16 * 32)
    assert record["by_op"]["BatchMatMulV2"] == attention
    assert (
        record["by_op"]["MatMul"]
        == bert_forward_flops(batch=2, seq=16, hidden=32, intermediate=37, layers=2) - attention
    )
    # the profiler counts element-wise work as well (bias adds, layer norms, softmax...)
    assert total == sum(record["by_op"].values()) > 962_560
    assert record["by_op"]["Softmax"] > 0 and record["uncounted_ops"] == []
    # with `ops: matmul` (tested on a dense layer) the count is the torch one
    assert record["by_op"]["MatMul"] + record["by_op"]["BatchMatMulV2"] == 962_560


class _Einsum(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.ones((8, 4)))

    def __call__(self, x):
        return tf.einsum("bsi,io->bso", x, self.w)


class _Depthwise(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.ones((3, 3, 5, 2)))

    def __call__(self, x):
        return tf.nn.depthwise_conv2d(x, self.w, strides=[1, 1, 1, 1], padding="VALID")


class _NestedFunction(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.ones((8, 4)))

    @tf.function
    def project(self, x):
        return tf.matmul(x, self.w)

    def __call__(self, x):
        return self.project(x)


@pytest.mark.parametrize(
    "model, x, expected",
    [
        # einsum has no profiler formula of its own: 2 * b*s*i*o, like the MatMul it is
        (_Einsum(), tf.ones((2, 6, 8)), {"Einsum": 2 * 2 * 6 * 8 * 4}),
        # depthwise 3x3 taps per output value: output [2, 8, 8, 5*2]
        (_Depthwise(), tf.ones((2, 10, 10, 5)), {"DepthwiseConv2dNative": 2 * (2 * 8 * 8 * 10) * 3 * 3}),
        # the profiler does not see into a nested tf.function unless it is inlined
        (_NestedFunction(), tf.ones((3, 8)), {"MatMul": 2 * 3 * 8 * 4}),
    ],
    ids=["einsum", "depthwise", "nested-function"],
)
def test_flops_the_profiler_would_miss(model, x, expected):
    context = EvalContext(example_inputs=x)
    assert autokd_latency.flops(model, context) == sum(expected.values())
    assert context.extras["flops"]["by_op"] == expected


# --- parameters and size ----------------------------------------------------------------


def test_params_are_the_sum_of_variable_sizes_and_an_unbuilt_bert_is_built():
    model = tiny_tf_bert()
    assert not model.built
    context = EvalContext()
    total = autokd_latency.params(model, context)
    assert model.built
    assert total == sum(math.prod(v.shape) for v in model.weights) == model.count_params()
    assert context.extras["params"] == {"trainable": total, "total": total, "framework": "tensorflow"}
    # by hand: embeddings (99 words + 64 positions + 2 types) x 32 and a layer norm; per
    # layer Q, K, V, output (32x32 + 32 each), 2 layer norms, the feed-forward 32->37->32;
    # the pooler 32x32 + 32. The torch BertModel of the same config has the same count.
    layer = 4 * (32 * 32 + 32) + 2 * 64 + (32 * 37 + 37) + (37 * 32 + 32)
    assert total == (99 + 64 + 2) * 32 + 64 + 2 * layer + (32 * 32 + 32) == 19_978


def test_batchnorm_statistics_are_total_but_not_trainable():
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([tf_keras.layers.Dense(16, input_shape=(8,)), tf_keras.layers.BatchNormalization()])
    dense = 8 * 16 + 16
    gamma_beta, moving = 2 * 16, 2 * 16
    context = EvalContext(options={"trainable_only": True})
    assert autokd_latency.params(model, context) == dense + gamma_beta
    assert context.extras["params"]["total"] == dense + gamma_beta + moving


def test_a_model_that_cannot_be_built_says_how_to_build_it():
    tf_keras = pytest.importorskip("tf_keras")

    class Subclassed(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf_keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(
        autokd.AutoKDError,
        match=r"^params: Subclassed has no weights yet \(a Keras model creates them on its first call\) and no "
        r"inputs to build it with: call model\.build\(input_shape\) or the model itself once in "
        r"model_builder, or set AutoDistillation\.example_inputs$",
    ):
        autokd_latency.params(Subclassed(), EvalContext())
    model = Subclassed()
    assert autokd_latency.params(model, EvalContext(example_inputs=tf.ones((2, 5)))) == 5 * 3 + 3


def test_model_size_is_close_to_the_saved_weights_file(tmp_path):
    model = tf_keras_mlp(512, in_features=256)
    path = tmp_path / "weights.h5"
    model.save_weights(str(path))
    context = EvalContext()
    megabytes = autokd_latency.model_size(model, context)
    size = context.extras["model_size"]["bytes"]
    assert size == 4 * ((256 * 512 + 512) + (512 * 10 + 10))
    assert megabytes == size / 1e6
    # HDF5 adds a few KB of metadata per variable
    assert size < os.path.getsize(path) < size * 1.05


def test_model_size_counts_each_dtype():
    class Mixed(tf.Module):
        def __init__(self):
            self.a = tf.Variable(tf.zeros((10,), tf.float16))
            self.b = tf.Variable(tf.zeros((3, 2), tf.int64))

    size = autokd_latency.weights_size(Mixed())
    assert (size.bytes, size.tensors) == (10 * 2 + 6 * 8, 2)


# --- latency ----------------------------------------------------------------------------


def test_latency_is_a_positive_finite_low_quantile_with_its_spread_recorded():
    context = EvalContext(options={"batch_size": 1, "seq_len": 16, "repeats": 6, "warmup": 2})
    value = autokd_latency.latency(tiny_tf_bert(), context)
    record = context.extras["latency"]
    assert math.isfinite(value) and value > 0 and value == record["latency_ms"]
    assert record["min_ms"] <= value <= record["median_ms"] and record["samples"] == 6 * record["rounds"]
    assert record["min_ms"] <= record["q1_ms"] <= record["median_ms"] <= record["q3_ms"] <= record["max_ms"]
    assert (record["repeats"], record["warmup"], record["batch_size"]) == (6, 2, 1)
    assert record["threads"] == _tensorflow.runtime_threads()
    assert record["input_shapes"] == {"input_ids": [1, 16], "attention_mask": [1, 16]}
    assert record["framework"] == "tensorflow"


def test_the_runtime_threads_are_used_with_one_warning(monkeypatch):
    if _tensorflow.runtime_threads() == 1:
        pytest.skip("this process pinned TensorFlow to 1 thread")
    monkeypatch.setattr(_tensorflow, "_warned_threads", False)
    model, x = tf_keras_mlp(8), tf.ones((2, 64))
    with pytest.warns(RuntimeWarning, match=r"TensorFlow runs with .*pin_tensorflow_threads\(1\)"):
        autokd_latency.latency(model, EvalContext(example_inputs=x, options={"repeats": 2}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        autokd_latency.latency(model, EvalContext(example_inputs=x, options={"repeats": 2}))


def test_threads_asked_for_but_not_settable_is_a_clear_error():
    current = _tensorflow.runtime_threads()
    asked = 3 if current != 3 else 2
    with pytest.raises(autokd.ConfigError) as info:
        autokd_latency.latency(
            tf_keras_mlp(8), EvalContext(example_inputs=tf.ones((2, 64)), options={"threads": asked})
        )
    assert f"evaluation.latency.threads: TensorFlow cannot switch to {asked} threads" in str(info.value)
    assert f"autokd_latency.pin_tensorflow_threads({asked}) at the start of the program" in str(info.value)


def test_threads_pinned_at_start_are_honoured():
    script = textwrap.dedent(
        """
        import autokd_latency
        autokd_latency.pin_tensorflow_threads(1)
        import tensorflow as tf
        from autokd import EvalContext, AutoKDError
        inputs = tf.keras.Input((16,))
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(inputs))
        context = EvalContext(example_inputs=tf.ones((2, 16)), options={"threads": 1, "repeats": 2})
        autokd_latency.latency(model, context)
        print(context.extras["latency"]["threads"])
        try:
            autokd_latency.pin_tensorflow_threads(2)
        except AutoKDError as exc:
            print(str(exc).split(":")[0])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == [
        "1",
        "TensorFlow's thread pools are already running (Intra op parallelism cannot be modified after initialization.)",
    ]


def test_a_4x_larger_model_is_slower():
    # A 2048 wide hidden layer instead of 512: 4x the FLOPs. The machine may be busy, so
    # measure both in turn three times and ask for most rounds and the middle ratio.
    tf_keras = pytest.importorskip("tf_keras")
    x = tf.random.stateless_normal((64, 512), seed=(1, 2))

    def model(width):
        return tf_keras.Sequential(
            [tf_keras.layers.Dense(width, activation="relu", input_shape=(512,)), tf_keras.layers.Dense(512)]
        )

    small, large = model(512), model(2048)
    matmul = {"ops": "matmul"}
    assert (
        autokd_latency.count_flops(large, x, **matmul).total == 4 * autokd_latency.count_flops(small, x, **matmul).total
    )
    options = {"repeats": 15, "warmup": 3}
    ratios = []
    for _ in range(3):
        small_ms = autokd_latency.latency(small, EvalContext(example_inputs=x, options=options))
        large_ms = autokd_latency.latency(large, EvalContext(example_inputs=x, options=options))
        ratios.append(large_ms / small_ms)
    assert sum(r > 1 for r in ratios) >= 2, ratios
    assert sorted(ratios)[1] > 1.5, ratios


def test_a_failing_call_names_the_model_and_the_input_shapes():
    with pytest.raises(autokd.AutoKDError, match=r"^flops: calling Sequential on inputs \{'0': \[3, 7\]\} failed: "):
        autokd_latency.flops(tf_keras_mlp(4, in_features=8), EvalContext(example_inputs=tf.ones((3, 7))))
