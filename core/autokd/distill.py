"""The framework-neutral rules of distillation that every backend follows: how stages and
layer mappings are normalised, how a process picks part of a layer's output, where a
model's logits are, which loss types, loss weights, temperatures and optimizers are
valid, and how per-token features of a padded batch are reduced to their real positions.

Both built-in backends (``autokd-torch``, ``autokd-tensorflow``) call these functions
instead of deciding for themselves, and a third-party backend should too: then the same
config means the same thing whatever the framework (issue #18). Nothing here imports
torch or TensorFlow; outputs are walked as plain Python containers (tuples, lists,
mappings, and objects with ``to_tuple()`` such as transformers' ``ModelOutput``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError

__all__ = [
    "DISTRIBUTION_LOSSES",
    "DISTRIBUTION_TOLERANCE",
    "LOG_FLOOR",
    "OPTIMIZERS",
    "OUTPUT_LOSS_TYPES",
    "TARGET_LOSS_TYPES",
    "check_loss_types",
    "check_loss_weights",
    "check_optimizer",
    "check_temperature",
    "describe_output",
    "drop_attention_maps",
    "expand_for_student",
    "expand_stage_budget",
    "expand_stage_templates",
    "find_logits",
    "is_template",
    "normalize_layer_mappings",
    "normalize_stages",
    "optimizer_problems",
    "select_output",
    "template_teacher_layers",
    "token_dims",
]

# The student-vs-targets term of output distillation: class labels or regression targets.
TARGET_LOSS_TYPES = ("CE", "MSE")
# How many loss types (and weights) output distillation takes: [student-vs-targets, student-vs-teacher].
OUTPUT_LOSS_TYPES = 2
# Losses that read their inputs as logits of distributions over the last dimension.
DISTRIBUTION_LOSSES = ("KL", "CE")
# A feature is already a distribution (attention maps) when its values are in [0, 1] and
# every row over the last dimension sums to 1 within this tolerance, or is all zero (a
# position zeroed as padding), with at least one row summing to 1. KL and CE then read
# log(max(p, LOG_FLOOR)) instead of p, so their softmax gives back p: on two tiny BERTs'
# attention maps the softmax of p itself left 57x less signal (tests/torch/test_intermediate.py).
DISTRIBUTION_TOLERANCE = 1e-3
LOG_FLOOR = 1e-12

# --------------------------------------------------------------------------------------
# Optimizers: one table of names; each backend maps the names it supports to its classes.
# --------------------------------------------------------------------------------------

#: canonical optimizer name -> the frameworks whose backend builds it.
OPTIMIZERS: dict[str, tuple[str, ...]] = {
    "SGD": ("pytorch", "tensorflow"),
    "Adam": ("pytorch", "tensorflow"),
    "AdamW": ("pytorch", "tensorflow"),
    "RMSprop": ("pytorch", "tensorflow"),
    "Adagrad": ("pytorch", "tensorflow"),
    "Adadelta": ("pytorch", "tensorflow"),
    "Adamax": ("pytorch", "tensorflow"),
    "Nadam": ("pytorch", "tensorflow"),
    "Ftrl": ("tensorflow",),
    "Lion": ("tensorflow",),
    "Adafactor": ("pytorch", "tensorflow"),
}


def optimizer_problems(optimizer: Any, framework: str, path: str) -> list[str]:
    """What is wrong with ``train.optimizer`` (``{name: {arguments}}``) for ``framework``."""
    if not isinstance(optimizer, Mapping) or len(optimizer) != 1:
        return [f"{path}: name exactly one optimizer, e.g. {{SGD: {{learning_rate: 0.001}}}}, got {optimizer!r}"]
    ((name, args),) = optimizer.items()
    supported = [n for n, frameworks in OPTIMIZERS.items() if framework in frameworks]
    canonical = {n.lower(): n for n in OPTIMIZERS}.get(str(name).lower())
    if canonical is None:
        return [f"{path}: unknown optimizer {name!r}; the {framework} backend supports {', '.join(supported)}"]
    if canonical not in supported:
        others = ", ".join(OPTIMIZERS[canonical])
        return [
            (
                f"{path}: optimizer {canonical!r} is built only by the {others} backend; "
                f"the {framework} backend supports {', '.join(supported)}"
            )
        ]
    if args is not None and not isinstance(args, Mapping):
        return [f"{path}.{name}: expected a mapping of arguments, got {args!r}"]
    lr = (args or {}).get("learning_rate", (args or {}).get("lr"))
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0):
        return [f"{path}.{name}.learning_rate: expected a positive number, got {lr!r}"]
    return []


def check_optimizer(optimizer: Any, framework: str, path: str = "train.optimizer") -> tuple[str, dict]:
    """``(canonical name, arguments)`` of ``train.optimizer``; a :class:`ConfigError`
    naming the supported names when ``framework``'s backend does not build it."""
    problems = optimizer_problems(optimizer, framework, path)
    if problems:
        raise ConfigError(problems)
    ((name, args),) = optimizer.items()
    return {n.lower(): n for n in OPTIMIZERS}[str(name).lower()], dict(args or {})


