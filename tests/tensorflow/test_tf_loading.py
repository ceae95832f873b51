"""Teachers saved as safetensors load without torch: PyTorch-written weights (format
'pt') and TensorFlow-written ones (format 'tf')."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from autokd import AutoKDError, ConfigError

DATA = os.path.join(os.path.dirname(__file__), "data")


def test_pytorch_safetensors_teacher_gives_pytorchs_logits(tf):
    from autokd_tensorflow import load_model

    with open(os.path.join(DATA, "pt_bert_logits.json"), encoding="utf-8") as fh:
        expected = json.load(fh)
    teacher = load_model(os.path.join(DATA, "pt_bert"))
    assert type(teacher).__name__ == "TFBertForSequenceClassification"  # from config.architectures
    logits = teacher(tf.constant(expected["input_ids"]), training=False).logits
    np.testing.assert_allclose(logits.numpy(), np.array(expected["logits"]), rtol=1e-4, atol=1e-7)
    if importlib.util.find_spec("torch") is None:  # the tensorflow env has no torch at all
        assert "torch" not in sys.modules


def test_tensorflow_safetensors_teacher_round_trips(bert_teacher, tf, tmp_path):
    from autokd_tensorflow import load_model

    bert_teacher.save_pretrained(tmp_path, safe_serialization=True)
    loaded = load_model(str(tmp_path))
    ids = tf.constant([[3, 4, 5, 6]])
    np.testing.assert_allclose(loaded(ids).logits.numpy(), bert_teacher(ids).logits.numpy(), rtol=1e-5, atol=1e-7)


def test_a_checkpoint_of_another_model_is_a_clear_error():
    from autokd_tensorflow import load_safetensors_model

    with pytest.raises(
        AutoKDError,
        match=r"pt_bert: the checkpoint does not fit TFBertForMaskedLM: "
        r".*pass the model_cls it was saved from",
    ):
        load_safetensors_model(os.path.join(DATA, "pt_bert"), model_cls="TFBertForMaskedLM")
    with pytest.raises(
        AutoKDError,
        match=r"pt_bert: cannot build TFDistilBertForSequenceClassification from its "
        r"BertConfig: .*pass the model_cls it was saved from",
    ):
        load_safetensors_model(os.path.join(DATA, "pt_bert"), model_cls="TFDistilBertForSequenceClassification")


def test_a_teacher_spec_that_is_neither_folder_nor_import_string(tmp_path):
    from autokd_tensorflow import load_model

    with pytest.raises(
        ConfigError, match=r"model.teacher: 'no/such/folder' is neither a model folder nor an import string"
    ):
        load_model("no/such/folder")
    with pytest.raises(AutoKDError, match=r"no model.safetensors"):
        from autokd_tensorflow import load_safetensors_model

        load_safetensors_model(tmp_path)
