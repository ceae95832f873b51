"""The evaluators used by name in a search: metrics the eval function does not return
are measured by them, with their options from the config, and their details land in
each trial's record."""

from __future__ import annotations

import json

import pytest

import autokd

IN_FEATURES, CLASSES, BATCH = 16, 3, 4


def torch_mlp(arch):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    width = arch["width"]
    return torch.nn.Sequential(torch.nn.Linear(IN_FEATURES, width), torch.nn.ReLU(), torch.nn.Linear(width, CLASSES))


def keras_mlp(arch):
    tf_keras = pytest.importorskip("tf_keras")
    return tf_keras.Sequential(
        [
            tf_keras.layers.Dense(arch["width"], activation="relu", input_shape=(IN_FEATURES,)),
            tf_keras.layers.Dense(CLASSES),
        ]
    )


def example_batch(framework):
    if framework == "pytorch":
        return pytest.importorskip("torch").ones(2, IN_FEATURES)
    return pytest.importorskip("tensorflow").ones((2, IN_FEATURES))


def config(framework, **evaluation):
    return {
        "model": {"framework": framework},
        "auto_distillation": {
            "search": {
                "search_space": {"width": [8, 32]},
                "search_algorithm": "grid",
                "metrics": ["accuracy", "latency"],
                "higher_is_better": [True, False],
                "max_trials": 2,
                "seed": 1,
            }
        },
        "evaluation": {
            "latency": {"batch_size": BATCH, "repeats": 3, "warmup": 1},
            "flops": {"batch_size": BATCH},
            "record": ["params", "flops", "model_size"],
            **evaluation,
        },
    }


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_a_search_measures_and_records_every_hardware_metric(framework, tmp_path, monkeypatch):
    batch = example_batch(framework)  # skips where the framework is not installed
    if framework == "tensorflow":
        pytest.importorskip("tf_keras")
        from autokd_latency import _tensorflow

        # TF measures with its runtime's threads; the one-time warning is tested elsewhere
        monkeypatch.setattr(_tensorflow, "_warned_threads", True)
    builder = torch_mlp if framework == "pytorch" else keras_mlp
    agent = autokd.AutoDistillation(builder, config(framework))
    agent.example_inputs = batch  # the batch of 2 is repeated to 4 rows
    agent.train_func = lambda model: model
    accuracies = iter([0.6, 0.5])  # the grid's order: width 8, then 32
    agent.eval_func = lambda model: {"accuracy": next(accuracies)}
    agent.show_progress = False
    agent.search_loop(tmp_path)

    lines = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [(r["arch"], r["status"]) for r in lines] == [({"width": 8}, "ok"), ({"width": 32}, "ok")]
    for record in lines:
        width = record["arch"]["width"]
        params = IN_FEATURES * width + width + width * CLASSES + CLASSES
        matmul = 2 * BATCH * (IN_FEATURES * width + width * CLASSES)
        bias_adds = 0 if framework == "pytorch" else BATCH * (width + CLASSES)  # the TF profiler counts them
        metrics, extras = record["metrics"], record["extras"]
        assert metrics["params"] == params
        assert metrics["flops"] == matmul + bias_adds
        assert metrics["model_size"] == 4 * params / 1e6
        assert metrics["latency"] > 0
        assert extras["latency"]["latency_ms"] == metrics["latency"]
        assert extras["latency"]["repeats"] == 3 and extras["latency"]["batch_size"] == BATCH
        assert extras["latency"]["input_shapes"] == {"0": [BATCH, IN_FEATURES]}
        assert extras["params"] == {"trainable": params, "total": params, "framework": framework}
        assert extras["model_size"]["bytes"] == 4 * params
        assert extras["flops"]["total"] == metrics["flops"]
    # the first objective decides: width 8 has the better accuracy, whatever the latencies measured
    assert agent.best_model_arch == {"width": 8}


def test_a_bad_evaluator_option_stops_the_search_with_its_path(tmp_path):
    pytest.importorskip("torch")
    agent = autokd.AutoDistillation(torch_mlp, config("pytorch", latency={"repeat": 3}))
    agent.example_inputs = example_batch("pytorch")
    agent.train_func = lambda model: model
    agent.eval_func = lambda model: {"accuracy": 0.5}
    agent.show_progress = False
    with pytest.raises(autokd.AutoKDError) as info:
        agent.search_loop(tmp_path)
    assert (
        "evaluation.latency.repeat: unknown option (accepted: batch_size, seq_len, warmup, repeats, threads, tolerance, min_seconds, max_seconds)"
        in str(info.value)
    )
    assert not (tmp_path / "trials.jsonl").exists() or (tmp_path / "trials.jsonl").read_text() == ""