# --------------------------------------------------------------------------------------
# Loss types, loss weights, temperatures
# --------------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def loss_weight_problems(weights: Any, path: str, count: int | None = None, sum_to_one: bool = False) -> list[str]:
    """What is wrong with ``loss_weights``: each a finite number >= 0, ``count`` of them,
    and (output distillation, whose two terms are a convex mix) summing to 1."""
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence):
        return [f"{path}: expected a list of weights, got {weights!r}"]
    weights = list(weights)
    bad = [w for w in weights if not _number(w) or w < 0]
    if bad:
        return [f"{path}: weights are non-negative numbers, got {weights!r}"]
    if count is not None and len(weights) != count:
        return [f"{path}: {len(weights)} weights for {count} loss types"]
    if sum_to_one and abs(sum(weights) - 1.0) > 1e-6:
        return [
            (
                f"{path}: {weights!r} sum to {sum(weights):g}; the weights of [student-vs-targets, student-vs-teacher] "
                f"must sum to 1, e.g. [0.5, 0.5]"
            )
        ]
    return []


def check_loss_weights(weights: Any, path: str, count: int | None = None, sum_to_one: bool = False) -> list[float]:
    """``weights`` as floats, or a :class:`ConfigError` (see :func:`loss_weight_problems`)."""
    problems = loss_weight_problems(weights, path, count, sum_to_one)
    if problems:
        raise ConfigError(problems)
    return [float(w) for w in weights]


def loss_type_problems(loss_types: Any, path: str, count: int | None = None, output: bool = False) -> list[str]:
    """What is wrong with ``loss_types``: names (strings), ``count`` of them; output
    distillation takes two, the first ``CE`` (class labels) or ``MSE`` (regression).
    Whether a name is a registered loss is checked by the backend's loss registry."""
    if isinstance(loss_types, str | bytes) or not isinstance(loss_types, Sequence):
        return [f"{path}: expected a list of loss type names, got {loss_types!r}"]
    loss_types = list(loss_types)
    for t in loss_types:
        if not isinstance(t, str):
            return [f"{path}: loss type names are strings, got {t!r}"]
    if output:
        if len(loss_types) != OUTPUT_LOSS_TYPES:
            return [
                (
                    f"{path}: output distillation takes 2 loss types [student-vs-targets, student-vs-teacher], "
                    f"e.g. ['CE', 'KL'], got {loss_types!r}"
                )
            ]
        if loss_types[0] not in TARGET_LOSS_TYPES:
            return [
                (
                    f"{path}[0]: the student-vs-targets loss is 'CE' (class labels) or 'MSE' (regression), "
                    f"got {loss_types[0]!r}"
                )
            ]
    elif count is not None and len(loss_types) != count:
        return [f"{path}: {len(loss_types)} loss types for {count} layer mappings"]
    return []


def check_loss_types(loss_types: Any, path: str, count: int | None = None, output: bool = False) -> list[str]:
    """``loss_types`` as a list, or a :class:`ConfigError` (see :func:`loss_type_problems`)."""
    problems = loss_type_problems(loss_types, path, count, output)
    if problems:
        raise ConfigError(problems)
    return list(loss_types)


def check_temperature(temperature: Any, path: str) -> float:
    """The softening temperature ``T`` of output distillation: a finite number > 0."""
    if not _number(temperature) or not temperature > 0:
        raise ConfigError(f"{path}: must be a positive number, got {temperature!r}")
    return float(temperature)


# --------------------------------------------------------------------------------------
# Layer outputs: processes and logits
# --------------------------------------------------------------------------------------


