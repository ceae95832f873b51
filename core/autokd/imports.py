"""``autokd.import_object``: the object an import string (``"package.module:attribute"``)
of a config names, on :func:`pkgutil.resolve_name`, with errors that name the config
field and what went wrong. Every plugin that reads import strings uses it."""

from __future__ import annotations

import os
import pkgutil
import sys
from typing import Any

from .errors import ConfigError

__all__ = ["import_object"]


def import_object(spec: str, field: str, callable_: bool = False) -> Any:
    """``"package.module:attribute"`` → the attribute; errors name the config field, the
    module and what went wrong (a module that raises or does not compile at import, a
    missing attribute, or with ``callable_`` an attribute that is not callable).

    A config is code: its import strings run with the user's rights."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{field}: {spec!r} is not an import string like 'package.module:function'")
    # User modules next to the config still import, but the working directory comes
    # last: a stray tqdm.py or yaml.py there must not shadow an installed module (#13).
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        obj = pkgutil.resolve_name(spec)
    except ValueError:  # pkgutil's "invalid format", e.g. a second colon
        raise ConfigError(f"{field}: {spec!r} is not an import string like 'package.module:function'") from None
    except ImportError as exc:
        raise ConfigError(f"{field}: cannot import module {module_name!r} ({exc})") from None
    except SyntaxError as exc:
        raise ConfigError(
            f"{field}: module {module_name!r} does not compile: {exc.msg} ({exc.filename}, line {exc.lineno})"
        ) from None
    except AttributeError as exc:
        if module_name in sys.modules:  # imported: the attribute is what is missing
            raise ConfigError(f"{field}: module {module_name!r} has no attribute {attr!r}") from None
        raise ConfigError(f"{field}: importing module {module_name!r} raised AttributeError: {exc}") from None
    except (Exception, SystemExit) as exc:  # the user's module raised at import time
        raise ConfigError(f"{field}: importing module {module_name!r} raised {type(exc).__name__}: {exc}") from None
    if callable_ and not callable(obj):
        raise ConfigError(f"{field}: {spec!r} is a {type(obj).__name__} ({obj!r:.60}), not a function: name a callable")
    return obj
