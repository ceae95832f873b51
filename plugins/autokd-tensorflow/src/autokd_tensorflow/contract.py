"""The criterion contract of the TensorFlow backend, public: what a criterion given to
:class:`~autokd_tensorflow.Distiller` (``criterion=``) or registered with
``register_criteria(register)`` for ``"tensorflow"`` implements. The built-in criteria
(:mod:`autokd_tensorflow.criteria`) derive from it; docs/plugins.md describes each method.

Per stage the distiller calls ``attach(student, teacher)``; once, eagerly, on the first
batch ``forward_teacher(inputs)``, ``forward_student(inputs, training=False)`` and
``build(student_features, teacher_features)`` (create what depends on feature shapes, e.g.
feature matchers); then per training step (traced into Keras' train function)
``forward_teacher``, ``forward_student(inputs, training=True)`` and ``compute(...)`` for
the loss, whose gradient trains the stage's block and ``trainable_variables``; finally
``detach()``.
"""

from __future__ import annotations

from .criteria import _Criterion as DistillationCriterion

__all__ = ["DistillationCriterion"]
