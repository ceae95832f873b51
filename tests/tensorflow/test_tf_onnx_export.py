"""autokd-onnx on Keras students: ``tf2onnx`` exports checked against TensorFlow's own
outputs, also on a batch of another size (and length); the export tests skip when
autokd-onnx or tf2onnx is not installed, the missing-tf2onnx message is tested always."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from tf_helpers import VOCAB, bert_config


@pytest.fixture
def autokd_onnx():
    pytest.importorskip("tf2onnx", reason="tf2onnx is not installed: pip install 'autokd-onnx[tensorflow]'")
    return pytest.importorskip("autokd_onnx")


def test_a_keras_student_exports_and_matches_tensorflow(tf, autokd_onnx, tmp_path):
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [tf.keras.layers.Input((6,)), tf.keras.layers.Dense(8, activation="tanh"), tf.keras.layers.Dense(3)]
    )
    features = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    result = autokd_onnx.export_model(model, features, str(tmp_path / "mlp.onnx"))
    assert result.exporter.startswith("tf2onnx ") and result.matches and result.max_abs_diff < 1e-5
    session = autokd_onnx.make_session(result.path)
    (name,) = [i.name for i in session.get_inputs()]
    got = session.run(None, {name: features[:2]})[0]  # the batch axis is free
    np.testing.assert_allclose(got, model(features[:2]).numpy(), atol=1e-5)


def test_a_transformers_tf_bert_exports_and_matches_tensorflow(tf, autokd_onnx, tmp_path):
    from transformers import TFBertModel

    tf.keras.utils.set_random_seed(0)
    model = TFBertModel(bert_config())
    rng = np.random.default_rng(0)
    batch = {
        "input_ids": rng.integers(1, VOCAB, size=(4, 12)).astype("int32"),
        "attention_mask": np.ones((4, 12), "int32"),
    }
    batch["attention_mask"][1, 6:] = 0
    result = autokd_onnx.export_model(model, batch, str(tmp_path / "bert.onnx"))
    assert result.exporter.startswith("tf2onnx ") and result.matches, result.max_abs_diff
    assert sorted(result.input_names) == ["attention_mask", "input_ids"]
    session = autokd_onnx.make_session(result.path)
    other = {
        "input_ids": rng.integers(1, VOCAB, size=(2, 5)).astype("int32"),
        "attention_mask": np.ones((2, 5), "int32"),
    }
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, other), strict=True))
    want = model(other).last_hidden_state.numpy()
    hidden = next(v for v in got.values() if v.shape == want.shape)  # batch and sequence are free
    np.testing.assert_allclose(hidden, want, atol=1e-4, rtol=1e-3)


def test_without_tf2onnx_the_export_says_how_to_install_it(tf, monkeypatch):
    pytest.importorskip("autokd_onnx")
    import autokd
    from autokd_onnx import _tensorflow

    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import tf2onnx now raises ImportError
    with pytest.raises(autokd.AutoKDError) as info:
        _tensorflow._tf2onnx()
    assert str(info.value) == (
        "output.onnx: exporting a Keras student needs tf2onnx, which is not installed: "
        "pip install 'autokd-onnx[tensorflow]' (or set output.onnx: false)"
    )
