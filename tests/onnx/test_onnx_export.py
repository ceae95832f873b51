"""``output.onnx`` and ``output.quantize``: the saved student's ONNX copy checked against
PyTorch (also on another batch and sequence size), and the int8 copy's task metric
measured again and recorded."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_bert, token_batch

import autokd
import autokd_onnx
from autokd_onnx.quantize import CALIBRATION_BATCHES, calibration_feeds


def fidelity_of(reference):
    batch = token_batch()

    def evaluate(model):
        with torch.no_grad():
            hidden = model(**batch)[0]  # a ModelOutput from torch, a tuple from ONNX Runtime
        pooled = hidden.mean(1)
        return {"fidelity": float(torch.nn.functional.cosine_similarity(pooled, reference, dim=-1).mean())}

    return evaluate


def search_with_int8(tmp_path, quantize, eval_data=None):
    """A two-trial search whose best student is saved with ONNX and int8 copies."""
    with torch.no_grad():
        reference = tiny_bert(hidden_size=32, seed=9)(**token_batch())[0].mean(1)
    evaluate = fidelity_of(reference)
    config = {
        "model": {"name": "tiny"},
        "auto_distillation": {
            "search": {
                "search_space": {"seed": [1, 2]},
                "search_algorithm": "grid",
                "metrics": ["fidelity"],
                "max_trials": 2,
            }
        },
        "output": {"save": "best", "onnx": True, "quantize": quantize},
    }
    agent = autokd.AutoDistillation(lambda arch: tiny_bert(seed=arch["seed"]), config)
    agent.train_func = lambda model: None
    agent.eval_func = evaluate
    agent.example_inputs = token_batch()
    agent.eval_data = eval_data
    agent.show_progress = False
    agent.search_loop(tmp_path / "out")

    best = tmp_path / "out" / "best"
    return agent, json.loads((best / "metrics.json").read_text())["onnx"], best, evaluate


def test_best_student_exported_checked_and_quantized(tmp_path):
    agent, info, best, evaluate = search_with_int8(tmp_path, "dynamic_int8")
    assert info["path"] == "model.onnx" and info["opset"] == autokd_onnx.export.OPSET
    assert info["matches"] is True and info["tolerance"] == {"atol": 1e-4, "rtol": 1e-3}
    assert 0 <= info["max_abs_diff"] <= 1e-4 and 0 <= info["max_abs_diff_small"] <= 1e-4
    assert info["input_names"] == ["input_ids", "attention_mask"]
    onnx.checker.check_model(str(best / "model.onnx"))

    # our own check on a batch of another size and length: the axes are dynamic
    student = agent.trained_model(agent.summary()["best_trial"])
    other = token_batch(rows=2, seq=5, seed=3)
    session = autokd_onnx.make_session(str(best / "model.onnx"))
    got = session.run(None, {k: v.numpy() for k, v in other.items()})[0]
    with torch.no_grad():
        want = student(**other)[0].numpy()
    assert got.shape == (2, 5, 32)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)

    int8 = info["int8"]
    assert (
        int8["path"] == "model.int8.onnx"
        and (best / "model.int8.onnx").stat().st_size < (best / "model.onnx").stat().st_size
    )
    assert int8["quantize"] == "dynamic_int8" and "reduce_range: 7 bits" in int8["method"]
    # 7-bit weights: full-range int8 saturates AVX2's u8 x s8 dot products (autokd_onnx.quantize)
    weights = [
        onnx.numpy_helper.to_array(t)
        for t in onnx.load(str(best / "model.int8.onnx")).graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2
    ]
    assert len(weights) >= 12 and max(int(np.abs(w).max()) for w in weights) in (63, 64)
    fp32_fidelity = agent.search_result[agent.summary()["best_trial"]].metrics["fidelity"]
    assert int8["metrics"]["fidelity"] != fp32_fidelity  # measured on the int8 copy, not copied
    assert int8["metrics"]["fidelity"] == pytest.approx(fp32_fidelity, abs=0.05)
    again = evaluate(autokd_onnx.OrtModel(str(best / "model.int8.onnx")))
    assert int8["metrics"]["fidelity"] == pytest.approx(again["fidelity"], abs=1e-6)
    card = (best / "README.md").read_text()
    assert "ONNX Runtime int8 copy (`model.int8.onnx`), measured again:" in card
    assert "`model.onnx` (ONNX, opset 17" in card


def test_static_int8_is_calibrated_on_the_evaluation_data_and_measured_again(tmp_path):
    # a map-style dataset of 9 rows: batches of the example batch's 4 rows (4, 4, 1)
    held_out = token_batch(rows=9, seq=10, seed=4)
    rows = [{"input_ids": ids, "attention_mask": mask} for ids, mask in zip(*held_out.values(), strict=True)]
    agent, info, best, evaluate = search_with_int8(tmp_path, "static_int8", eval_data=rows)
    int8 = info["int8"]
    assert int8["quantize"] == "static_int8" and int8["path"] == "model.int8.onnx"
    assert int8["calibration"] == "3 batches of the evaluation data"
    assert int8["method"].startswith("onnxruntime.quantization.quantize_static (MatMuls, QDQ")
    graph = onnx.load(str(best / "model.int8.onnx")).graph
    ops = [node.op_type for node in graph.node]
    # QDQ: every MatMul of the attention's projections and feed-forward takes int8 weights
    # (2 layers x 6 weight MatMuls) and quantised activations
    assert ops.count("DequantizeLinear") > ops.count("QuantizeLinear") >= 12
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert len(int8_weights) == 12
    # per channel: each weight's DequantizeLinear has one scale per output column
    initializers = {t.name: t for t in graph.initializer}
    weight_scales = {n.input[0]: initializers[n.input[1]] for n in graph.node if n.op_type == "DequantizeLinear"}
    assert [list(weight_scales[w.name].dims) for w in int8_weights] == [[w.dims[1]] for w in int8_weights]

    fp32_fidelity = agent.search_result[agent.summary()["best_trial"]].metrics["fidelity"]
    assert int8["metrics"]["fidelity"] != fp32_fidelity  # measured on the int8 copy, not copied
    assert int8["metrics"]["fidelity"] == pytest.approx(fp32_fidelity, abs=0.05)
    again = evaluate(autokd_onnx.OrtModel(str(best / "model.int8.onnx")))
    assert int8["metrics"]["fidelity"] == pytest.approx(again["fidelity"], abs=1e-6)
    assert "`model.int8.onnx` (static int8, calibrated)" in (best / "README.md").read_text()


def test_calibration_batches_from_a_dataset_or_the_example_batch():
    example = token_batch(rows=4, seq=12)
    rows = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": 1} for ids in example["input_ids"]]
    dataset = rows * 20  # a map-style dataset of 80 rows: 20 batches of the example's 4 rows, labels dropped
    feeds, source = calibration_feeds(["input_ids", "attention_mask"], example, dataset)
    assert source == f"{CALIBRATION_BATCHES} batches of the evaluation data" and len(feeds) == CALIBRATION_BATCHES
    assert sorted(feeds[0]) == ["attention_mask", "input_ids"] and feeds[0]["input_ids"].shape == (4, 12)
    np.testing.assert_array_equal(feeds[1]["input_ids"], example["input_ids"].numpy())
    feeds, source = calibration_feeds(["input_ids", "attention_mask"], example, None)
    assert source == "the example batch" and len(feeds) == 1
    np.testing.assert_array_equal(feeds[0]["attention_mask"], example["attention_mask"].numpy())
    # data the graph cannot take: the example batch, with a warning
    feeds, source = calibration_feeds(["input_ids", "attention_mask"], example, [{"pixels": torch.zeros(2, 3)}])
    assert source == "the example batch"
    with pytest.raises(ValueError, match="static int8 quantisation needs at least one calibration batch"):
        autokd_onnx.quantize.quantize_static_int8("unused.onnx", "unused.int8.onnx", [])


def test_a_bad_quantize_value_is_refused_at_config_load_with_the_choices():
    config = {
        "model": {"name": "tiny"},
        "auto_distillation": {"search": {"search_space": {"seed": [1]}, "metrics": ["fidelity"]}},
        "output": {"onnx": True, "quantize": "int8"},
    }
    with pytest.raises(autokd.ConfigError) as info:
        autokd.load_config(config)
    assert "output.quantize: expected one of none, dynamic_int8, static_int8, got 'int8'" in str(info.value)


def test_plain_module_export_keeps_feature_dims_fixed(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh()).eval()
    x = torch.randn(5, 6)
    result = autokd_onnx.export_model(model, x, str(tmp_path / "m.onnx"))
    assert result.input_names == ["input"] and result.dynamic_axes == {"input": {"0": "batch"}}
    assert result.matches and result.max_abs_diff < 1e-6
    session = autokd_onnx.make_session(result.path)
    np.testing.assert_allclose(session.run(None, {"input": x[:2].numpy()})[0], model(x[:2]).detach().numpy(), atol=1e-6)


def test_missing_example_batch_and_missing_tf2onnx_are_explained(tmp_path, monkeypatch):
    with pytest.raises(autokd.AutoKDError, match="the export traces the student on an example batch and none is known"):
        autokd_onnx.export_model(torch.nn.Linear(2, 2), None, str(tmp_path / "m.onnx"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(
        autokd.ConfigError,
        match=r"exporting tensorflow students needs tf2onnx: pip install 'autokd-onnx\[tensorflow\]'",
    ):
        autokd_onnx.check_available("tensorflow")
    autokd_onnx.check_available("pytorch")
