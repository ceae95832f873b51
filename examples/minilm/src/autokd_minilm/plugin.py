"""The example's plugin: a ``CosineDistance`` loss, used by name in the config's
``loss_types`` exactly as a third-party loss would be."""

from __future__ import annotations

import autokd


def cosine_distance(student_feature, teacher_feature):
    """Mean of ``1 - cos(student, teacher)`` over the last dimension, averaged over every
    other position: on a padded batch the backend passes the real positions only
    (docs/plugins.md), so this is the mean over real tokens without a mask here."""
    import torch.nn.functional as F

    return (1.0 - F.cosine_similarity(student_feature, teacher_feature, dim=-1)).mean()


@autokd.hookimpl
def register_losses(register):
    register("CosineDistance", cosine_distance, "pytorch")
