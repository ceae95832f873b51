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


def fidelity_of(reference):
    batch = token_batch()

    def evaluate(model):
        with torch.no_grad():
            hidden = model(**batch)[0]  # a ModelOutput from torch, a tuple from ONNX Runtime
        pooled = hidden.mean(1)
        return {"fidelity": float(torch.nn.functional.cosine_similarity(pooled, reference, dim=-1).mean())}

    return evaluate


def test_best_student_exported_checked_and_quantized(tmp_path):
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
        "output": {"save": "best", "onnx": True, "quantize": "dynamic_int8"},
    }
    agent = autokd.AutoDistillation(lambda arch: tiny_bert(seed=arch["seed"]), config)
    agent.train_func = lambda model: None
    agent.eval_func = evaluate
    agent.example_inputs = token_batch()
    agent.show_progress = False
    agent.search_loop(tmp_path / "out")

    best = tmp_path / "out" / "best"
    info = json.loads((best / "metrics.json").read_text())["onnx"]
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
    fp32_fidelity = agent.search_result[agent.summary()["best_trial"]].metrics["fidelity"]
    assert int8["metrics"]["fidelity"] != fp32_fidelity  # measured on the int8 copy, not copied
    assert int8["metrics"]["fidelity"] == pytest.approx(fp32_fidelity, abs=0.05)
    again = evaluate(autokd_onnx.OrtModel(str(best / "model.int8.onnx")))
    assert int8["metrics"]["fidelity"] == pytest.approx(again["fidelity"], abs=1e-6)
    card = (best / "README.md").read_text()
    assert "ONNX Runtime int8 copy (`model.int8.onnx`), measured again:" in card
    assert "`model.onnx` (ONNX, opset 17" in card


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
