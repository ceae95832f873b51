"""Structuring a document into the schema with cattrs: strict scalar hooks (no ``"3"``
for 3, no string split into a list), and cattrs' exception groups flattened into
``path: message`` lines, retrying without the bad fields so one load reports every
problem of a document."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from .schema import EvaluationConfig, ExecutorConfig


def type_name(value: Any) -> str:
    return type(value).__name__


def type_hint(value: Any) -> str:
    if isinstance(value, str) and value.rstrip().endswith(","):
        return f" (a trailing comma? YAML reads {value.strip()} as a string)"
    return ""


def _structure_int(value, _type):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type_name(value)} {value!r}{type_hint(value)}")
    return value


def _structure_float(value, _type):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type_name(value)} {value!r}{type_hint(value)}")
    return float(value)


def _structure_bool(value, _type):
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type_name(value)} {value!r}{type_hint(value)}")
    return value


def _structure_str(value, _type):
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type_name(value)} {value!r}")
    return value


def _structure_list(value, _type):
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"expected a list, got {type_name(value)} {value!r}{type_hint(value)}")
    return list(value)


def _structure_dict(value, _type):
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping, got {type_name(value)} {value!r}")
    return dict(value)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(list, _structure_list)
    conv.register_structure_hook(dict, _structure_dict)

    def int_or_list(value, _type):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            return _structure_int(value, int)
        errors = []
        out = []
        for i, v in enumerate(value):
            try:
                out.append(_structure_int(v, int))
            except TypeError as exc:
                exc.add_note(IterableValidationNoteCompat(f"index {i}", i))
                errors.append(exc)
        if errors:
            raise IterableValidationError("bad list", errors, list)
        return out

    def float_or_list(value, _type):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            return _structure_float(value, float)
        return [_structure_float(v, float) for v in value]

    def bool_or_list(value, _type):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            return _structure_bool(value, bool)
        return [_structure_bool(v, bool) for v in value]

    def optional(fn):
        return lambda value, _type: None if value is None else fn(value, _type)

    def typed_list(value, list_type):
        # cattrs would split a string into characters (`record: latency` → l, a, t...):
        # every list field refuses a lone string instead (#13), as search_space does.
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            one = f" (write [{value}] for a one-item list)" if isinstance(value, str) else ""
            raise TypeError(f"expected a list, got {type_name(value)} {value!r}{one}{type_hint(value)}")
        (item_type,) = typing.get_args(list_type)
        errors, out = [], []
        for i, v in enumerate(value):
            try:
                out.append(conv.structure(v, item_type))
            except Exception as exc:  # noqa: BLE001 - collected and reported with its index
                exc.add_note(IterableValidationNoteCompat(f"index {i}", i))
                errors.append(exc)
        if errors:
            raise IterableValidationError("bad list", errors, list_type)
        return out

    conv.register_structure_hook_func(
        lambda t: typing.get_origin(t) is list and len(typing.get_args(t)) == 1, typed_list
    )
    conv.register_structure_hook(int | list[int], int_or_list)
    conv.register_structure_hook(float | list[float], float_or_list)
    conv.register_structure_hook(bool | list[bool], bool_or_list)
    conv.register_structure_hook(int | list[int] | None, optional(int_or_list))
    conv.register_structure_hook(bool | list[bool] | None, optional(bool_or_list))

    def evaluation(value, _type):
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {type_name(value)} {value!r}")
        fixed = {k: value[k] for k in ("function", "batch_size", "record") if k in value}
        errors = []
        options = {}
        for key, opts in value.items():
            if key in fixed:
                continue
            if opts is None:
                opts = {}
            if not isinstance(opts, Mapping):
                near = did_you_mean(str(key), ["function", "batch_size", "record"])
                exc = TypeError(
                    f"unknown key{near}; a metric's options are a mapping, got {type_name(opts)} {opts!r}"
                    if near
                    else f"expected the options of metric {key!r} as a mapping (e.g. {key}: {{batch_size: 1}}), "
                    f"got {type_name(opts)} {opts!r}"
                )
                exc.add_note(IterableValidationNoteCompat(f"key {key}", key))
                errors.append(exc)
                continue
            options[str(key)] = dict(opts)
        base = conv.structure(fixed, _EvaluationFixed)
        if errors:
            raise IterableValidationError("bad evaluation", errors, EvaluationConfig)
        return EvaluationConfig(base.function, base.batch_size, base.record, options)

    conv.register_structure_hook(EvaluationConfig, evaluation)

    def executor(value, _type):
        if isinstance(value, str):  # executor: processes
            value = {"name": value}
        if not isinstance(value, Mapping):
            raise TypeError(
                f"expected a mapping like {{name: processes, max_concurrent: 2}}, got {type_name(value)} {value!r}"
            )
        fixed = {k: value[k] for k in ("name", "max_concurrent") if k in value}
        base = conv.structure(fixed, _ExecutorFixed)
        options = {str(k): v for k, v in value.items() if k not in fixed}
        return ExecutorConfig(base.name, base.max_concurrent, options)

    conv.register_structure_hook(ExecutorConfig, executor)
    return conv


@attrs.frozen
class _ExecutorFixed:
    name: str = "local"
    max_concurrent: int = 1


@attrs.frozen
class _EvaluationFixed:
    function: str | None = None
    batch_size: int | None = None
    record: list[str] = attrs.field(factory=list)


class IterableValidationNoteCompat(str):
    """A path note for errors raised by our own hooks (same shape as cattrs' notes)."""

    def __new__(cls, text: str, index):
        obj = str.__new__(cls, text)
        obj.index = index
        return obj


_converter = _make_converter()


def flatten_errors(exc: BaseException, path: str) -> list[str]:
    """cattrs' exception group as ``path: message`` lines."""
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        return [
            f"{join_path(path, key)}: unknown key" + (f" (known keys here: {', '.join(allowed)})" if allowed else "")
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, BaseExceptionGroup):
        lines = []
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                if hasattr(note, "name"):  # AttributeValidationNote
                    sub_path = join_path(path, note.name)
                elif hasattr(note, "index"):  # IterableValidationNote
                    sub_path = f"{path}[{note.index}]" if isinstance(note.index, int) else join_path(path, note.index)
            lines.extend(flatten_errors(sub, sub_path))
        return lines
    if isinstance(exc, KeyError):
        return [f"{path}: required but missing"]
    message = str(exc)
    if isinstance(exc, TypeError | ValueError) and message.startswith(("expected", "a layer", "unknown")):
        return [f"{path}: {message}"]
    return [f"{path}: {type(exc).__name__}: {message}"]


def join_path(path: str, name: Any) -> str:
    return f"{path}.{name}" if path else str(name)


def structure_section(value: Any, cls: type, path: str, problems: list[str]):
    """Structure ``value`` as ``cls``, adding every problem to ``problems``.

    When some fields are bad, the rest is structured again with those fields at their
    defaults, so the semantic checks of the good fields still run and a document's
    problems are all reported at once. Returns None when that is not possible."""
    try:
        return _converter.structure(value, cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError, TypeError, ValueError) as exc:
        problems.extend(flatten_errors(exc, path))
        bad = _bad_fields(exc)
    if not isinstance(value, Mapping) or not attrs.has(cls) or not bad:
        return None
    fields = {f.name: f for f in attrs.fields(cls)}
    if any(name in fields and fields[name].default is attrs.NOTHING for name in bad):
        return None
    retry = {k: v for k, v in value.items() if k in fields and k not in bad}
    try:
        obj = _converter.structure(retry, cls)
    except Exception:
        return None
    return attrs.evolve(obj) if obj is not None else None


def _bad_fields(exc: BaseException) -> set[str]:
    if isinstance(exc, ForbiddenExtraKeysError):
        return set(exc.extra_fields)
    names = set()
    if isinstance(exc, ClassValidationError):
        for sub in exc.exceptions:
            for note in getattr(sub, "__notes__", []):
                if hasattr(note, "name"):
                    names.add(note.name)
            if isinstance(sub, ForbiddenExtraKeysError):
                names |= set(sub.extra_fields)
    return names


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(dict.fromkeys(candidates)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
