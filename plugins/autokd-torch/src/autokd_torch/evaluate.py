"""Evaluation of a trained student: ``eval_loss``, ``accuracy`` and the user's
``compute_metrics``; the built-in eval function and the ``eval_loss`` / ``accuracy``
evaluators.

- ``eval_loss``: the mean over examples of the loss a Hugging Face model computes from
  the batch's labels, or else of the cross entropy (class labels) / mean squared error
  (float labels) of its logits.
- ``accuracy``: the fraction of labelled positions (label ``!= -100``) where the arg max of
  the logits is the label; only for class labels.
- ``compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))`` as in
  ``transformers.Trainer``: its keys are added as returned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autokd import ConfigError, EvalContext

from .data import call_model, logits_of, make_dataloader, split_batch, to_device, unwrap
from .engine import agree

__all__ = ["evaluate", "EvalFunc", "eval_loss_evaluator", "accuracy_evaluator"]


def _loader(data: Any, batch_size: int, data_collator: Callable | None) -> Iterable:
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return make_dataloader(data, batch_size, collate_fn=data_collator, shuffle=False)
    return data


def evaluate(
    model: torch.nn.Module,
    eval_data: Any,
    *,
    batch_size: int = 32,
    data_collator: Callable | None = None,
    compute_metrics: Callable | None = None,
) -> dict[str, float]:
    """``eval_loss``, ``accuracy`` (class labels) and ``compute_metrics``' results over
    ``eval_data`` (a map-style dataset or an iterable of batches)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, loss_count = 0.0, 0
    correct, labelled = 0, 0
    classification = True
    predictions: list[np.ndarray] = []
    label_ids: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for item in _loader(eval_data, batch_size, data_collator):
                batch = to_device(unwrap(item)[1], device)
                inputs, _, targets = split_batch(batch)
                outputs = call_model(model, inputs)
                logits = logits_of(outputs)
                n = logits.shape[0]
                loss = outputs.get("loss") if hasattr(outputs, "get") else None
                if loss is None and targets is not None:
                    loss = _loss_against(logits, targets)
                if loss is not None:
                    loss_sum += float(loss) * n
                    loss_count += n
                if targets is not None:
                    if targets.is_floating_point():
                        classification = False
                    else:
                        mask = targets != -100
                        correct += int((logits.argmax(-1)[mask] == targets[mask]).sum())
                        labelled += int(mask.sum())
                    if compute_metrics is not None:
                        predictions.append(logits.float().cpu().numpy())
                        label_ids.append(targets.cpu().numpy())
    finally:
        model.train(was_training)
    metrics: dict[str, float] = {}
    if loss_count:
        metrics["eval_loss"] = loss_sum / loss_count
    if classification and labelled:
        metrics["accuracy"] = correct / labelled
    if compute_metrics is not None and predictions:
        from transformers import EvalPrediction

        try:
            prediction = EvalPrediction(predictions=np.concatenate(predictions), label_ids=np.concatenate(label_ids))
        except ValueError as exc:
            raise ValueError(
                f"compute_metrics needs predictions of one shape across batches ({exc}): pad the evaluation "
                f"data to a fixed length"
            ) from None
        for key, value in compute_metrics(prediction).items():
            metrics[key] = float(value)
    return metrics


def _loss_against(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.is_floating_point():
        if logits.dim() == targets.dim() + 1 and logits.shape[-1] == 1:
            logits = logits.squeeze(-1)
        return F.mse_loss(logits, targets.to(logits.dtype))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


class EvalFunc:
    """The built-in ``eval_func(model) -> metrics``: :func:`evaluate` on the evaluation
    data (on ``engine``'s device, under its autocast, when given). A metric the config
    names as ``eval_X`` is ``X`` of the results and the other way round (``accuracy``
    from ``compute_metrics`` answers ``eval_accuracy``)."""

    def __init__(
        self,
        eval_data: Any,
        *,
        metrics: Sequence[str] = (),
        batch_size: int = 32,
        data_collator: Callable | None = None,
        compute_metrics: Callable | None = None,
        engine: Any = None,
    ):
        if eval_data is None:
            raise ConfigError(
                "the built-in eval function needs evaluation data: set data.eval (autokd run) or the "
                "Trainer's eval_dataset, or give an eval_func"
            )
        self.eval_data = eval_data
        self.metrics = list(metrics)
        self.batch_size = batch_size
        self.data_collator = data_collator
        self.compute_metrics = compute_metrics
        self.engine = engine

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        context = contextlib.nullcontext()
        if self.engine is not None:  # on the training device, under its autocast
            accelerator = self.engine.accelerator()
            model.to(accelerator.device)
            context = accelerator.autocast()
        with context:
            results = evaluate(
                model,
                self.eval_data,
                batch_size=self.batch_size,
                data_collator=self.data_collator,
                compute_metrics=self.compute_metrics,
            )
        # several processes: every one records what the main process measured
        results = agree(results)
        for name in self.metrics:
            if name in results:
                continue
            alias = name[len("eval_") :] if name.startswith("eval_") else "eval_" + name
            if alias in results:
                results[name] = results[alias]
        return results


def _evaluator(metric: str) -> Callable[[torch.nn.Module, EvalContext], float]:
    def evaluator(model: torch.nn.Module, context: EvalContext) -> float:
        options = dict(context.options)
        batch_size = options.pop("batch_size", 32)
        if options:
            raise ConfigError(
                f"evaluation.{metric}: unknown option(s) {', '.join(sorted(options))}; it takes batch_size"
            )
        if context.eval_data is None:
            raise ConfigError(
                f"search.metrics: {metric!r} is computed on the evaluation data, but there is none: set data.eval "
                f"(autokd run) or AutoDistillation.eval_data"
            )
        results = evaluate(model, context.eval_data, batch_size=batch_size)
        if metric not in results:
            raise ValueError(
                f"{metric} needs labelled evaluation data{' with class labels' if metric == 'accuracy' else ''}"
            )
        return results[metric]

    evaluator.__name__ = f"{metric}_evaluator"
    evaluator.__doc__ = f"The ``{metric}`` of the model on ``context.eval_data`` (see :func:`evaluate`)."
    return evaluator


eval_loss_evaluator = _evaluator("eval_loss")
accuracy_evaluator = _evaluator("accuracy")
