"""Plugin manager: loads plugins from the ``autokd`` entry-point group and keeps the
registry of what each one registered.

Loading is lazy: it happens on the first call of :func:`registry`, never at
``import autokd``. Each plugin is imported and its hooks are called one plugin at a time,
so a broken plugin is reported with its own and its distribution's names, and the others
still load (a warning by default, an error under ``AUTOKD_STRICT_PLUGINS=1``).

Environment:

- ``AUTOKD_DISABLE_PLUGINS=name,...``: plugins (entry-point or distribution names) not
  to load.
- ``AUTOKD_LOAD_PLUGINS=name,...``: load only these plugins (the core's built-ins always
  load).
- ``AUTOKD_STRICT_PLUGINS=1``: plugin problems are errors, not warnings.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import PluginError, UnknownNameError

__all__ = ["PluginInfo", "PluginWarning", "Registration", "Registry", "add_plugin", "registry", "reset"]

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
BUILTIN_PLUGIN = "autokd"

FRAMEWORKS = ("pytorch", "tensorflow")

# Which distribution provides the usual names, for the "pip install ..." hint.
_PROVIDERS: dict[str, dict[str, str]] = {
    "advisors": {
        **dict.fromkeys(["bo", "bayesian", "tpe", "nsga2"], "autokd-optuna"),
        **dict.fromkeys(
            ["nevergrad", "ngopt", "de", "twopointsde", "cma", "oneplusone", "portfoliodiscreteoneplusone"],
            "autokd-nevergrad",
        ),
    },
    "evaluators": dict.fromkeys(
        ["latency", "params", "flops", "model_size", "onnx_latency", "onnx_latency_int8"], "autokd-latency"
    ),
}
_FRAMEWORK_PROVIDERS = {"pytorch": "autokd-torch", "tensorflow": "autokd-tensorflow"}


class PluginWarning(UserWarning):
    """A plugin could not be loaded or registered something twice."""


@attrs.frozen
class Registration:
    """One thing a plugin registered."""

    kind: str
    name: str
    value: Any
    framework: str | None
    plugin: str
    distribution: str | None
    meta: dict = attrs.field(factory=dict)
    aliases: tuple[str, ...] = ()


@attrs.define
class PluginInfo:
    """A loaded (or failed) plugin, as ``autokd plugins`` lists it."""

    name: str
    distribution: str | None
    version: str | None
    registrations: list[Registration] = attrs.field(factory=list)
    error: str | None = None


def _strict() -> bool:
    return os.environ.get("AUTOKD_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on")


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return None
    return {n.strip().lower() for n in raw.split(",") if n.strip()}


def _report(message: str) -> None:
    if _strict():
        raise PluginError(message)
    warnings.warn(message + " (set AUTOKD_STRICT_PLUGINS=1 to make this an error)", PluginWarning, stacklevel=4)


def _who(plugin: str, distribution: str | None) -> str:
    return f"plugin {plugin!r}" + (f" (distribution {distribution!r})" if distribution else "")


# One registration of each kind, in messages ("unknown loss 'X'", not "unknown losse").
_SINGULAR = {
    "advisors": "advisor",
    "model_builders": "model builder",
    "criteria": "criterion",
    "losses": "loss",
    "trainers": "trainer",
    "evaluators": "evaluator",
}


class Kind:
    """The registrations of one kind (advisors, losses, ...), looked up by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self.singular = _SINGULAR.get(kind, kind)
        self._entries: dict[tuple[str, str | None], Registration] = {}
        self._aliases: dict[str, str] = {}

    # registering --------------------------------------------------------------------
    def _add(self, reg: Registration) -> None:
        keys = [reg.name, *reg.aliases]
        for key in keys:
            lookup = (key.lower(), reg.framework)
            existing = self._entries.get(lookup)
            if existing is None:
                existing_alias = self._aliases.get(key.lower())
                if existing_alias is not None and existing_alias != reg.name.lower() and reg.framework is None:
                    existing = self._entries.get((existing_alias, None))
            if existing is not None:
                fw = f" for framework {reg.framework!r}" if reg.framework else ""
                _report(
                    f"{self.singular} {key!r}{fw} is registered twice: by "
                    f"{_who(existing.plugin, existing.distribution)} and by "
                    f"{_who(reg.plugin, reg.distribution)}; keeping the first. Uninstall one "
                    f"of them or block it with AUTOKD_DISABLE_PLUGINS={reg.plugin}"
                )
                return
        self._entries[(reg.name.lower(), reg.framework)] = reg
        for alias in reg.aliases:
            self._aliases[alias.lower()] = reg.name.lower()

    # looking up ---------------------------------------------------------------------
    def _find(self, name: str, framework: str | None) -> list[Registration]:
        key = name.lower()
        key = self._aliases.get(key, key)
        found = [r for (n, _fw), r in self._entries.items() if n == key]
        if framework is not None:
            exact = [r for r in found if r.framework == framework]
            return exact or [r for r in found if r.framework is None]
        return found

    def registration(self, name: str, framework: str | None = None) -> Registration:
        """The :class:`Registration` of ``name``; raises listing what is available."""
        if not isinstance(name, str):
            raise UnknownNameError(f"{self.singular} name must be a string, got {name!r}")
        found = self._find(name, framework)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            fws = sorted(str(r.framework) for r in found)
            raise UnknownNameError(
                f"{self.singular} {name!r} is registered for several "
                f"frameworks {fws}: say which one (framework='pytorch' or 'tensorflow')"
            )
        raise UnknownNameError(self._unknown_message(name, framework))

    def get(self, name: str, framework: str | None = None) -> Any:
        """What was registered as ``name`` (for ``framework``, or for any framework)."""
        return self.registration(name, framework).value

    def __contains__(self, name: str) -> bool:
        return bool(self._find(name, None))

    def names(self, framework: str | None = None) -> list[str]:
        return sorted(
            {r.name for r in self._entries.values() if framework is None or r.framework in (None, framework)}
        )

    def registrations(self) -> list[Registration]:
        return list(self._entries.values())

    def direction(self, name: str) -> bool | None:
        """The ``higher_is_better`` an evaluator declared, or None."""
        for reg in self._find(name, None):
            if reg.meta.get("higher_is_better") is not None:
                return bool(reg.meta["higher_is_better"])
        return None

    def _unknown_message(self, name: str, framework: str | None) -> str:
        what = self.singular
        fw = f" for framework {framework!r}" if framework else ""
        available = self.names(framework)
        text = f"unknown {what} {name!r}{fw}. Available: {', '.join(available) if available else 'none'}."
        provider = _PROVIDERS.get(self.kind, {}).get(name.lower())
        if provider is None and self.kind in ("trainers",) and name in _FRAMEWORK_PROVIDERS:
            provider = _FRAMEWORK_PROVIDERS[name]
        if provider is None and self.kind in ("criteria", "losses", "model_builders") and framework:
            provider = _FRAMEWORK_PROVIDERS.get(framework)
        installed = any(r.distribution == provider for r in self._entries.values())
        if provider is not None and not installed:
            text += f" {name} is provided by {provider}: pip install {provider}"
        return text


