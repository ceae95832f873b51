"""``autokd_torch.Trainer``: ``transformers.Trainer`` with ``autodistillation``.

OOB mode (the design's first usage): the built-in model builder copies the Trainer's
model's config with the searched parameters applied, the built-in train function runs the
flash and regular stages on ``train_dataset`` (with the Trainer's ``data_collator``), and
the built-in eval function reports ``eval_loss``, ``accuracy`` and ``compute_metrics``
on ``eval_dataset``. Advanced mode: any of ``model_builder``, ``train_func`` and
``eval_func`` are the user's.

Training follows the ``TrainingArguments`` (:meth:`Trainer.autodistillation_train_config`):
the device, ``fp16`` / ``bf16``, ``gradient_accumulation_steps``, the optimizer
(``optim``, ``learning_rate``, ``weight_decay``, ``adam_beta1/2``, ``adam_epsilon``),
``lr_scheduler_type`` with its warm-up, ``max_grad_norm``, ``seed``, the per-device
batch sizes and the data loader's workers and pinning; the config's ``train`` section
overrides only the fields it sets. Each stage's losses and each trial's metrics go to
``Trainer.log`` (its log history and callbacks: TensorBoard, W&B, ...). Results go to
``args.output_dir``, and so do the files of the teacher-output cache (``teacher_cache/``)
when its outputs outgrow the memory budget.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs
import transformers

from autokd import (
    LR_SCHEDULER_TYPES,
    AutoDistillation,
    Config,
    ConfigError,
    LRSchedulerConfig,
    TrainConfig,
    load_config,
)

from .backend import builtin_builder, example_inputs
from .engine import Engine
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

    def autodistillation_train_config(self, config: Config | None = None) -> TrainConfig:
        """The ``train`` settings of a search: the ``TrainingArguments``, with the fields
        that the config's ``train`` section sets on top."""
        config = config or self._config()
        from_args = _train_config_from_args(self.args)
        overrides = {name: getattr(config.train, name) for name in config.train.set_fields()}
        return attrs.evolve(from_args, **overrides)

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
        train = self.autodistillation_train_config(config)
        engine = Engine(train)  # refuses what this machine cannot run, before any training
        batch_size = train.batch_size
        if train_func is None:
            train_func = FlashDistillationTrainFunc(
                config,
                teacher_model,
                train_dataset,
                data_collator=self.data_collator,
                seed=seed,
                show_progress=not self.args.disable_tqdm,
                output_dir=self.args.output_dir,
                train_config=train,
                num_workers=self.args.dataloader_num_workers,
                pin_memory=self.args.dataloader_pin_memory,
            )
        if eval_func is None:
            eval_func = EvalFunc(
                eval_dataset,
                metrics=list(config.search.metrics) + list(config.evaluation.record),
                batch_size=self.args.per_device_eval_batch_size,
                data_collator=self.data_collator,
                compute_metrics=self.compute_metrics,
                engine=engine,
            )
        agent = AutoDistillation(model_builder, config)
        agent.train_func = _LoggedTrain(self, train_func)
        agent.eval_func = _LoggedEval(self, eval_func)
        data = train_dataset if train_dataset is not None else eval_dataset
        agent.example_inputs = example_inputs(data, batch_size, self.data_collator)
        agent.eval_data = eval_dataset
        agent.show_progress = not self.args.disable_tqdm
        agent.teacher = teacher_model  # output.save: the card's teacher metrics, its tokenizer
        self.autodistillation_agent = agent
        os.makedirs(self.args.output_dir, exist_ok=True)
        return agent.search_loop(self.args.output_dir, resume=resume)


# ``optim`` of TrainingArguments: the optimizers autokd builds (``train.optimizer`` names)
_OPTIMS = {
    "adamw_torch": "AdamW",
    "adamw_torch_fused": "AdamW",
    "adamw_hf": "AdamW",
    "adam": "Adam",
    "sgd": "SGD",
    "adagrad": "Adagrad",
    "rmsprop": "RMSprop",
    "adafactor": "Adafactor",
}


