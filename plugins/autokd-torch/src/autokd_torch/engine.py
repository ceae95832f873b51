"""The training engine: ``train.device``, ``mixed_precision``, ``gradient_accumulation_steps``,
``max_grad_norm`` and ``lr_scheduler`` (issue #14) as one ``accelerate.Accelerator`` per
training run and one ``transformers.get_scheduler`` schedule per stage.

The core validates these keys on their own; :func:`check_machine` checks them against
this machine (a GPU for ``cuda`` / ``fp16``), before any training. Several processes
(``accelerate launch`` / ``torchrun``) each train on a shard of every batch
(``split_batches``); only the main process writes files (:func:`is_main_process`).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from autokd import ConfigError, TrainConfig

__all__ = ["Engine", "check_machine", "is_main_process", "agree", "prepare_batches"]

log = logging.getLogger("autokd.torch")


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolved_device(device: str) -> str:
    """``auto`` as accelerate resolves it (CUDA, else MPS, else the CPU); others as given."""
    if device != "auto":
        return device
    return "cuda" if _cuda_count() else "mps" if _mps() else "cpu"


def check_machine(train: TrainConfig, field: str = "train") -> None:
    """Refuse settings this machine cannot run, with the reason: ``cuda`` without a CUDA
    GPU, ``cuda:N`` past the GPUs there are, ``mps`` without MPS, ``fp16`` without a GPU,
    ``bf16`` on a GPU without bf16."""
    count = _cuda_count()
    device = train.device
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match:
        if not count:
            raise ConfigError(
                f"{field}.device: {device!r}, but this machine has no CUDA GPU (torch.cuda.is_available() is False); "
                f"use 'auto' or 'cpu'"
            )
        if match.group(1) is not None and int(match.group(1)) >= count:
            raise ConfigError(
                f"{field}.device: {device!r}, but this machine has {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})"
            )
    if device == "mps" and not _mps():
        raise ConfigError(f"{field}.device: 'mps', but MPS is not available here; use 'auto' or 'cpu'")
    where = resolved_device(device)
    if train.mixed_precision == "fp16" and not where.startswith("cuda"):
        raise ConfigError(
            f"{field}.mixed_precision: fp16 needs a CUDA GPU and training runs on {where!r} here; use bf16 or no"
        )
    if train.mixed_precision == "bf16" and where.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{field}.mixed_precision: this GPU has no bf16; use fp16 or no")


def is_main_process() -> bool:
    """Whether this is the process that writes results and files (always, when alone):
    the core's rule, which the result store follows too."""
    from autokd import is_main_process as main

    return main()


