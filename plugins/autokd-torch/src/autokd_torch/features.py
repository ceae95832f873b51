"""Feature capture: forward hooks on modules named by dotted path, and the processes that
pick one part of a module's output.

A *feature spec* is a ``(layer, process)`` pair: ``layer`` is a dotted module name as in
``model.named_modules()`` (``''`` is the model itself) and ``process`` is

- ``''``: the whole output (a one-element tuple is unwrapped);
- an integer or a string of digits (``'1'``): that item of a tuple / ``ModelOutput``
  (an index into a plain dict is an error naming its keys);
- any other string: that key of a dict / ``ModelOutput`` (``'logits'``);
- a callable (Python API): ``process(output) -> tensor``.

The rule is the core's :func:`autokd.distill.select_output`, the same in every backend.

Captured features are keyed by their spec.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from autokd import ConfigError
from autokd.distill import describe_output, select_output

__all__ = ["FeatureSpec", "FeatureCapture", "find_module", "apply_process", "spec_text", "uses_attention_maps"]

FeatureSpec = tuple[str, Any]


def find_module(model: nn.Module, name: str, role: str = "model") -> nn.Module:
    """The submodule called ``name`` (``''`` is ``model``); an unknown name is an error
    naming the nearest names that exist."""
    if name == "":
        return model
    modules = dict(model.named_modules())
    module = modules.get(name)
    if module is not None:
        return module
    nearest = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
    hint = f"; nearest names: {', '.join(nearest)}" if nearest else ""
    raise ConfigError(
        f"layer_mappings_for_knowledge_transfer: module {name!r} not found in the {role} "
        f"({type(model).__name__}){hint}. Names are those of model.named_modules(); '' is the model itself"
    )


def apply_process(output: Any, process: Any, where: str) -> torch.Tensor:
    """The part of a module's ``output`` that ``process`` names, as a tensor (the rule is
    :func:`autokd.distill.select_output`, shared with the TensorFlow backend)."""
    value = select_output(output, process, where)
    if isinstance(value, torch.Tensor):
        return value
    raise ConfigError(
        f"{where}: the feature must be a tensor, but process {process!r} gives {describe_output(value)}; "
        f"pick one part with an index ('0') or a key"
    )


def spec_text(spec: FeatureSpec) -> str:
    layer, process = spec
    name = layer or "<model>"
    if callable(process):
        return f"{name}[{getattr(process, '__name__', 'process')}]"
    return f"{name}[{process}]" if process not in ("", None) else name


class FeatureCapture:
    """Forward hooks that store the processed outputs of some modules of a model.

    Use as a context manager (hooks are removed on exit) or call :meth:`remove`.
    ``features`` maps each spec to its tensor from the latest forward pass.
    """

    def __init__(self, model: nn.Module, specs: Iterable[FeatureSpec], role: str = "model", detach: bool = False):
        self.model = model
        self.specs = list(dict.fromkeys(specs))
        self.role = role
        self.detach = detach
        self.features: dict[FeatureSpec, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        by_layer: dict[str, list[FeatureSpec]] = {}
        for spec in self.specs:
            by_layer.setdefault(spec[0], []).append(spec)
        modules = {layer: find_module(model, layer, role) for layer in by_layer}
        for layer, layer_specs in by_layer.items():
            self._handles.append(modules[layer].register_forward_hook(self._hook(layer_specs)))

    def _hook(self, specs: list[FeatureSpec]) -> Callable:
        def hook(_module, _inputs, output):
            for spec in specs:
                value = apply_process(output, spec[1], f"{self.role} feature {spec_text(spec)}")
                self.features[spec] = value.detach() if self.detach else value

        return hook

    def clear(self) -> None:
        self.features.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> FeatureCapture:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def missing(self) -> list[FeatureSpec]:
        return [s for s in self.specs if s not in self.features]


def uses_attention_maps(model: nn.Module, layers: Iterable[str]) -> bool:
    """Whether any of ``layers`` is an attention module (its maps need eager attention and
    ``output_attentions=True`` in transformers)."""
    modules = dict(model.named_modules())
    return any("attention" in type(modules[layer]).__name__.lower() for layer in layers if layer in modules)
