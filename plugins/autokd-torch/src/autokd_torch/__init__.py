"""autokd-torch: the PyTorch backend of autokd.

Distillation criteria (``KnowledgeDistillationLoss``,
``IntermediateLayersKnowledgeDistillationLoss``), feature capture, ``Distillation`` and
``Scheduler``, the built-in flash + regular distillation train function, the
``transformers`` model builder, evaluators and ``Trainer.autodistillation``.

Importing this package is cheap: the public names below are imported on first use, so
the ``autokd`` plugin entry point (``autokd_torch.plugin``) does not pull in torch.
"""

from __future__ import annotations

from autokd import lazy_module_attrs

__version__ = "0.1.0"

_EXPORTS = {
    "KnowledgeDistillationLoss": "criteria",
    "IntermediateLayersKnowledgeDistillationLoss": "criteria",
    "DistillationCriterion": "criteria",
    "Distillation": "distillation",
    "Scheduler": "distillation",
    "FlashDistillationTrainFunc": "train",
    "Trainer": "trainer",
    "TorchBackend": "backend",
    "BasisData": "backend",
    "by_length": "data",
    "EvalFunc": "evaluate",
    "Engine": "engine",
    "transformers_builder": "builder",
    "FeatureCapture": "features",
    "TeacherForward": "teacher",
    "TeacherOutputs": "teacher",
    "TeacherOutputCache": "cache",
    "kl_divergence": "losses",
    "soft_cross_entropy": "losses",
    "mse": "losses",
    "l1": "losses",
    "load_student": "saving",
    "save_student": "saving",
    "save_sentence_encoder": "saving",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__, __dir__ = lazy_module_attrs(__name__, _EXPORTS)
