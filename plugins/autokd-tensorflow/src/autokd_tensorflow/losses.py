"""Feature distances of intermediate-layer distillation, used by name in ``loss_types``.

Each is ``loss_fn(student_feature, teacher_feature) -> scalar`` and gives the same number
as the PyTorch plugin's loss of the same name on the same arrays:

- ``MSE``: mean of the squared differences over every element.
- ``L1``: mean of the absolute differences over every element.
- ``KL``: KL(teacher || student) over the last dimension, the student's ``log_softmax``
  against the teacher's ``softmax``, averaged over every other position (for 2-D features
  that is ``batchmean``).
- ``CE``: soft-target cross entropy ``-sum softmax(teacher) * log_softmax(student)`` over
  the last dimension, averaged over every other position.

Features are compared in float32 whatever their dtype. On a padded batch the criteria
call every loss (these and any plugin's) with the per-token features at the real
positions only (:mod:`autokd_tensorflow.padding`), so the averages are over real tokens.
"""

from __future__ import annotations

from . import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tensorflow as tf  # noqa: E402

__all__ = ["mse", "l1", "kl", "ce", "LOSSES"]


def _pair(student, teacher, name: str):
    student = tf.cast(student, tf.float32)
    teacher = tf.cast(teacher, tf.float32)
    if student.shape.rank is not None and teacher.shape.rank is not None:
        if not student.shape.is_compatible_with(teacher.shape):
            raise ValueError(
                f"{name} loss: the student feature has shape {student.shape.as_list()} and the teacher feature "
                f"{teacher.shape.as_list()}; map them onto each other (a feature matcher fixes only the last "
                f"dimension) or pick features of the same shape"
            )
    return student, teacher


def mse(student, teacher):
    """Mean squared error over every element."""
    student, teacher = _pair(student, teacher, "MSE")
    return tf.reduce_mean(tf.square(student - teacher))


def l1(student, teacher):
    """Mean absolute error over every element."""
    student, teacher = _pair(student, teacher, "L1")
    return tf.reduce_mean(tf.abs(student - teacher))


def kl(student, teacher):
    """KL(softmax(teacher) || softmax(student)) over the last dimension, averaged over the
    other positions."""
    student, teacher = _pair(student, teacher, "KL")
    log_p_student = tf.nn.log_softmax(student, axis=-1)
    log_p_teacher = tf.nn.log_softmax(teacher, axis=-1)
    per_position = tf.reduce_sum(tf.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    return tf.reduce_mean(per_position)


def ce(student, teacher):
    """Cross entropy of the student's distribution against the teacher's soft targets over
    the last dimension, averaged over the other positions."""
    student, teacher = _pair(student, teacher, "CE")
    per_position = -tf.reduce_sum(tf.nn.softmax(teacher, axis=-1) * tf.nn.log_softmax(student, axis=-1), axis=-1)
    return tf.reduce_mean(per_position)


LOSSES = {"MSE": mse, "L1": l1, "KL": kl, "CE": ce}
