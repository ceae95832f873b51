"""The ``pytorch`` trainer backend: the built-in functions of ``autokd run CONFIG``.

From the config it loads the teacher (``model.teacher``: an import string of a function
returning the model, or a local directory for ``from_pretrained``) and the datasets
(``data.train`` / ``data.eval``: import strings of functions returning map-style
datasets, called with ``data.options``), and returns the ``model.builder`` builder
(default ``transformers``), the flash + regular distillation train function, the eval
function, one batch of inputs for hardware evaluators, and the evaluation data.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from autokd import AutoKDError, Config, ConfigError, SearchFunctions, registry

__all__ = ["TorchBackend", "BACKEND", "load_teacher", "load_dataset", "example_inputs", "builtin_builder"]

log = logging.getLogger("autokd.torch")


def load_teacher(spec: str | None) -> Any:
    """The teacher from ``model.teacher``, in eval mode."""
    from torch import nn

    if not spec:
        raise ConfigError(
            "model.teacher: missing: the built-in functions distil from a teacher; give 'package.module:function' "
            "returning the model, or a local model directory"
        )
    if os.path.isdir(spec):
        teacher = _from_pretrained(spec)
    elif ":" in spec:
        from autokd import import_object

        teacher = import_object(spec, "model.teacher")()
    else:
        raise ConfigError(
            f"model.teacher: {spec!r} is neither a local model directory nor an import string like "
            f"'package.module:function' (there is no model hub here)"
        )
    if not isinstance(teacher, nn.Module):
        raise ConfigError(f"model.teacher: {spec!r} gave a {type(teacher).__name__}, not a torch model")
    return teacher.eval()


def _from_pretrained(path: str) -> Any:
    import transformers

    config_path = os.path.join(path, "config.json")
    if not os.path.exists(config_path):
        raise ConfigError(f"model.teacher: {path!r} has no config.json")
    with open(config_path, encoding="utf-8") as fh:
        architectures = json.load(fh).get("architectures") or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    return (cls or transformers.AutoModel).from_pretrained(path)


def load_dataset(spec: str | None, options: dict, field: str) -> Any:
    """The dataset a ``data.*`` import string's function returns."""
    if not spec:
        return None
    from autokd import import_object

    function = import_object(spec, field)
    try:
        return function(**options)
    except TypeError as exc:
        raise ConfigError(f"{field}: {spec} rejected data.options {sorted(options)}: {exc}") from None


def example_inputs(data: Any, batch_size: int, data_collator: Callable | None = None) -> Any:
    """One batch of model inputs (without labels) for hardware evaluators."""
    from .data import first_batch, make_dataloader, split_batch

    if data is None:
        return None
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        data = make_dataloader(data, batch_size, collate_fn=data_collator, shuffle=False)
    inputs = split_batch(first_batch(data))[1]
    return inputs


def distilled_student_layers(config: Config) -> list[str]:
    ad = config.auto_distillation
    stages = (ad.flash_stages() + ad.regular_stages()) if ad is not None else []
    return [m.student_layer for s in stages for m in s.layer_mappings]


# Training examples whose teacher hidden states give the ``pca_hidden`` / ``select_hidden``
# width basis when ``init_from_teacher`` names no ``data`` of its own.
BASIS_EXAMPLES = 512
_HIDDEN_BASES = ("pca_hidden", "select_hidden")


class BasisData:
    """The teacher inputs of the first ``limit`` examples of ``dataset``, in batches of 64
    (collated on iteration): the ``data`` of ``init_from_teacher`` for the hidden-state
    width bases."""

    def __init__(self, dataset: Any, data_collator: Any = None, limit: int = BASIS_EXAMPLES):
        self.dataset, self.data_collator, self.limit = dataset, data_collator, limit

    def __iter__(self):
        import torch

        from .data import make_dataloader, split_batch, unwrap

        count = min(self.limit, len(self.dataset))
        subset = torch.utils.data.Subset(self.dataset, range(count))
        for item in make_dataloader(subset, 64, collate_fn=self.data_collator, shuffle=False):
            yield split_batch(unwrap(item)[1])[1]