class Registry:
    """Everything the loaded plugins registered, one :class:`Kind` per hook."""

    KINDS = ("advisors", "model_builders", "criteria", "losses", "trainers", "evaluators")

    def __init__(self):
        self.advisors = Kind("advisors")
        self.model_builders = Kind("model_builders")
        self.criteria = Kind("criteria")
        self.losses = Kind("losses")
        self.trainers = Kind("trainers")
        self.evaluators = Kind("evaluators")
        self.plugins: list[PluginInfo] = []

    def kind(self, name: str) -> Kind:
        if name not in self.KINDS:
            raise KeyError(name)
        return getattr(self, name)


def _framework_arg(framework: Any, who: str, what: str, required: bool) -> str | None:
    if framework is None and not required:
        return None
    if framework not in FRAMEWORKS:
        raise PluginError(
            f"{who} registered {what} with framework={framework!r}; use one of {list(FRAMEWORKS)}"
            + ("" if required else " or None")
        )
    return framework


def _make_registers(info: PluginInfo, reg: Registry) -> dict[str, Callable[..., None]]:
    who = _who(info.name, info.distribution)

    def add(kind: str, name: Any, value: Any, framework: str | None, **meta: Any) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"{who} registered a {_SINGULAR[kind]} with an invalid name {name!r}")
        aliases = tuple(meta.pop("aliases", ()) or ())
        entry = Registration(kind, name, value, framework, info.name, info.distribution, meta, aliases)
        before = len(reg.kind(kind)._entries)
        reg.kind(kind)._add(entry)
        if len(reg.kind(kind)._entries) > before:
            info.registrations.append(entry)

    def register_advisor(name, factory, aliases=()):
        if not callable(factory):
            raise PluginError(f"{who} registered advisor {name!r} with a factory that is not callable")
        add("advisors", name, factory, None, aliases=aliases)

    def register_model_builder(name, builder, framework=None):
        add("model_builders", name, builder, _framework_arg(framework, who, f"model builder {name!r}", False))

    def register_criterion(name, criterion_cls, framework):
        add("criteria", name, criterion_cls, _framework_arg(framework, who, f"criterion {name!r}", True))

    def register_loss(name, loss_fn, framework):
        add("losses", name, loss_fn, _framework_arg(framework, who, f"loss {name!r}", True))

    def register_trainer(framework, backend):
        fw = _framework_arg(framework, who, "a trainer backend", True)
        add("trainers", fw, backend, fw)

    def register_evaluator(name, evaluator, framework=None, higher_is_better=None):
        add(
            "evaluators",
            name,
            evaluator,
            _framework_arg(framework, who, f"evaluator {name!r}", False),
            higher_is_better=higher_is_better,
        )

    return {
        "register_advisors": register_advisor,
        "register_model_builders": register_model_builder,
        "register_criteria": register_criterion,
        "register_losses": register_loss,
        "register_trainers": register_trainer,
        "register_evaluators": register_evaluator,
    }