def agree(value: Any) -> Any:
    """``value`` as the main process has it, in every process (e.g. a trial's metrics)."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    from autokd import main_process_is_alone

    if main_process_is_alone() or PartialState().num_processes == 1:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


class Engine:
    """The engine keys of a ``train`` section, checked against the machine.

    :meth:`accelerator` gives a fresh ``Accelerator`` for one training run (a trial,
    or one :class:`~autokd_torch.Distillation`); :meth:`scheduler` the schedule of a stage.
    """

    def __init__(self, train: TrainConfig | None = None, field: str = "train"):
        self.train = train if train is not None else TrainConfig()
        self.field = field
        check_machine(self.train, field)

    @property
    def accumulation(self) -> int:
        return self.train.gradient_accumulation_steps

    def accelerator(self):
        """An ``Accelerator`` for these settings. Within one process, accelerate keeps one
        state: a run with other precision or device than the last one resets it (only
        possible when alone; several processes run one config)."""
        from accelerate import Accelerator, DataLoaderConfiguration, PartialState
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedDataParallelKwargs, GradientAccumulationPlugin

        train = self.train
        # on a machine without a GPU, cpu=True is what makes accelerate run several CPU processes
        cpu = resolved_device(train.device) == "cpu"
        if AcceleratorState._shared_state and PartialState().num_processes == 1:
            current = AcceleratorState()
            wants_cpu = resolved_device(train.device) == "cpu"
            if current.mixed_precision != train.mixed_precision or (current.device.type == "cpu") != wants_cpu:
                AcceleratorState._reset_state(reset_partial_state=True)
        match = re.fullmatch(r"cuda:(\d+)", train.device)
        if match and PartialState().num_processes == 1:
            # one process sees the current CUDA device as "cuda"
            torch.cuda.set_device(int(match.group(1)))
        return Accelerator(
            cpu=cpu,
            mixed_precision=train.mixed_precision,
            # counted here, not by the end of the (endless) batch stream
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=train.gradient_accumulation_steps, sync_with_dataloader=False
            ),
            # each process trains on its shard of every batch; schedules step once per step
            dataloader_config=DataLoaderConfiguration(split_batches=True),
            # a flash stage trains one block: other parameters get no gradient
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            step_scheduler_with_optimizer=True,
        )

    def scheduler(self, optimizer: torch.optim.Optimizer, train_steps: int, start: int = 0):
        """The stage's learning-rate schedule over its configured ``train_steps`` (so a
        stage trained in increments follows the same curve as one trained at once), at
        step ``start``: a stage whose run grows past its configured steps (a final
        distillation) gets a schedule over all of them that goes on from the steps it
        has trained, not one that starts its warm-up or decay again."""
        from transformers import get_scheduler

        schedule = self.train.lr_scheduler
        warmup = schedule.warmup(train_steps)
        if schedule.type == "constant":
            return get_scheduler("constant", optimizer)
        decay = {"num_decay_steps": schedule.decay(train_steps), "decay_type": "linear"}
        scheduler = get_scheduler(
            schedule.type,
            optimizer,
            num_warmup_steps=warmup,
            num_training_steps=train_steps,
            scheduler_specific_kwargs=decay if schedule.type == "warmup_stable_decay" else None,
        )
        with warnings.catch_warnings():  # stepped ahead of the optimizer on purpose
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start):
                scheduler.step()
        return scheduler

    def record(self, accelerator, batch_size: int) -> dict:
        """``extras.train`` of a trial: how its student was trained."""
        schedule = self.train.lr_scheduler
        return {
            "device": str(accelerator.device),
            "mixed_precision": accelerator.mixed_precision,
            "num_processes": accelerator.num_processes,
            "gradient_accumulation_steps": self.accumulation,
            "max_grad_norm": self.train.max_grad_norm,
            "lr_scheduler": {
                "type": schedule.type,
                **({"warmup_ratio": schedule.warmup_ratio} if schedule.warmup_ratio is not None else {}),
                **({"warmup_steps": schedule.warmup_steps} if schedule.warmup_steps is not None else {}),
                **({"decay_ratio": schedule.decay_ratio} if schedule.decay_ratio is not None else {}),
            },
            # split_batches: the batch is shared out among the processes
            "effective_batch_size": batch_size * self.accumulation,
        }


def prepare_batches(accelerator, data: Iterable) -> Iterable:
    """A ``DataLoader`` sharded for ``accelerator``'s processes (each takes its part of
    every batch); other iterables of batches as they are (each process then trains on
    every batch: give a ``DataLoader`` or a dataset to train on several)."""
    if isinstance(data, torch.utils.data.DataLoader):
        # batches are IndexedBatch objects: moved to the device by the step
        return accelerator.prepare_data_loader(data, device_placement=False)
    if accelerator.num_processes > 1:
        log.warning(
            "the training data is an iterable of batches, not a DataLoader: each of the %d processes trains on "
            "every batch",
            accelerator.num_processes,
        )
    return data


def reduce_gradients(accelerator, parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average over the processes the gradients of parameters outside the wrapped model
    (the criterion's feature matchers, made at the first step)."""
    if accelerator.num_processes == 1:
        return
    for p in parameters:
        if p.grad is not None:
            p.grad.copy_(accelerator.reduce(p.grad, reduction="mean"))
