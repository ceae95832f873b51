"""``autokd_torch.Trainer``: ``transformers.Trainer`` with ``autodistillation``.

OOB mode (the design's first usage): the built-in model builder copies the Trainer's
model's config with the searched parameters applied, the built-in train function runs the
flash and regular stages on ``train_dataset`` (with the Trainer's ``data_collator``), and
the built-in eval function reports ``eval_loss``, ``accuracy`` and ``compute_metrics``
on ``eval_dataset``. Advanced mode: any of ``model_builder``, ``train_func`` and
``eval_func`` are the user's.

The optimizer and batch size come from the config's ``train`` section when it has one,
else from the ``TrainingArguments`` (AdamW with ``learning_rate`` and ``weight_decay``,
``per_device_train_batch_size``). Results go to ``args.output_dir``, and so do the files
of the teacher-output cache (``teacher_cache/``) when its outputs outgrow the memory
budget.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import transformers

from autokd import AutoDistillation, Config, load_config
from autokd.config import TrainConfig

from .backend import builtin_builder, example_inputs
from .evaluate import EvalFunc
from .train import FlashDistillationTrainFunc

__all__ = ["Trainer"]


class Trainer(transformers.Trainer):
    """A ``transformers.Trainer`` that searches student architectures by distillation.

    :ivar autodistillation_config: a dict of any layout of the design (e.g. ``search``
        and ``flash_distillation.{knowledge_transfer, regular_distillation}``), a YAML
        path or a config object.
    :ivar autodistillation_agent: the :class:`autokd.AutoDistillation` of the last search
        (its ``search_result`` and ``pareto_front``).
    """

    def __init__(self, *args: Any, autodistillation_config: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.autodistillation_config = autodistillation_config
        self.autodistillation_agent: AutoDistillation | None = None

    # --- the design's built-ins ---------------------------------------------------------
    def model_builder_builtin(self, model_arch_paras: dict, model_cls: Any = None, teacher_model: Any = None) -> Any:
        """A student: the Trainer's model's config with ``model_arch_paras`` applied,
        built by ``model_cls`` (default: the Trainer's model's class)."""
        return self._builtin_builder(model_cls, teacher_model)(model_arch_paras)

    def _builtin_builder(self, model_cls: Any, teacher_model: Any):
        """The built-in ``model_builder(arch)``; one per search, so what it prepares once
        (e.g. the teacher's statistics for a ``pca_hidden`` basis) serves every trial."""
        defaults = {"base_config": self.model.config, "model_cls": type(self.model)}
        overrides = {} if model_cls is None else {"model_cls": model_cls}
        return builtin_builder(
            self._config(),
            teacher_model,
            defaults=defaults,
            overrides=overrides,
            train_data=self.train_dataset,
            data_collator=self.data_collator,
        )

    def _config(self) -> Config:
        if self.autodistillation_config is None:
            raise ValueError("set trainer.autodistillation_config before trainer.autodistillation(...)")
        return load_config(self.autodistillation_config, framework="pytorch")

    def _train_settings(self, config: Config) -> tuple[dict, int]:
        if config.train != TrainConfig():
            return dict(config.train.optimizer), config.train.batch_size
        args = self.args
        optimizer = {"AdamW": {"learning_rate": args.learning_rate, "weight_decay": args.weight_decay}}
        return optimizer, args.per_device_train_batch_size

    def _dataset(self, dataset: Any, description: str) -> Any:
        # datasets.Dataset columns the model does not take (e.g. raw text) would break collation
        if dataset is not None and hasattr(dataset, "column_names") and hasattr(self, "_remove_unused_columns"):
            return self._remove_unused_columns(dataset, description=description)
        return dataset

    def autodistillation(
        self,
        teacher_model: Any,
        model_builder: Callable | None = None,
        model_cls: Any = None,
        train_func: Callable | None = None,
        eval_func: Callable | None = None,
        resume: bool = False,
    ) -> dict | None:
        """Search the student architecture; returns ``best_model_arch``.

        :param teacher_model: the teacher (kept frozen, in eval mode).
        :param model_builder: ``model_builder(arch) -> model``; default the built-in one
            with ``model_cls``.
        :param train_func: ``train_func(model) -> model``; default flash + regular
            distillation on ``train_dataset``.
        :param eval_func: ``eval_func(model) -> metrics``; default :class:`EvalFunc` on
            ``eval_dataset`` with ``compute_metrics``.
        :param resume: continue the search recorded in ``args.output_dir``.
        """
        config = self._config()
        teacher_model.eval()
        seed = config.search.seed if config.search.seed is not None else self.args.seed
        if model_builder is None:
            model_builder = self._builtin_builder(model_cls, teacher_model)
        train_dataset = self._dataset(self.train_dataset, "training")
        eval_dataset = self._dataset(self.eval_dataset, "evaluation")
        optimizer, batch_size = self._train_settings(config)
        if train_func is None:
            train_func = FlashDistillationTrainFunc(
                config,
                teacher_model,
                train_dataset,
                data_collator=self.data_collator,
                batch_size=batch_size,
                optimizer=optimizer,
                seed=seed,
                show_progress=not self.args.disable_tqdm,
                output_dir=self.args.output_dir,
            )
        if eval_func is None:
            eval_func = EvalFunc(
                eval_dataset,
                metrics=list(config.search.metrics) + list(config.evaluation.record),
                batch_size=self.args.per_device_eval_batch_size,
                data_collator=self.data_collator,
                compute_metrics=self.compute_metrics,
            )
        agent = AutoDistillation(model_builder, config)
        agent.train_func = train_func
        agent.eval_func = eval_func
        data = train_dataset if train_dataset is not None else eval_dataset
        agent.example_inputs = example_inputs(data, batch_size, self.data_collator)
        agent.eval_data = eval_dataset
        agent.show_progress = not self.args.disable_tqdm
        agent.teacher = teacher_model  # output.save: the card's teacher metrics, its tokenizer
        self.autodistillation_agent = agent
        os.makedirs(self.args.output_dir, exist_ok=True)
        return agent.search_loop(self.args.output_dir, resume=resume)