_HOOKS = (
    "register_advisors",
    "register_model_builders",
    "register_criteria",
    "register_losses",
    "register_trainers",
    "register_evaluators",
)

_lock = threading.RLock()
_registry: Registry | None = None
_extra_plugins: list[tuple[object, str]] = []


def _entry_points():
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    seen = set()
    for ep in sorted(eps, key=lambda e: e.name):
        if ep.name in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(ep.name)
        yield ep


def _load() -> Registry:
    reg = Registry()
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)

    from . import _builtin

    candidates: list[tuple[PluginInfo, Callable[[], object]]] = []
    from . import __version__

    candidates.append((PluginInfo(BUILTIN_PLUGIN, "autokd", __version__), lambda: _builtin))

    disabled = _names_from_env("AUTOKD_DISABLE_PLUGINS") or set()
    allowed = _names_from_env("AUTOKD_LOAD_PLUGINS")
    for ep in _entry_points():
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        version = dist.version if dist is not None else None
        names = {ep.name.lower(), (dist_name or "").lower()}
        if names & disabled:
            continue
        if allowed is not None and not (names & allowed):
            continue
        candidates.append((PluginInfo(ep.name, dist_name, version), ep.load))
    for obj, name in _extra_plugins:
        candidates.append((PluginInfo(name, None, None), lambda obj=obj: obj))

    for info, load in candidates:
        reg.plugins.append(info)
        try:
            plugin = load()
            pm.register(plugin, name=info.name)
        except Exception as exc:  # a broken plugin must not break the others
            info.error = f"{type(exc).__name__}: {exc}"
            _report(f"{_who(info.name, info.distribution)} failed to load: {info.error}")
            continue
        unknown_hooks = [
            attr
            for attr in dir(plugin)
            if attr.startswith("register_") and attr not in _HOOKS and callable(getattr(plugin, attr, None))
            and hasattr(getattr(plugin, attr), hookspecs.PROJECT_NAME + "_impl")
        ]
        if unknown_hooks:
            _report(f"{_who(info.name, info.distribution)} implements unknown hooks {unknown_hooks}; known: {list(_HOOKS)}")
        registers = _make_registers(info, reg)
        for hook_name in _HOOKS:
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin_name != info.name:
                    continue
                try:
                    # Call one plugin at a time so each registration is attributed to it.
                    kwargs = {"register": registers[hook_name]}
                    impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
                except PluginError as exc:
                    if _strict():
                        raise
                    info.error = str(exc)
                    _report(str(exc))
                except Exception as exc:
                    info.error = f"{hook_name} raised {type(exc).__name__}: {exc}"
                    _report(f"{_who(info.name, info.distribution)}: {info.error}")
    return reg


def registry(reload: bool = False) -> Registry:
    """The registry of every loaded plugin's registrations (loaded on first use)."""
    global _registry
    with _lock:
        if _registry is None or reload:
            _registry = _load()
        return _registry


def reset() -> None:
    """Forget the loaded registry; the next :func:`registry` call loads plugins again."""
    global _registry
    with _lock:
        _registry = None


def add_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object (a module or instance with hook implementations) without
    an entry point, e.g. in a script or a test. Takes effect at the next load."""
    with _lock:
        _extra_plugins.append((plugin, name or getattr(plugin, "__name__", None) or repr(plugin)))
        reset()


def remove_plugin(name: str) -> None:
    """Undo :func:`add_plugin`."""
    with _lock:
        _extra_plugins[:] = [(p, n) for p, n in _extra_plugins if n != name]
        reset()
