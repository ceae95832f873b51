"""Features of intermediate layers of Keras models.

Keras has no forward hooks, so a feature is taken in one of two ways:

- **Model outputs.** A name whose first part is a field of the model's output
  (``hidden_states``, ``attentions``, ``logits``, ``last_hidden_state``...) is read from
  the output; transformers TF models are then called with ``output_hidden_states=True``
  / ``output_attentions=True`` as needed. ``'hidden_states.2'`` or
  ``('hidden_states', '2')`` is the output of the second encoder layer, ``''`` the whole
  output.
- **Named layers.** Any other name is a path to a sublayer: dotted attribute names
  (``bert.encoder.layer.0.attention``), list indices, or Keras layer names
  (``model.get_layer`` for functional models, ``layer_._0`` in transformers). The
  sublayer's ``call`` is wrapped so each forward pass records its output; this works in
  eager mode and while a ``tf.function`` is traced, because the capture happens in Python
  around the layer's own call.

A feature's *process* then picks a part of what was taken: ``''`` (all), an index
(``'1'``), a key (``'logits'``) or a callable, by the core's rule
(:func:`autokd.distill.select_output`; an index into a plain dict is an error naming its
keys).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from autokd import AutoKDError, ConfigError
from autokd.distill import find_logits, select_output

from ._tf import keras

__all__ = ["resolve_layer", "select", "call_model", "FeatureExtractor", "logits_of"]

# Fields of transformers model outputs (and of dict outputs of Keras models) that are
# read from the output rather than from a hooked layer.
OUTPUT_FIELDS = (
    "logits",
    "hidden_states",
    "attentions",
    "last_hidden_state",
    "pooler_output",
    "start_logits",
    "end_logits",
    "prediction_logits",
    "cross_attentions",
)


def _children(obj: Any) -> list:
    """The direct sublayers of a Keras layer or model."""
    flatten = getattr(obj, "_flatten_layers", None)
    if callable(flatten):
        try:
            return list(flatten(include_self=False, recursive=False))
        except TypeError:  # pragma: no cover - very old Keras
            pass
    return list(getattr(obj, "layers", []) or [])


def _child(obj: Any, name: str) -> Any:
    """One step of a layer path: a list index, an attribute holding layers, or a Keras
    layer name; None when nothing matches."""
    Layer = keras().layers.Layer
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        if name.lstrip("-").isdigit() and -len(obj) <= int(name) < len(obj):
            return obj[int(name)]
        return None
    if name.isidentifier() and not name.startswith("_"):
        value = getattr(obj, name, None)
        if isinstance(value, Layer) or (
            isinstance(value, Sequence) and not isinstance(value, str) and value and isinstance(value[0], Layer)
        ):
            return value
    for child in _children(obj):
        if getattr(child, "name", None) == name:
            return child
    return None


def resolve_layer(model: Any, name: str) -> Any:
    """The sublayer of ``model`` at the dotted path ``name``, or None.

    Parts may be attribute names, list indices or Keras layer names; Keras names that
    themselves contain dots (transformers' ``layer_._0``) are matched greedily.
    """
    if not name:
        return model
    parts = name.split(".")
    obj = model
    i = 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            found = _child(obj, ".".join(parts[i:j]))
            if found is not None:
                obj, i = found, j
                break
        else:
            return None
    if isinstance(obj, Sequence):
        return None
    return obj


def select(value: Any, process: Any) -> Any:
    """The part of a layer's or model's output that ``process`` names: the core's rule,
    :func:`autokd.distill.select_output` (the same as the PyTorch plugin's)."""
    return select_output(value, process)


def logits_of(output: Any) -> Any:
    """The logits in a model's output: :func:`autokd.distill.find_logits`."""
    return find_logits(output)


def _accepts(model: Any, argument: str) -> bool:
    call = getattr(model, "call", None)
    if call is None:
        return False
    try:
        return argument in inspect.signature(call).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False


def call_model(model: Any, inputs: Any, training: bool = False, hidden_states: bool = False, attentions: bool = False):
    """Call a Keras or transformers TF model on a batch's inputs (a tensor, a tuple of
    positional inputs or a mapping of keyword inputs)."""
    kwargs: dict[str, Any] = {"training": training}
    if hidden_states and _accepts(model, "output_hidden_states"):
        kwargs["output_hidden_states"] = True
    if attentions and _accepts(model, "output_attentions"):
        kwargs["output_attentions"] = True
    if _accepts(model, "return_dict"):
        kwargs["return_dict"] = True
    if isinstance(inputs, tuple):
        return model(*inputs, **kwargs)
    return model(inputs, **kwargs)


class _LayerHook:
    """Wraps one layer's ``call`` so each call records its output."""

    def __init__(self, layer: Any, store: dict, key: str):
        self.layer = layer
        self._original = layer.__dict__.get("call")
        bound = layer.call

        def recording_call(*args, **kwargs):
            out = bound(*args, **kwargs)
            store[key] = out
            return out

        # Keras inspects the signature of ``call`` (``training``, ``mask``): keep it.
        recording_call.__signature__ = inspect.signature(bound)
        layer.call = recording_call

    def remove(self) -> None:
        if self._original is None:
            self.layer.__dict__.pop("call", None)
        else:
            self.layer.call = self._original


class FeatureExtractor:
    """Calls a model and returns its output with the features named by ``specs``.

    :param model: a Keras (tf-keras) model, functional or subclassed, e.g. a
        transformers TF model.
    :param specs: ``(layer_name, process)`` pairs; see the module docs.
    :param role: ``'student'`` or ``'teacher'``, for error messages.

    Use it as a context manager (or call :meth:`close`) so the layers' ``call`` methods
    are restored.
    """

    def __init__(self, model: Any, specs: Sequence[tuple[str, Any]], role: str = "model"):
        self.model = model
        self.role = role
        self._store: dict[str, Any] = {}
        self._hooks: dict[str, _LayerHook] = {}
        self._plan: list[tuple[str, str, list[str], Any]] = []  # (kind, key, output path, process)
        self.hidden_states = False
        self.attentions = False
        for layer_name, process in specs:
            self._plan.append(self._resolve(layer_name, process))

    def _resolve(self, layer_name: str, process: Any):
        if layer_name == "":
            return ("output", "", [], process)
        first, *rest = layer_name.split(".")
        layer = None if first in OUTPUT_FIELDS else resolve_layer(self.model, layer_name)
        if layer is not None:
            if layer is self.model:
                return ("output", "", [], process)
            if layer_name not in self._hooks:
                self._hooks[layer_name] = _LayerHook(layer, self._store, layer_name)
            return ("layer", layer_name, [], process)
        if first in OUTPUT_FIELDS:
            self.hidden_states |= first == "hidden_states"
            self.attentions |= first in ("attentions", "cross_attentions")
            return ("output", first, rest, process)
        self.close()
        top = [getattr(c, "name", "?") for c in _children(self.model)]
        raise ConfigError(
            f"layer_mappings_for_knowledge_transfer: {self.role} layer {layer_name!r} not found in "
            f"{type(self.model).__name__}: it is neither a sublayer (attribute path or Keras layer name; "
            f"top-level layers: {top}) nor an output field ({', '.join(OUTPUT_FIELDS)})"
        )

    def __call__(self, inputs: Any, training: bool = False) -> tuple[Any, list]:
        self._store.clear()
        output = call_model(self.model, inputs, training, self.hidden_states, self.attentions)
        features = []
        for kind, key, path, process in self._plan:
            if kind == "layer":
                if key not in self._store:
                    raise AutoKDError(
                        f"{self.role} layer {key!r} was not called in the forward pass: pick a layer the model uses"
                    )
                value = self._store[key]
            else:
                value = output
                if key == "logits":
                    value = logits_of(value)
                elif key:
                    value = select(value, key)
                    if value is None:
                        raise AutoKDError(f"the {self.role}'s output has no {key!r}")
                for part in path:
                    value = select(value, part)
            features.append(select(value, process))
        self._store.clear()
        return output, features

    def close(self) -> None:
        for hook in self._hooks.values():
            hook.remove()
        self._hooks.clear()

    def __enter__(self) -> FeatureExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
