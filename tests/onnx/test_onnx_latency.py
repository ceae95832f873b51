"""``onnx_latency`` and ``onnx_latency_int8`` (autokd-latency[onnx]) on a tiny model."""

from __future__ import annotations

import pytest
from conftest import tiny_bert, token_batch

import autokd
from autokd import EvalContext


@pytest.mark.parametrize("name", ["onnx_latency", "onnx_latency_int8"])
def test_onnx_latency_of_a_tiny_bert(name):
    evaluator = autokd.registry().evaluators.get(name, "pytorch")
    assert autokd.registry().evaluators.direction(name) is False
    context = EvalContext(example_inputs=token_batch(), options={"batch_size": 2, "repeats": 5, "max_seconds": 0.5})
    value = evaluator(tiny_bert(), context)
    record = context.extras[name]
    assert value == record["latency_ms"] and 0 < record["min_ms"] <= value <= record["max_ms"]
    assert record["threads"] == 1 and record["batch_size"] == 2
    assert record["input_shapes"] == {"input_ids": [2, 12], "attention_mask": [2, 12]}
    assert record["framework"].startswith("onnxruntime (pytorch export")
    assert ("int8" in record["framework"]) == name.endswith("int8")
    assert record["export"]["max_abs_diff"] < 1e-4
    assert record["rounds"] >= 1 and record["samples"] == 5 * record["rounds"]


def test_onnx_latency_rejects_a_bad_option():
    evaluator = autokd.registry().evaluators.get("onnx_latency", "pytorch")
    with pytest.raises(autokd.ConfigError, match="evaluation.onnx_latency.thread: unknown option"):
        evaluator(tiny_bert(), EvalContext(example_inputs=token_batch(), options={"thread": 2}))