def builtin_builder(
    config: Config,
    teacher: Any,
    defaults: dict | None = None,
    overrides: dict | None = None,
    *,
    train_data: Any = None,
    data_collator: Any = None,
) -> Callable[[dict], Any]:
    """``model.builder`` (a registered name or an import string, default
    ``transformers``) with ``model.builder_options`` over ``defaults`` and under
    ``overrides``; the transformers builder also gets the teacher, the search seed and the
    distilled layers, and, for ``init_from_teacher`` with ``width: pca_hidden`` (or
    ``select_hidden``) and no ``data``, the teacher's hidden-state statistics on the first
    :data:`BASIS_EXAMPLES` examples of ``train_data``, computed at the first build and
    reused by every later one."""
    name = config.model.builder or "transformers"
    if ":" in name:
        from autokd import import_object

        builder = import_object(name, "model.builder")
    else:
        builder = registry().model_builders.get(name, "pytorch")
    options = {**(defaults or {}), **config.model.builder_options, **(overrides or {})}
    basis_data = None  # the data of a hidden-state basis, until its statistics are computed
    if name == "transformers":
        options.setdefault("teacher", teacher)
        options.setdefault("distilled_layers", distilled_student_layers(config))
        if config.auto_distillation is not None:
            options.setdefault("seed", config.search.seed)
        init = options.get("init_from_teacher")
        if (
            isinstance(init, Mapping)
            and init.get("width") in _HIDDEN_BASES
            and "data" not in init
            and options["teacher"] is not None
            and hasattr(train_data, "__getitem__")
            and hasattr(train_data, "__len__")
        ):
            basis_data = BasisData(train_data, data_collator)

    return _ModelBuilder(builder, options, basis_data)


class _ModelBuilder:
    """``builder(arch, **options)``, computing a hidden-state basis once at the first
    build. A class, not a closure: the ``processes`` executor pickles it to its workers."""

    def __init__(self, builder: Callable, options: dict, basis_data: BasisData | None):
        self.builder, self.options, self.basis_data = builder, options, basis_data

    def __call__(self, arch: dict) -> Any:
        basis_data = self.basis_data
        if basis_data is not None:  # one teacher pass for every student's basis
            from .init_from_teacher import hidden_state_gram

            count = min(basis_data.limit, len(basis_data.dataset))
            log.info("init_from_teacher: width basis from the teacher's hidden states on %d training examples", count)
            states = hidden_state_gram(self.options["teacher"], basis_data)
            self.options["init_from_teacher"] = {**self.options["init_from_teacher"], "data": states}
            self.basis_data = None
        return self.builder(arch, **self.options)


class TorchBackend:
    """The ``pytorch`` :class:`autokd.Backend`."""

    framework = "pytorch"
    # the built-in train function takes train_func(model, budget) and continues a student
    supports_budget = True

    def search_functions(
        self,
        config: Config,
        *,
        output_dir: str,
        model_builder: Callable | None = None,
        train_func: Callable | None = None,
        eval_func: Callable | None = None,
    ) -> SearchFunctions:
        from .engine import Engine
        from .evaluate import EvalFunc
        from .train import FlashDistillationTrainFunc

        if config.auto_distillation is None:
            raise AutoKDError("auto_distillation: missing: a search needs an auto_distillation section")
        engine = Engine(config.train)  # what this machine cannot run is refused before loading anything
        needs_teacher = train_func is None or (
            model_builder is None and (config.model.builder or "transformers") == "transformers"
        )
        teacher = load_teacher(config.model.teacher) if needs_teacher else None
        options = dict(config.data.options)
        train_data = load_dataset(config.data.train, options, "data.train")
        eval_data = load_dataset(config.data.eval, options, "data.eval")
        if train_func is None:
            if train_data is None:
                raise ConfigError("data.train: missing: the built-in train function needs training data")
            train_func = FlashDistillationTrainFunc(
                config, teacher, train_data, seed=config.search.seed, output_dir=output_dir
            )
        if eval_func is None:
            metrics = list(config.search.metrics) + list(config.evaluation.record)
            eval_func = EvalFunc(
                eval_data,
                metrics=metrics,
                batch_size=config.evaluation.batch_size or config.train.batch_size,
                engine=engine,
            )
        if model_builder is None:
            model_builder = builtin_builder(config, teacher, train_data=train_data)
        batch = example_inputs(train_data if train_data is not None else eval_data, config.train.batch_size)
        log.info("pytorch backend: output in %s", output_dir)
        return SearchFunctions(model_builder, train_func, eval_func, batch, eval_data, teacher=teacher)

    def save_student(self, model: Any, directory: str, *, record, context) -> dict:
        """Save a trained student (see :mod:`autokd_torch.saving`)."""
        from .saving import save_student

        return save_student(model, directory, record=record, context=context)


BACKEND = TorchBackend()
