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
  load; ``none`` loads only them).

A name in either variable that no installed plugin or distribution has is reported.
- ``AUTOKD_STRICT_PLUGINS=1``: plugin problems are errors, not warnings.
"""

from __future__ import annotations

import difflib
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
    "executors": "executor",
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
        return sorted({r.name for r in self._entries.values() if framework is None or r.framework in (None, framework)})

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

    KINDS = ("advisors", "model_builders", "criteria", "losses", "trainers", "evaluators", "executors")

    def __init__(self):
        self.advisors = Kind("advisors")
        self.model_builders = Kind("model_builders")
        self.criteria = Kind("criteria")
        self.losses = Kind("losses")
        self.trainers = Kind("trainers")
        self.evaluators = Kind("evaluators")
        self.executors = Kind("executors")
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

    def must_call(what: str, name: Any, value: Any) -> None:
        if not callable(value):
            raise PluginError(
                f"{who} registered {what} {name!r} as {type(value).__name__} {value!r:.60}, which is not callable"
            )

    def register_model_builder(name, builder, framework=None):
        fw = _framework_arg(framework, who, f"model builder {name!r}", False)
        must_call("model builder", name, builder)
        add("model_builders", name, builder, fw)

    def register_criterion(name, criterion_cls, framework):
        fw = _framework_arg(framework, who, f"criterion {name!r}", True)
        must_call("criterion", name, criterion_cls)
        add("criteria", name, criterion_cls, fw)

    def register_loss(name, loss_fn, framework):
        fw = _framework_arg(framework, who, f"loss {name!r}", True)
        must_call("loss", name, loss_fn)
        add("losses", name, loss_fn, fw)

    def register_trainer(framework, backend):
        fw = _framework_arg(framework, who, "a trainer backend", True)
        # A lazy stand-in (a class with __getattr__) is not inspected: resolving it
        # would import a framework just to list plugins.
        proxy = hasattr(type(backend), "__getattr__")
        if not proxy and not callable(getattr(backend, "search_functions", None)):
            raise PluginError(
                f"{who} registered a {fw} trainer backend {backend!r:.60} without a search_functions method"
            )
        add("trainers", fw, backend, fw)

    def register_evaluator(name, evaluator, framework=None, higher_is_better=None):
        must_call("evaluator", name, evaluator)
        add(
            "evaluators",
            name,
            evaluator,
            _framework_arg(framework, who, f"evaluator {name!r}", False),
            higher_is_better=higher_is_better,
        )

    def register_executor(name, executor_factory):
        if not callable(executor_factory):
            raise PluginError(f"{who} registered executor {name!r} with a factory that is not callable")
        add("executors", name, executor_factory, None)

    return {
        "register_executors": register_executor,
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
    "register_executors",
)

_lock = threading.RLock()
_registry: Registry | None = None
_extra_plugins: list[tuple[object, str]] = []


def _entry_points():
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    seen = set()
    for ep in sorted(eps, key=lambda e: e.name):
        key = (ep.name, _dist_name(ep))
        if key in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(key)
        yield ep


def _dist_name(ep) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


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
    installed: set[str] = {BUILTIN_PLUGIN, "none"}  # AUTOKD_LOAD_PLUGINS=none: only the built-ins
    taken: dict[str, str | None] = {}
    for ep in _entry_points():
        dist = getattr(ep, "dist", None)
        dist_name = _dist_name(ep)
        version = dist.version if dist is not None else None
        names = {ep.name.lower(), (dist_name or "").lower()}
        installed |= names - {""}
        if names & disabled:
            continue
        if allowed is not None and not (names & allowed):
            continue
        if ep.name in taken:
            # pluggy knows plugins by name: a second one of that name cannot load.
            info = PluginInfo(ep.name, dist_name, version)
            info.error = f"entry point name {ep.name!r} is also used by distribution {taken[ep.name]!r}"
            reg.plugins.append(info)
            _report(
                f"{_who(ep.name, dist_name)} is not loaded: {_who(ep.name, taken[ep.name])} has the same entry-point "
                f"name. Uninstall one, or block one with AUTOKD_DISABLE_PLUGINS={dist_name or ep.name}"
            )
            continue
        taken[ep.name] = dist_name
        candidates.append((PluginInfo(ep.name, dist_name, version), ep.load))
    for var, names in (("AUTOKD_DISABLE_PLUGINS", disabled), ("AUTOKD_LOAD_PLUGINS", allowed or set())):
        unknown = sorted(names - installed)
        if unknown:
            _report(
                f"{var} names {', '.join(map(repr, unknown))}, which no installed plugin or distribution is called "
                f"(installed: {', '.join(sorted(installed))})"
            )
    for obj, name in _extra_plugins:
        candidates.append((PluginInfo(name, None, None), lambda obj=obj: obj))

    for info, load in candidates:
        reg.plugins.append(info)
        try:
            plugin = load()
            pm.register(plugin, name=info.name)
        except (Exception, SystemExit) as exc:  # a broken plugin must not break the others (nor exit autokd)
            info.error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, SystemExit):
                info.error = f"called sys.exit({exc.code!r}) at import"
            _report(f"{_who(info.name, info.distribution)} failed to load: {info.error}")
            continue
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
    _check_pending(pm, reg)
    return reg


def _check_pending(pm: pluggy.PluginManager, reg: Registry) -> None:
    """pluggy's own check for hook implementations without a spec (a misspelt
    ``registre_losses`` would otherwise be ignored), reported per plugin."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin)
            info = next((i for i in reg.plugins if i.name == name), None)
            hooks = [
                h
                for h in dir(pm.hook)
                if not h.startswith("_")
                and not getattr(pm.hook, h).has_spec()
                and any(impl.plugin is exc.plugin for impl in getattr(pm.hook, h).get_hookimpls())
            ]
            pm.unregister(exc.plugin)  # its known hooks were already called; only stop re-reporting it
            hint = ", ".join(
                f"{h!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(h, _HOOKS, n=1)) else "")
                for h in hooks
            )
            who = _who(name, info.distribution if info else None)
            message = f"{who} implements unknown hooks {hint}; known: {list(_HOOKS)}"
            if info is not None:
                info.error = message
            _report(message)


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
