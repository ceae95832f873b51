"""``Distillation``: one distillation run (a student, a teacher, a criterion, an optimizer,
some steps), and ``Scheduler``: several runs in order on the same student.

The step, in one place for every built-in path::

    teacher_outputs = teacher(teacher_inputs, indices, features)  # TeacherForward: live or cached
    criterion.set_teacher_outputs(teacher_outputs)
    student_outputs = student(**batch)                   # hooks capture student features
    loss = criterion.compute_loss(student_outputs, targets)
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from accelerate.utils import send_to_device
from torch import nn

from autokd import AutoKDError, Config, ConfigError, TrainConfig, load_config, record_extra, registry

from .criteria import DistillationCriterion, KnowledgeDistillationLoss
from .data import IndexedDataset, call_model, make_dataloader, repeat_batches, split_batch, unwrap
from .engine import Engine, prepare_batches, reduce_gradients
from .features import find_module
from .optim import build_optimizer
from .teacher import TeacherForward

__all__ = ["Distillation", "Scheduler", "criterion_from_config", "seeded"]

log = logging.getLogger("autokd.torch")

# Names of the distillation YAML that the criteria's Python API spells differently.
_CRITERION_ARG_NAMES = {"layer_mappings_for_knowledge_transfer": "layer_mappings"}


@contextlib.contextmanager
def seeded(seed: int | None):
    """Run with torch's global RNG forked and seeded (restored afterwards), so weight init
    and dropout follow ``seed`` without touching the caller's RNG state."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def criterion_from_config(criterion: Mapping[str, Any] | None, field: str = "train.criterion") -> DistillationCriterion:
    """A criterion from ``{name: {arguments}}`` (registered criteria, by name)."""
    if not criterion:
        return KnowledgeDistillationLoss()
    if len(criterion) != 1:
        raise ConfigError(f"{field}: name exactly one criterion, got {sorted(criterion)}")
    ((name, args),) = criterion.items()
    cls = registry().criteria.get(name, "pytorch")
    kwargs = {_CRITERION_ARG_NAMES.get(k, k): v for k, v in (args or {}).items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{field}.{name}: {exc}") from None


class Distillation:
    """One distillation run, configured by the distillation YAML::

        distillation:
          train:
            optimizer: {SGD: {learning_rate: 0.001}}
            criterion:
              KnowledgeDistillationLoss: {temperature: 1.0, loss_types: [CE, CE], loss_weights: [0.5, 0.5]}
            batch_size: 32
            train_steps: 500        # or epochs

    Set ``student_model``, ``teacher_model`` and the data (``train_dataloader``, or
    ``train_dataset`` with an optional ``data_collator``), or a ``train_func(model)`` of
    your own, then :meth:`fit` returns the trained student.

    :ivar criterion: a :class:`DistillationCriterion` (default: from ``train.criterion``).
    :ivar optimizer: a torch optimizer (default: from ``train.optimizer`` over the
        trainable parameters and the criterion's own, e.g. feature matchers).
    :ivar block_name: when set, only the parameters under this module train (a flash
        distillation stage); everything else is frozen for the run.
    :ivar teacher: the :class:`TeacherForward` computing the teacher's outputs (default:
        one for ``teacher_model`` and the criterion's features, with the teacher-output
        cache of ``train.teacher_cache`` for this run when the data is a map-style
        dataset, so that later epochs reuse the teacher's outputs; a given one is shared
        and prepared by its owner, e.g. the built-in train function).
    :ivar history: the loss of every optimizer step of the last :meth:`fit` (the mean over
        its micro-batches).
    :ivar learning_rates: the learning rate of every optimizer step of the last :meth:`fit`.
    :ivar engine: the :class:`~autokd_torch.engine.Engine` of ``train`` (device, mixed
        precision, accumulation, clipping, schedule).
    :ivar steps_done: optimizer steps trained by every :meth:`fit` so far; with
        ``optimizer``, ``lr_scheduler`` and ``criterion`` kept, a later :meth:`fit`
        continues the run (``schedule_steps``: the length its schedule is defined over).
    """

    def __init__(
        self,
        conf_fname_or_obj: Any = None,
        *,
        criterion: DistillationCriterion | None = None,
        train_steps: int | None = None,
        block_name: str | None = None,
        teacher: TeacherForward | None = None,
        name: str = "distillation",
    ):
        self.config: Config | None = None if conf_fname_or_obj is None else load_config(conf_fname_or_obj)
        if self.config is None:
            self.train_config = TrainConfig()
        elif self.config.distillation is not None:
            self.train_config = self.config.distillation.train
        else:
            self.train_config = self.config.train
        self.student_model: nn.Module | None = None
        self.teacher_model: nn.Module | None = None
        self.train_dataloader: Iterable | None = None
        self.train_dataset: Any = None
        self.data_collator: Any = None
        self.train_func = None
        self.criterion = criterion
        self.optimizer: torch.optim.Optimizer | None = None
        self.optimizer_config: Mapping[str, Any] = self.train_config.optimizer
        self.train_steps = train_steps
        self.block_name = block_name
        self.teacher = teacher
        self.name = name
        self.seed: int | None = None
        self.show_progress = True
        self.history: list[float] = []
        self.learning_rates: list[float] = []
        self.engine = Engine(
            self.train_config, "distillation.train" if self.config and self.config.distillation else "train"
        )
        self.accelerator = None
        self.lr_scheduler = None
        self.schedule_steps: int | None = None
        self.steps_done = 0

    # --- pieces ---------------------------------------------------------------------------
    def _criterion(self) -> DistillationCriterion:
        if self.criterion is None:
            field = "distillation.train.criterion" if self.config and self.config.distillation else "train.criterion"
            self.criterion = criterion_from_config(self.train_config.criterion, field)
        if not isinstance(self.criterion, DistillationCriterion):
            raise AutoKDError(
                f"criterion {type(self.criterion).__name__} is not an autokd_torch.DistillationCriterion: "
                f"subclass it and implement set_teacher_outputs() and compute_loss()"
            )
        return self.criterion

    def _batches(self, accelerator) -> tuple[Iterator, int | None]:
        data = self.train_dataloader
        if data is None:
            if self.train_dataset is None:
                raise AutoKDError("no training data: set train_dataloader or train_dataset (or train_func)")
            data = make_dataloader(
                self.train_dataset,
                self.train_config.batch_size,
                collate_fn=self.data_collator,
                seed=self.seed,
                group_by_length=self.train_config.group_by_length,
            )
        if isinstance(data, Iterator):  # a stream shared by several runs (the built-in stages)
            return data, None
        per_epoch = len(data) if hasattr(data, "__len__") else None
        return repeat_batches(prepare_batches(accelerator, data)), per_epoch

    def _steps(self, batches_per_epoch: int | None) -> int:
        steps = self.train_steps or self.train_config.train_steps
        if steps:
            return int(steps)
        if batches_per_epoch is None:
            raise AutoKDError(f"{self.name}: set train_steps (the data has no length to count epochs by)")
        # optimizer steps: each takes gradient_accumulation_steps batches
        return math.ceil((self.train_config.epochs or 1) * batches_per_epoch / self.engine.accumulation)

    def _trainable(self, student: nn.Module) -> list[nn.Parameter]:
        if self.block_name is None:
            return [p for p in student.parameters() if p.requires_grad]
        block = find_module(student, self.block_name, "student")
        return [p for p in block.parameters() if p.requires_grad]

    # --- the run ----------------------------------------------------------------------------
    def fit(self) -> nn.Module:
        """Train ``student_model`` and return it."""
        student = self.student_model
        if student is None:
            raise AutoKDError("no student model: set student_model before fit()")
        if self.train_func is not None:
            trained = self.train_func(student)
            return student if trained is None else trained
        with seeded(self.seed):
            return self._fit(student)

    def _fit(self, student: nn.Module) -> nn.Module:
        criterion = self._criterion()
        if criterion.teacher_model is None:
            criterion.teacher_model = self.teacher_model
        needed = criterion.teacher_feature_specs()
        wants_logits = bool(criterion.needs_teacher_logits)
        accelerator = self.accelerator or self.engine.accelerator()
        owned = self.teacher is None
        if owned:
            teacher = TeacherForward(
                self.teacher_model,
                needed,
                logits=wants_logits,
                cache=self.train_config.teacher_cache,
                write_files=accelerator.is_main_process,
            )
        else:
            teacher = self.teacher
            teacher.require(needed, logits=wants_logits)
        teacher.place(accelerator.device)
        batches, per_epoch = self._batches(accelerator)
        if owned:
            dataset, collate_fn, batch_size = self._indexed_data()
            teacher.prepare(dataset, data_collator=collate_fn, batch_size=batch_size, show_progress=self.show_progress)
        steps = self._steps(per_epoch)
        if self.schedule_steps is None:
            self.schedule_steps = steps
        trainable = self._trainable(student)
        trainable_ids = {id(p) for p in trainable}
        frozen = [p for p in student.parameters() if p.requires_grad and id(p) not in trainable_ids]
        was_training = student.training
        log.info(
            "%s: %d steps, training %s (%d parameters) on %s",
            self.name,
            steps,
            self.block_name or "the whole student",
            sum(p.numel() for p in trainable),
            accelerator.device,
        )
        for p in frozen:
            p.requires_grad_(False)
        bar = _progress_bar(steps, self.name, self.show_progress and accelerator.is_local_main_process)
        engine = self.engine
        accumulation = engine.accumulation
        model = None
        try:
            model = accelerator.prepare_model(student)
            criterion.to(accelerator.device)
            criterion.student_model = student
            optimizer = scheduler = None
            student.train()
            self.history, self.learning_rates = [], []
            accelerator.step = 0  # each optimizer step is `accumulation` micro-batches from here
            for step in range(steps):
                total = 0.0
                for _ in range(accumulation):
                    indices, batch = unwrap(next(batches))
                    batch = send_to_device(batch, accelerator.device, non_blocking=True)
                    student_inputs, teacher_inputs, targets = split_batch(batch)
                    with accelerator.accumulate(model):
                        with accelerator.autocast():
                            criterion.set_teacher_outputs(teacher(teacher_inputs, indices, needed, wants_logits))
                            outputs = call_model(model, student_inputs, **criterion.student_forward_kwargs)
                            loss = criterion.compute_loss(outputs, targets)
                        if optimizer is None:  # after the first loss: the feature matchers exist now
                            optimizer, scheduler = self._optimizer(accelerator, trainable, criterion)
                        total += float(loss.detach())
                        accelerator.backward(loss)
                        if accelerator.sync_gradients:
                            _add_new_parameters(self.optimizer, criterion)
                            reduce_gradients(accelerator, criterion.parameters())
                            learning_rate = self.optimizer.param_groups[0]["lr"]
                            if engine.train.max_grad_norm is not None:
                                accelerator.clip_grad_norm_(
                                    [p for g in optimizer.param_groups for p in g["params"]], engine.train.max_grad_norm
                                )
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                value = total / accumulation
                if accelerator.num_processes > 1:  # every process stops on the same non-finite loss
                    value = float(accelerator.reduce(torch.tensor(value, device=accelerator.device), "mean"))
                if not math.isfinite(value):
                    raise FloatingPointError(f"{self.name}: the loss is {value} at step {step + 1} of {steps}")
                self.steps_done += 1
                self.history.append(value)
                self.learning_rates.append(learning_rate)
                bar.set_postfix_str(f"loss={value:.4g}", refresh=False)
                bar.update(1)
        finally:
            bar.close()
            criterion.student_model = None
            if model is not None:
                # the student as it was handed in: no DDP wrapper, no autocast patched into its forward
                accelerator.unwrap_model(model, keep_fp32_wrapper=False)
            for p in frozen:
                p.requires_grad_(True)
            student.train(was_training)
            if owned:
                record_extra("teacher_cache", teacher.finish())
        if self.history:
            log.info("%s: loss %.4g -> %.4g", self.name, self.history[0], self.history[-1])
        return student

    def _optimizer(self, accelerator, trainable: list[nn.Parameter], criterion: nn.Module):
        """The stage's optimizer and schedule (kept on ``self`` for a later continuation),
        prepared for ``accelerator``."""
        if self.optimizer is None:
            self.optimizer = build_optimizer(trainable + list(criterion.parameters()), self.optimizer_config)
        else:
            _add_new_parameters(self.optimizer, criterion)
        if self.lr_scheduler is None:
            self.lr_scheduler = self.engine.scheduler(self.optimizer, self.schedule_steps, self.steps_done)
        return accelerator.prepare_optimizer(self.optimizer), accelerator.prepare_scheduler(self.lr_scheduler)

    def _indexed_data(self) -> tuple[Any, Any, int]:
        """The dataset the batches index into, its collator and batch size (the dataset
        is None for batches without indices)."""
        loader = self.train_dataloader
        if loader is None:
            return self.train_dataset, self.data_collator, self.train_config.batch_size
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, IndexedDataset):  # a loader of make_dataloader
            collate_fn = getattr(loader.collate_fn, "collate_fn", None)
            return dataset.dataset, collate_fn, loader.batch_size or self.train_config.batch_size
        return loader, None, self.train_config.batch_size


def _add_new_parameters(optimizer: torch.optim.Optimizer, criterion: nn.Module) -> None:
    """Feature matchers appear when the first features are seen: train them too."""
    known = {id(p) for group in optimizer.param_groups for p in group["params"]}
    new = [p for p in criterion.parameters() if p.requires_grad and id(p) not in known]
    if new:
        optimizer.add_param_group({"params": new})


def _progress_bar(steps: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc=name, disable=not enabled, leave=False, dynamic_ncols=True, unit="step")


class Scheduler:
    """Runs distillers in order on the same student, as the built-in train function runs
    the flash stages and then the regular ones::

        scheduler = Scheduler()
        scheduler.combine(flash_distiller, regular_distiller)
        student = scheduler(student)
    """

    def __init__(self):
        self.distillers: list[Distillation] = []

    def combine(self, *distillers: Distillation) -> Scheduler:
        self.distillers.extend(distillers)
        return self

    def __call__(self, model: nn.Module | None = None) -> nn.Module:
        if not self.distillers:
            raise AutoKDError("the scheduler has no distillers: combine() some first")
        for distiller in self.distillers:
            if model is not None:
                distiller.student_model = model
            model = distiller.fit()
        return model
