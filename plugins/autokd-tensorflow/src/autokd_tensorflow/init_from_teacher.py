"""Start a TensorFlow BERT-family student from its teacher's weights (issue #18; the torch
backend's ``init_from_teacher``, issue #9): layer selection, a width basis, heads and
feed-forward neurons kept by weight norm.

The maths is the core's framework-neutral :mod:`autokd.init_basis` on numpy arrays named
and oriented as PyTorch's ``state_dict``; this module only maps a transformers TF model's
variables to those names (transformers' own TF→PyTorch name conversion, transposing Dense
kernels) and back. A student of the teacher's exact shape gets the teacher's weights.
"""

from __future__ import annotations

from typing import Any

from autokd.init_basis import InitError, init_bert_state, select_teacher_layers, width_basis

from . import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# isort: split
import numpy as np
import tensorflow as tf

from .data import as_dataset, split_batch

__all__ = ["hidden_state_gram", "initialize_from_teacher"]


def _state(model: Any) -> dict[str, tuple[Any, bool]]:
    """PyTorch name -> (variable, whether its value is the transpose of PyTorch's)."""
    from transformers.modeling_tf_pytorch_utils import TransposeType, convert_tf_weight_name_to_pt_weight_name

    if not getattr(model, "built", True) and hasattr(model, "dummy_inputs"):
        model(model.dummy_inputs, training=False)
    state = {}
    for variable in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(variable.name, tf_weight_shape=variable.shape)
        state[name] = (variable, transpose != TransposeType.NO)
    return state


def _arrays(state: dict[str, tuple[Any, bool]]) -> dict[str, np.ndarray]:
    return {name: (v.numpy().T if t else v.numpy()) for name, (v, t) in state.items()}


def hidden_state_gram(teacher: Any, data: Any, batch_size: int = 32) -> np.ndarray:
    """``X^T X`` over every layer output of the teacher on ``data`` (padding excluded)."""
    gram = None
    for batch in as_dataset(data, batch_size, "data"):
        inputs, _ = split_batch(batch)
        states = teacher(inputs, output_hidden_states=True, training=False).hidden_states
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        for state in states:
            x = state.numpy().astype(np.float64).reshape(-1, state.shape[-1])
            if mask is not None:
                x = x[np.asarray(mask).reshape(-1).astype(bool)]
            gram = x.T @ x if gram is None else gram + x.T @ x
    if gram is None:
        raise InitError("init_from_teacher: data= is empty")
    return gram


def initialize_from_teacher(
    student: Any,
    teacher: Any,
    *,
    layers: str | list[int] = "uniform",
    width: str = "pca_embeddings",
    heads: str = "weight_norm",
    neurons: str = "weight_norm",
    data: Any = None,
) -> dict:
    """Set the student's weights from the teacher's, in place; returns a report: the
    teacher layer of each student layer, the width basis and its explained variance, and
    the weights left as they were (``not_initialised``).

    :param width: ``pca_embeddings``, ``pca_hidden`` / ``select_hidden`` (on ``data``:
        training data in any form :func:`~autokd_tensorflow.data.as_dataset` takes) or
        ``slice``; equal widths use the identity.
    """
    for role, model in (("student", student), ("teacher", teacher)):
        if getattr(getattr(model, "config", None), "model_type", None) != "bert":
            raise InitError(
                f"init_from_teacher: the {role} ({type(model).__name__}) is not a BERT-family transformers TF model "
                f"(config.model_type 'bert'); give the student's weights another start"
            )
    s_state, t_state = _state(student), _state(teacher)
    s_values, t_values = _arrays(s_state), _arrays(t_state)
    words = next(v for k, v in t_values.items() if k.endswith("embeddings.word_embeddings.weight"))
    gram = None
    if width in ("pca_hidden", "select_hidden"):
        if data is None:
            raise InitError(f"init_from_teacher: width={width!r} needs data= (teacher inputs) for the hidden states")
        gram = hidden_state_gram(teacher, data)
    basis = width_basis(words, int(student.config.hidden_size), width, gram)
    new, left = init_bert_state(
        s_values,
        t_values,
        student_heads=int(student.config.num_attention_heads),
        teacher_heads=int(teacher.config.num_attention_heads),
        basis=basis,
        layers=layers,
        heads=heads,
        neurons=neurons,
    )
    for name, value in new.items():
        if name in left:
            continue
        variable, transpose = s_state[name]
        variable.assign(tf.constant((value.T if transpose else value).astype(variable.dtype.as_numpy_dtype)))
    return {
        "layers": select_teacher_layers(student.config.num_hidden_layers, teacher.config.num_hidden_layers, layers),
        "width": basis.kind,
        "explained_variance": basis.explained_variance,
        "not_initialised": left,
    }
