"""autokd-tensorflow: the TensorFlow/Keras backend of autokd.

- :class:`TFOptimization` with ``autodistill`` (the design's TensorFlow API) and its
  config classes :class:`AutoDistillationConfig`, :class:`TFDistillationConfig` and
  :class:`metrics.Metric`;
- criteria :class:`KnowledgeDistillationLoss` and
  :class:`IntermediateLayersKnowledgeDistillationLoss`, losses ``MSE``, ``L1``, ``KL``,
  ``CE`` (:mod:`autokd_tensorflow.losses`);
- flash then regular distillation through Keras ``fit``: :class:`Distiller`,
  :class:`Scheduler`, :func:`distill` (with budgets that continue a candidate's stages),
  the engine settings of ``train`` (:func:`engine_settings`), the teacher-output cache
  (:class:`TeacherForward`) and the criterion contract (:class:`DistillationCriterion`);
- the transformers TF model builder, the safetensors teacher loader, evaluation.

Importing the package does not import TensorFlow; the names below load their modules on
first access. ``TF_USE_LEGACY_KERAS=1`` is set (unless already set) before TensorFlow is
first imported through this package, because transformers' TF models are Keras 2 models.
"""

from __future__ import annotations

from autokd import lazy_module_attrs
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "TFOptimization": "optimization",
    "AutoDistillationConfig": "config",
    "TFDistillationConfig": "config",
    "metrics": None,
    "DistillationCriterion": "contract",
    "KnowledgeDistillationLoss": "criteria",
    "IntermediateLayersKnowledgeDistillationLoss": "criteria",
    "Distiller": "distillation",
    "Scheduler": "distillation",
    "StageResult": "distillation",
    "distill": "distillation",
    "make_optimizer": "optimizers",
    "FeatureExtractor": "features",
    "build_transformers_model": "builders",
    "load_model": "loading",
    "load_safetensors_model": "loading",
    "evaluate": "evaluation",
    "initialize_from_teacher": "init_from_teacher",
    "as_dataset": "data",
    "TeacherForward": "teacher",
    "engine_settings": "engine",
    "TensorFlowBackend": "backend",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from . import metrics
    from .backend import TensorFlowBackend
    from .builders import build_transformers_model
    from .config import AutoDistillationConfig, TFDistillationConfig
    from .contract import DistillationCriterion
    from .criteria import IntermediateLayersKnowledgeDistillationLoss, KnowledgeDistillationLoss
    from .data import as_dataset
    from .distillation import Distiller, Scheduler, StageResult, distill
    from .optimizers import make_optimizer
    from .engine import engine_settings
    from .evaluation import evaluate
    from .init_from_teacher import initialize_from_teacher
    from .features import FeatureExtractor
    from .loading import load_model, load_safetensors_model
    from .optimization import TFOptimization
    from .teacher import TeacherForward


__getattr__, __dir__ = lazy_module_attrs(__name__, _EXPORTS)
