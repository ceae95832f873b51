"""The ``tensorflow`` trainer backend: the functions ``autokd run`` needs for a config
whose ``model.framework`` is ``tensorflow``.

- teacher: ``model.teacher``, an import string of a function returning the model or a
  model folder (safetensors weights load without torch);
- data: ``data.train`` / ``data.eval``, import strings of functions returning a batched
  ``tf.data.Dataset`` or a dict of arrays (called with ``data.options``);
- student builder: ``model.builder`` (default ``transformers``) with
  ``model.builder_options`` (``model_cls``, ``base_config``; the teacher's class and
  config by default);
- train: the configured flash then regular stages with ``train.optimizer``,
  ``train.batch_size`` and the engine settings (``train.mixed_precision``,
  ``gradient_accumulation_steps``, ``max_grad_norm``, ``lr_scheduler``; see
  :mod:`autokd_tensorflow.engine`), continuing a candidate's stages across the budgets
  of a multi-fidelity search; eval: ``eval_loss`` and ``accuracy`` on the eval data.

This module does not import TensorFlow (the plugin module imports it to register the
backend); the work happens in :meth:`TensorFlowBackend.search_functions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autokd import ConfigError, SearchFunctions

__all__ = ["TensorFlowBackend"]


class TensorFlowBackend:
    """``autokd.Backend`` for TensorFlow / Keras models."""

    framework = "tensorflow"
    # the built-in train function takes train_func(model, budget) and continues a student
    supports_budget = True

    def search_functions(
        self,
        config,
        *,
        output_dir: str,
        model_builder: Callable | None = None,
        train_func: Callable | None = None,
        eval_func: Callable | None = None,
    ) -> SearchFunctions:
        from autokd import record_extra, registry
        from autokd import import_object

        from .data import array_slices, as_dataset, first_inputs
        from .distillation import distill
        from .engine import engine_settings, precision_policy
        from .evaluation import evaluate
        from .loading import load_model
        from .optimization import validate_stages
        from .teacher import TeacherForward

        batch_size = config.train.batch_size
        settings = engine_settings(config.train)  # refused settings stop the search before any trial
        eval_batch_size = config.evaluation.batch_size or batch_size
        options = dict(config.data.options)

        def dataset(field: str, spec: str | None):
            if spec is None:
                return None
            data = import_object(spec, field)
            if callable(data):
                data = data(**options)
            if field == "data.train":
                batched = as_dataset(data, batch_size, field)  # refuses data of a wrong form before any trial
                # arrays stay arrays: distill() batches them, and the teacher cache keys them by example
                return data if array_slices(data) is not None else batched
            return as_dataset(data, eval_batch_size, field)

        teacher = None
        needs_teacher = train_func is None or (
            model_builder is None and not config.model.builder_options.get("base_config")
        )
        if needs_teacher:
            if config.model.teacher is None:
                raise ConfigError(
                    "model.teacher: required by the tensorflow backend's built-in train function and builder: "
                    "an import string 'module:function' returning the teacher, or a model folder"
                )
            teacher = load_model(config.model.teacher, field="model.teacher")

        if model_builder is None:
            name = config.model.builder or "transformers"
            builder = registry().model_builders.get(name, "tensorflow")
            builder_options = dict(config.model.builder_options)
            if name == "transformers" and teacher is not None:
                builder_options.setdefault("base_config", getattr(teacher, "config", None))
                builder_options.setdefault("model_cls", type(teacher))

            def model_builder(arch, _builder=builder, _options=builder_options):
                return _builder(arch, **_options)

        if settings.policy is not None:
            # a Keras layer takes its mixed-precision policy when it is made
            def model_builder(arch, _build=model_builder):
                with precision_policy(settings.policy):
                    return _build(arch)

        eval_data = dataset("data.eval", config.data.eval)
        if train_func is None:
            train_data = dataset("data.train", config.data.train)
            if train_data is None:
                raise ConfigError(
                    "data.train: required by the tensorflow backend's built-in train function: "
                    "an import string 'module:function' returning the training data"
                )
            validate_stages(config)
            flash = config.auto_distillation.flash_stages()
            regular = config.auto_distillation.regular_stages()
            if not flash and not regular:
                raise ConfigError(
                    "auto_distillation.flash_distillation: no distillation stage configured; "
                    "configure flash_distillation or regular_distillation, or give train.function"
                )

            # one teacher-output cache for every trial of the search (train.teacher_cache)
            teacher_forward = TeacherForward(teacher, cache=config.train.teacher_cache, output_dir=output_dir)

            def train_func(model, budget=None):
                results = distill(
                    model,
                    teacher,
                    flash,
                    regular,
                    train_data,
                    config.train.optimizer,
                    batch_size,
                    budget=budget,
                    settings=settings,
                    teacher_forward=teacher_forward,
                )
                record_extra("distillation", [r.to_dict() for r in results])
                record_extra("train", settings.record(batch_size))
                return model

        if eval_func is None:
            if eval_data is None:
                raise ConfigError(
                    "data.eval: required by the tensorflow backend's built-in eval function: "
                    "an import string 'module:function' returning the evaluation data"
                )

            def eval_func(model):
                return evaluate(model, eval_data, batch_size=eval_batch_size)

        example_inputs = first_inputs(eval_data) if eval_data is not None else None
        return SearchFunctions(model_builder, train_func, eval_func, example_inputs, eval_data, teacher=teacher)

    def save_student(self, model: Any, directory: str, *, record, context) -> dict:
        """Save a trained Keras student (see :mod:`autokd_tensorflow.saving`)."""
        from .saving import save_student

        return save_student(model, directory, record=record, context=context)
