"""``TFOptimization``: the design's TensorFlow entry point, with ``autodistill``.

::

    optimizer = TFOptimization(model=model, args=args, train_dataset=train_dataset,
                               eval_dataset=eval_dataset, compute_metrics=compute_metrics)
    best_model_arch = optimizer.autodistill(autodistillation_config, teacher_model,
                                            model_cls=TFAutoModelForSequenceClassification)

``autodistill`` runs :class:`autokd.AutoDistillation` with the built-in model builder
(a copy of ``model.config`` with each trial's architecture parameters, then
``model_cls.from_config``), the built-in train function (flash then regular
distillation, :func:`autokd_tensorflow.distill`) and the built-in eval function
(:func:`autokd_tensorflow.evaluate` with ``compute_metrics``), unless given others.
Metrics the eval function does not return (``latency``...) come from registered
evaluators, timed on the first evaluation batch.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from autokd import AutoDistillation, ConfigError, record_extra
from autokd.distill import is_template

from .builders import apply_arch, resolve_model_cls
from .data import as_dataset, first_inputs
from .distillation import distill, make_criterion
from .engine import engine_settings, precision_policy
from .evaluation import evaluate
from .teacher import TeacherForward

__all__ = ["TFOptimization"]

log = logging.getLogger("autokd.tensorflow")


def _arg(args: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(args, name, None) if args is not None else None
        if value is not None:
            return value
    return default


def validate_stages(config) -> None:
    """Build every stage's criterion once, so a bad stage stops the search before the
    first trial instead of failing every trial."""
    auto = config.auto_distillation
    for kind, stages in (("flash_distillation", auto.flash_stages()), ("regular_distillation", auto.regular_stages())):
        for i, stage in enumerate(stages):
            if is_template(stage):
                raise ConfigError(
                    f"auto_distillation.{kind}" + (f"[{i}]" if len(stages) > 1 else "") + ": {i}/{t} stage "
                    "templates are expanded by autokd-torch only; for the tensorflow backend write one flash "
                    "stage per student layer (block_names and layer mappings with the layer numbers)"
                )
            make_criterion(stage, f"auto_distillation.{kind}" + (f"[{i}]" if len(stages) > 1 else ""))


class TFOptimization:
    """Optimisation of a Keras / transformers TF model.

    :param model: the model whose config students are built from (built-in builder).
    :param args: training arguments (``transformers.TFTrainingArguments`` or any object
        with ``output_dir``, ``per_device_train_batch_size``,
        ``per_device_eval_batch_size``, ``learning_rate``); all optional.
    :param train_dataset: training data (a batched ``tf.data.Dataset`` of ``(inputs,
        labels)``, a dict of arrays, or an ``(inputs, labels)`` pair).
    :param eval_dataset: evaluation data, same forms.
    :param compute_metrics: ``compute_metrics(EvalPrediction) -> dict``.
    :param optimizer: a tf-keras optimizer whose class and settings each stage copies, or
        a config spec ``{'Adam': {'learning_rate': 1e-3}}``. Without it, stages use the
        config's ``train.optimizer`` with ``args.learning_rate`` (when set) as learning
        rate.
    :param callbacks: Keras callbacks given to every stage's ``fit`` (``TensorBoard``,
        ``EarlyStopping``, your own: each step's ``logs['loss']`` is the stage's loss).
    """

    def __init__(
        self,
        model: Any = None,
        args: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        compute_metrics: Callable | None = None,
        optimizer: Any = None,
        callbacks: Any = None,
    ):
        self.model = model
        self.callbacks = list(callbacks or ())
        self.args = args
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.compute_metrics = compute_metrics
        self.optimizer = optimizer
        self.autodistillation_config = None
        self.autodistillation_agent: AutoDistillation | None = None
        self.stage_results: list = []

    # --- settings from args -----------------------------------------------------------
    @property
    def output_dir(self) -> str:
        return os.fspath(_arg(self.args, "output_dir", default="autokd-output"))

    @property
    def train_batch_size(self) -> int:
        return int(_arg(self.args, "per_device_train_batch_size", "train_batch_size", "batch_size", default=32))

    @property
    def eval_batch_size(self) -> int:
        return int(_arg(self.args, "per_device_eval_batch_size", "eval_batch_size", "batch_size", default=32))

    # --- built-ins ----------------------------------------------------------------------
    def model_builder_builtin(self, model_arch_paras: dict, model_cls: Any = None):
        """A student of ``model_cls`` from a copy of ``self.model.config`` with the
        architecture parameters applied."""
        base = getattr(self.model, "config", None)
        if base is None:
            raise ConfigError(
                "model: the built-in model builder copies model.config, but TFOptimization's model has no "
                "transformers config: pass model_builder=your_function(arch) instead"
            )
        config = apply_arch(base, model_arch_paras)
        cls = resolve_model_cls(model_cls)
        student = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
        student(student.dummy_inputs, training=False)
        record_extra("student_parameters", int(student.count_params()))
        return student

    def autodistill(
        self,
        autodistillation_config: Any,
        teacher_model: Any,
        model_builder: Callable | None = None,
        model_cls: Any = None,
        train_func: Callable | None = None,
        eval_func: Callable | None = None,
        resume: bool = False,
    ):
        """Search the student architecture; returns ``best_model_arch``.

        :param autodistillation_config: an :class:`AutoDistillationConfig`, a dict or
            YAML path of any layout the core reads.
        :param teacher_model: the trained teacher (a Keras model, or a model folder /
            import string that :func:`autokd_tensorflow.load_model` loads).
        :param model_builder: ``model_builder(arch) -> model``; without it the built-in
            builder makes ``model_cls`` students from ``self.model.config``.
        :param model_cls: the student class of the built-in builder, e.g.
            ``TFAutoModelForSequenceClassification``.
        :param train_func: ``train_func(model) -> model`` (or ``train_func(model,
            budget)`` in a multi-fidelity search); default: the configured flash then
            regular distillation on ``train_dataset``.
        :param eval_func: ``eval_func(model) -> dict of metrics``; default: evaluation on
            ``eval_dataset``.

        ``train_func`` and ``eval_func`` come in the order of autokd-torch's
        ``Trainer.autodistillation``; the design's order (``eval_func`` first) works when
        they are given by keyword, as the design's examples do.

        The agent stays at ``self.autodistillation_agent`` (its ``search_result`` and
        ``pareto_front``).
        """
        from .loading import load_model

        self.autodistillation_config = autodistillation_config
        if model_builder is None:
            if model_cls is None:
                raise ConfigError(
                    "model_cls: give model_cls to use the built-in model builder "
                    "(e.g. model_cls=TFAutoModelForSequenceClassification), or pass your own model_builder(arch)"
                )
            model_builder = functools.partial(self.model_builder_builtin, model_cls=model_cls)
        agent = AutoDistillation(model_builder, autodistillation_config, framework="tensorflow")
        config = agent.config
        settings = engine_settings(config.train)  # refused settings stop the search before any trial
        if settings.policy is not None:
            build = agent.model_builder

            def model_builder_in_policy(arch):
                # a Keras layer takes its mixed-precision policy when it is made
                with precision_policy(settings.policy):
                    return build(arch)

            agent.model_builder = model_builder_in_policy
        teacher = load_model(teacher_model, field="teacher_model") if train_func is None else teacher_model

        if train_func is None:
            if self.train_dataset is None:
                raise ConfigError("train_dataset: the built-in train function needs TFOptimization(train_dataset=...)")
            validate_stages(config)
            train_data = self.train_dataset
            if not isinstance(train_data, dict | tuple | list):  # arrays stay arrays: the teacher cache keys by example
                train_data = as_dataset(train_data, self.train_batch_size, "train_dataset")
            teacher_forward = TeacherForward(teacher, cache=config.train.teacher_cache, output_dir=self.output_dir)
            flash, regular = config.auto_distillation.flash_stages(), config.auto_distillation.regular_stages()
            if not flash and not regular:
                raise ConfigError(
                    "knowledge_transfer / regular_distillation: no distillation stage configured; give at least one "
                    "TFDistillationConfig, or pass your own train_func"
                )
            optimizer = self.optimizer if self.optimizer is not None else config.train.optimizer
            learning_rate = _arg(self.args, "learning_rate") if self.optimizer is None else None

            def train_func_builtin(model, budget=None):
                results = distill(
                    model,
                    teacher,
                    flash,
                    regular,
                    train_data,
                    optimizer,
                    self.train_batch_size,
                    learning_rate,
                    budget=budget,
                    callbacks=self.callbacks,
                    settings=settings,
                    teacher_forward=teacher_forward,
                )
                self.stage_results = results
                record_extra("distillation", [r.to_dict() for r in results])
                record_extra("train", settings.record(self.train_batch_size))
                return model

            train_func = train_func_builtin

        eval_data = None
        if self.eval_dataset is not None:
            eval_data = as_dataset(self.eval_dataset, self.eval_batch_size, "eval_dataset")
            agent.example_inputs = first_inputs(eval_data)
            agent.eval_data = eval_data
        if eval_func is None:
            if eval_data is None:
                raise ConfigError("eval_dataset: the built-in eval function needs TFOptimization(eval_dataset=...)")

            def eval_func_builtin(model):
                return evaluate(model, eval_data, self.compute_metrics, self.eval_batch_size)

            eval_func = eval_func_builtin

        agent.framework = "tensorflow"
        agent.train_func = train_func
        agent.eval_func = eval_func
        agent.teacher = teacher_model  # output.save: the card's teacher metrics
        self.autodistillation_agent = agent
        os.makedirs(self.output_dir, exist_ok=True)
        return agent.search(self.output_dir, model_cls, resume=resume)