def describe_output(output: Any) -> str:
    """A short description of an output for error messages."""
    shape = getattr(output, "shape", None)
    if shape is not None and not isinstance(output, Mapping):
        return f"a tensor of shape {tuple(shape)}"
    if isinstance(output, Mapping):
        return f"a {type(output).__name__} with keys {list(output.keys())}"
    if isinstance(output, Sequence) and not isinstance(output, str):
        return f"a {type(output).__name__} of {len(output)} items"
    return f"a {type(output).__name__}"


def _is_index(process: Any) -> bool:
    return (isinstance(process, int) and not isinstance(process, bool)) or (
        isinstance(process, str) and process.lstrip("-").isdigit()
    )


def select_output(output: Any, process: Any, where: str = "output process") -> Any:
    """The part of a layer's or model's ``output`` that ``process`` names.

    - ``''`` / None: the whole output (a one-item tuple or list is its item);
    - a callable: ``process(output)``;
    - an integer or a string of digits (``'1'``): that item of a tuple / list, or of a
      ``ModelOutput`` (``to_tuple()``, its non-None fields in order). Indexing a plain
      mapping is an error naming its keys (its order is no contract), unless the mapping
      has that very string as a key;
    - any other string: that key of a mapping / ``ModelOutput``.

    A part that is None (attention maps a model did not return) is an error.
    """
    if callable(process):
        value = process(output)
    elif process is None or process == "":
        value = output
        if isinstance(value, tuple | list) and len(value) == 1:
            value = value[0]
    elif _is_index(process):
        index = int(process)
        if isinstance(output, Mapping) and not hasattr(output, "to_tuple"):
            if process in output:
                value = output[process]
            else:
                raise ConfigError(
                    f"{where}: process {process!r} indexes {describe_output(output)}; "
                    f"a mapping is selected by key: use one of {list(output.keys())}"
                )
        else:
            items = output.to_tuple() if hasattr(output, "to_tuple") else output
            if not isinstance(items, tuple | list):
                raise ConfigError(
                    f"{where}: process {process!r} indexes the output, but it is {describe_output(output)}; "
                    f"use '' for the whole output"
                )
            if not -len(items) <= index < len(items):
                raise ConfigError(
                    f"{where}: process {process!r} is out of range: the output is {describe_output(output)}"
                )
            value = items[index]
    elif isinstance(process, str):
        if not isinstance(output, Mapping):
            raise ConfigError(
                f"{where}: process {process!r} is a key, but the output is {describe_output(output)}; "
                f"use an index ('0') or ''"
            )
        if output.get(process) is None and process not in output:
            raise ConfigError(f"{where}: key {process!r} not in the output; it has keys {list(output.keys())}")
        value = output[process]
    else:
        raise ConfigError(f"{where}: a process is '', an index ('1'), a key or a callable, got {process!r}")
    if value is None:
        raise ConfigError(
            f"{where}: process {process!r} gives None. Attention maps and hidden states are only returned when "
            f"asked for (output_attentions / output_hidden_states), and attention maps only by eager attention: "
            f"build the model with attn_implementation='eager'"
        )
    return value


#: keys of a model output that hold its logits, in order of preference.
LOGITS_KEYS = ("logits", "prediction_logits")


def find_logits(outputs: Any) -> Any:
    """The logits in a model's ``outputs``: ``logits`` (else ``prediction_logits``) of a
    mapping / ``ModelOutput``, the first item of a tuple or list, or the outputs
    themselves when they are a tensor (anything with a ``shape``). A mapping without
    those keys is an error naming its keys: guessing another entry would silently
    distil the wrong tensor."""
    if isinstance(outputs, Mapping):
        for key in LOGITS_KEYS:
            if outputs.get(key) is not None:
                return outputs[key]
        raise ConfigError(
            f"the model's outputs have no logits: keys {list(outputs.keys())}; return 'logits' "
            f"(or distil another output with IntermediateLayersKnowledgeDistillationLoss)"
        )
    if isinstance(outputs, tuple | list):
        if outputs:
            return outputs[0]
        raise ConfigError("the model's outputs are an empty tuple: return the logits")
    if hasattr(outputs, "shape"):
        return outputs
    raise ConfigError(f"cannot find logits in the model's outputs: {describe_output(outputs)}")