def _train_config_from_args(args: transformers.TrainingArguments) -> TrainConfig:
    """A ``train`` section saying what ``args`` says."""
    optim = getattr(args.optim, "value", args.optim)
    name = _OPTIMS.get(optim)
    if name is None:
        raise ConfigError(
            f"TrainingArguments.optim: {optim!r} is not supported by autokd's distillation; use one of "
            f"{', '.join(_OPTIMS)} (or set train.optimizer in the autodistillation config)"
        )
    arguments: dict[str, Any] = {"learning_rate": args.learning_rate, "weight_decay": args.weight_decay}
    if name in ("AdamW", "Adam"):
        arguments.update(betas=[args.adam_beta1, args.adam_beta2], eps=args.adam_epsilon)
    elif name == "Adafactor":  # as transformers.Trainer builds it: a fixed learning rate
        arguments.update(scale_parameter=False, relative_step=False)
    sampling = getattr(args, "train_sampling_strategy", None)  # transformers 5
    sampling = getattr(sampling, "value", sampling)
    if sampling not in (None, "random", "group_by_length"):
        raise ConfigError(
            f"TrainingArguments.train_sampling_strategy: {sampling!r} is not supported by autokd's distillation; use "
            f"random (shuffled batches) or group_by_length (batches of similar length)"
        )
    schedule = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    if schedule == "warmup_stable_decay":  # its decay is in steps of one run; each stage needs a share of its own
        raise ConfigError(
            "TrainingArguments.lr_scheduler_type: 'warmup_stable_decay' is set in the autodistillation config for "
            "autokd's stages: train.lr_scheduler: {type: warmup_stable_decay, decay_ratio: 0.2} (a share of each "
            "stage's steps); keep TrainingArguments' linear default"
        )
    if schedule not in LR_SCHEDULER_TYPES:
        raise ConfigError(
            f"TrainingArguments.lr_scheduler_type: {schedule!r} is not supported by autokd's distillation; use one of "
            f"{', '.join(LR_SCHEDULER_TYPES)}"
        )
    warmup_ratio, warmup_steps = getattr(args, "warmup_ratio", 0) or None, None
    if args.warmup_steps and args.warmup_steps >= 1:
        warmup_steps = int(args.warmup_steps)
    elif args.warmup_steps:  # transformers 5: a float below 1 is a ratio
        warmup_ratio = float(args.warmup_steps)
    if schedule == "constant" and (warmup_ratio or warmup_steps):
        schedule = "constant_with_warmup"
    device = args.device
    if args.use_cpu or device.type == "cpu":
        where = "cpu"
    elif device.type == "cuda" and args.world_size == 1 and device.index is not None:
        where = f"cuda:{device.index}"
    else:
        where = device.type
    return TrainConfig(
        optimizer={name: arguments},
        batch_size=args.per_device_train_batch_size * max(1, args.world_size),  # each process its share
        device=where,
        mixed_precision="bf16" if args.bf16 else "fp16" if args.fp16 else "no",
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_grad_norm=args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else None,
        lr_scheduler=LRSchedulerConfig(
            schedule, warmup_ratio=None if warmup_steps else warmup_ratio, warmup_steps=warmup_steps
        ),
        # transformers 5: train_sampling_strategy; 4: group_by_length
        group_by_length=sampling == "group_by_length" or bool(getattr(args, "group_by_length", False)),
    )


class _LoggedTrain:
    """The train function, with each stage's losses sent to ``Trainer.log``."""

    def __init__(self, trainer: Trainer, train_func: Callable):
        self.trainer, self.train_func = trainer, train_func
        self.supports_budget = getattr(train_func, "supports_budget", False)
        self.trials = 0

    def __call__(self, model: Any, *args: Any, **kwargs: Any) -> Any:
        trained = self.train_func(model, *args, **kwargs)
        self.trials += 1
        for stage in getattr(self.train_func, "last_stages", []):
            self.trainer.log(
                {
                    "autokd_trial": self.trials,
                    f"autokd/{stage['name']}/first_loss": stage["first_loss"],
                    f"autokd/{stage['name']}/last_loss": stage["last_loss"],
                    f"autokd/{stage['name']}/steps": stage["steps"],
                }
            )
        return trained


class _LoggedEval:
    """The eval function, with each trial's metrics sent to ``Trainer.log``."""

    def __init__(self, trainer: Trainer, eval_func: Callable):
        self.trainer, self.eval_func = trainer, eval_func

    def __call__(self, model: Any) -> Any:
        metrics = self.eval_func(model)
        if isinstance(metrics, dict):
            numbers = {f"autokd/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)}
            self.trainer.log(numbers)
        return metrics
