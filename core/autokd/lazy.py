"""Importing on first use, the one way for every plugin: a plugin's entry point and its
package ``__init__`` must stay cheap (``autokd plugins`` imports every installed plugin
to list it), so nothing that pulls in torch or TensorFlow is imported until it is used.

- :func:`lazy_object`: a stand-in for ``"package.module:attribute"`` to register (a loss,
  a criterion, a builder, an evaluator, a backend); it imports its target when first
  called or inspected, and :func:`resolve_lazy` gives the real object for hot paths.
- :func:`lazy_module_attrs`: a package's module ``__getattr__`` and ``__dir__`` that
  import each public name from its submodule on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["LazyObject", "lazy_module_attrs", "lazy_object", "resolve_lazy"]


class LazyObject:
    """A stand-in for ``module:attribute`` that imports it when first called or inspected."""

    def __init__(self, target: str):
        module, _, attr = target.partition(":")
        if not module or not attr:
            raise ValueError(f"a lazy object's target is 'package.module:attribute', got {target!r}")
        self._target = target
        self._resolved: Any = None
        # What a function's introspection shows, without importing the target.
        self.__name__ = self.__qualname__ = attr.rpartition(".")[2]
        self.__module__ = module
        self.__doc__ = f"``{module}.{attr}``, imported on first use."

    def resolve(self) -> Any:
        """The target, imported on the first call."""
        if self._resolved is None:
            module, _, attr = self._target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._resolved = obj
        return self._resolved

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_target", "_resolved"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"<lazy {self._target}>"


def lazy_object(target: str) -> LazyObject:
    """A stand-in for ``target`` (``"package.module:attribute"``), imported on first use."""
    return LazyObject(target)


def resolve_lazy(obj: Any) -> Any:
    """``obj`` itself, or the real object a :class:`LazyObject` stands for."""
    return obj.resolve() if isinstance(obj, LazyObject) else obj


def lazy_module_attrs(
    package: str, exports: Mapping[str, str | None]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``'s ``__init__``: ``exports`` maps
    each public name to the submodule that defines it (``None``: the name is itself a
    submodule). A name is imported on first access and then kept in the package.

    Use::

        __getattr__, __dir__ = autokd.lazy_module_attrs(__name__, _EXPORTS)
    """
    import sys

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        submodule = exports[name]
        if submodule is None:
            return importlib.import_module(f"{package}.{name}")
        value = getattr(importlib.import_module(f"{package}.{submodule}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