# --------------------------------------------------------------------------------------
# Padded batches
# --------------------------------------------------------------------------------------
#
# On a padded batch every per-token loss averages over the real positions only (issue #20;
# as TextBrewer's masked losses and Hugging Face's ignore_index=-100 do). Each backend
# hands a loss -- built-in or a plugin's -- the features *with the padded positions
# removed*: every dimension that follows the padded length is cut to the batch's last
# real position, padded positions left inside are zeroed, and the batch dimension and the
# first per-token dimension are merged into one of the real positions ((B, L, D) hidden
# states -> (N_real, D); (B, H, L, L) attention maps -> (N_real, H, L_longest): real query
# rows, keys past an example's end zero). A loss that averages over every dimension but
# the last one therefore gets the masked mean without knowing about padding.


def token_dims(full_shape: Sequence[int], short_shape: Sequence[int], seq_len: int) -> tuple[int, ...] | None:
    """Which dimensions of an output follow the padded length: measured by running the
    model on one example at ``seq_len`` tokens (``full_shape``) and at ``seq_len - 1``
    (``short_shape``); the dimensions that shrink by one. ``()``: none (a pooled output);
    None: the shape changes some other way (the output cannot be reduced to its real
    positions). Measured, not guessed from sizes: a pooled ``(B, 384)`` output of a batch
    padded to 384 tokens is not per-token."""
    full, short = tuple(full_shape), tuple(short_shape)
    if len(full) != len(short) or not full or full[0] != short[0]:
        return None
    changed = tuple(d for d in range(1, len(full)) if full[d] != short[d])
    if all(full[d] == seq_len and short[d] == seq_len - 1 for d in changed):
        return changed
    return None


# --------------------------------------------------------------------------------------
# Stages and layer mappings
# --------------------------------------------------------------------------------------


def is_single_mapping(item: Any) -> bool:
    """A single layer mapping (a list of names and processes, or a ``LayerMapping``),
    as opposed to a group of them."""
    from .config.schema import LayerMapping

    return isinstance(item, LayerMapping) or (
        isinstance(item, Sequence)
        and not isinstance(item, str | bytes)
        and len(item) > 0
        and all(isinstance(x, str | int) or x is None or callable(x) for x in item)
        and isinstance(item[0], str)
    )


def normalize_layer_mappings(
    layer_mappings: Any,
    loss_types: Any = None,
    loss_weights: Any = None,
    owner: str = "",
    mappings_field: str = "layer_mappings",
) -> tuple[list, list[str], list[float]]:
    """Flat ``(mappings, loss_types, loss_weights)`` of one intermediate-layer criterion
    from the flat form (a list of 2- or 4-item mappings) or the grouped form of the
    flash-distillation config (a list of groups, with one list of types / weights per
    group). Defaults: ``MSE`` and equal weights summing to 1. Errors name
    ``owner.<field>`` (``owner``: the criterion or config section)."""
    from .config.schema import LayerMapping

    def field(name: str) -> str:
        return f"{owner}.{name}" if owner else name

    path = field(mappings_field)

    if isinstance(layer_mappings, str) or not isinstance(layer_mappings, Sequence) or not layer_mappings:
        raise ConfigError(
            f"{path}: a non-empty list of (student_layer, [student_process,] teacher_layer[, teacher_process]), "
            f"got {layer_mappings!r}"
        )
    grouped = not is_single_mapping(layer_mappings[0])

    def flatten(values: Any) -> Any:
        if values is None or not grouped:
            return values
        if all(isinstance(v, Sequence) and not isinstance(v, str) for v in values):
            return [x for group in values for x in group]
        return values

    items = [m for group in layer_mappings for m in group] if grouped else list(layer_mappings)
    mappings = []
    for i, item in enumerate(items):
        try:
            mappings.append(LayerMapping.parse(item))
        except ValueError as exc:
            raise ConfigError(f"{path}[{i}]: {exc}") from None
    types = flatten(loss_types)
    types = ["MSE"] * len(mappings) if types is None else check_loss_types(types, field("loss_types"), len(mappings))
    weights = flatten(loss_weights)
    if weights is None:
        weights = [1.0 / len(mappings)] * len(mappings)
    weights = check_loss_weights(weights, field("loss_weights"), len(mappings))
    return mappings, types, weights


# The config-section form of the rules above lives with the schema it reads (autokd.config
# imports this module; autokd/__init__ imports this one first, so every name above exists).
from .config.stages import normalize_stages  # noqa: E402
from .stage_templates import (  # noqa: E402
    drop_attention_maps,
    expand_for_student,
    expand_stage_budget,
    expand_stage_templates,
    is_template,
    template_teacher_layers,
)
