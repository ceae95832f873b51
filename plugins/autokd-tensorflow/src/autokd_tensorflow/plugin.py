"""The ``tensorflow`` entry point of autokd: what this distribution registers.

Importing this module must stay cheap (``autokd plugins`` imports every plugin), so
nothing here imports TensorFlow: each registration is an :class:`autokd.LazyObject` that
imports its module on first use.
"""

from __future__ import annotations

import autokd
from autokd import lazy_object

FRAMEWORK = "tensorflow"


@autokd.hookimpl
def register_losses(register):
    for name, fn in (("MSE", "mse"), ("L1", "l1"), ("KL", "kl"), ("CE", "ce")):
        register(name, lazy_object(f"autokd_tensorflow.losses:{fn}"), FRAMEWORK)


@autokd.hookimpl
def register_criteria(register):
    for name in ("KnowledgeDistillationLoss", "IntermediateLayersKnowledgeDistillationLoss"):
        register(name, lazy_object(f"autokd_tensorflow.criteria:{name}"), FRAMEWORK)


@autokd.hookimpl
def register_model_builders(register):
    register("transformers", lazy_object("autokd_tensorflow.builders:build_transformers_model"), framework=FRAMEWORK)


@autokd.hookimpl
def register_trainers(register):
    from .backend import TensorFlowBackend  # TensorFlow-free module

    register(FRAMEWORK, TensorFlowBackend())


@autokd.hookimpl
def register_evaluators(register):
    register(
        "accuracy",
        lazy_object("autokd_tensorflow.evaluation:accuracy_evaluator"),
        framework=FRAMEWORK,
        higher_is_better=True,
    )
    register(
        "eval_loss",
        lazy_object("autokd_tensorflow.evaluation:eval_loss_evaluator"),
        framework=FRAMEWORK,
        higher_is_better=False,
    )
