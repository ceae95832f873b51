"""The ``torch`` entry point of the ``autokd`` group: what autokd-torch registers.

Nothing here imports torch or transformers: ``autokd plugins`` imports every plugin to
list it. Each registration is an :class:`autokd.LazyObject` that imports its target on first use.
"""

from __future__ import annotations

import autokd
from autokd import lazy_object

FRAMEWORK = "pytorch"


@autokd.hookimpl
def register_losses(register):
    for name, fn in (("KL", "kl_divergence"), ("CE", "soft_cross_entropy"), ("MSE", "mse"), ("L1", "l1")):
        register(name, lazy_object(f"autokd_torch.losses:{fn}"), FRAMEWORK)


@autokd.hookimpl
def register_criteria(register):
    for name in ("KnowledgeDistillationLoss", "IntermediateLayersKnowledgeDistillationLoss"):
        register(name, lazy_object(f"autokd_torch.criteria:{name}"), FRAMEWORK)


@autokd.hookimpl
def register_model_builders(register):
    register("transformers", lazy_object("autokd_torch.builder:transformers_builder"), FRAMEWORK)


@autokd.hookimpl
def register_evaluators(register):
    register("eval_loss", lazy_object("autokd_torch.evaluate:eval_loss_evaluator"), FRAMEWORK, higher_is_better=False)
    register("accuracy", lazy_object("autokd_torch.evaluate:accuracy_evaluator"), FRAMEWORK, higher_is_better=True)


@autokd.hookimpl
def register_trainers(register):
    register(FRAMEWORK, lazy_object("autokd_torch.backend:BACKEND"))
