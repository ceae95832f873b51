"""Open the optuna storage named by ``search.advisor_options.storage``: a journal file, a Redis journal
or an RDB URL. Shared storage is how one search runs in several processes or machines."""

from __future__ import annotations

import os
from typing import Any

from autokd import ConfigError

__all__ = ["JOURNAL_SCHEME", "open_storage"]

JOURNAL_SCHEME = "journal://"
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
_FIELD = "auto_distillation.search.advisor_options.storage"
_HOW = (
    "write journal:///absolute/path/study.log for a journal file (every process, on this machine or "
    "another one that mounts the same file system, points at the same file), redis://host:port for a "
    "Redis journal, or an RDB URL such as sqlite:///study.db or postgresql://user@host/db"
)


def open_storage(url: str) -> Any:
    """The optuna storage for ``url``.

    - ``journal:///abs/path/study.log`` (or ``journal://relative/study.log``): a
      :class:`optuna.storages.JournalStorage` over a
      :class:`optuna.storages.journal.JournalFileBackend`; the file is created on first
      use, its directory must exist.
    - ``redis://...``: a journal in Redis (needs the ``redis`` package).
    - ``sqlite:///...``, ``postgresql://...``, ``mysql://...``: returned as is, for
      :class:`optuna.storages.RDBStorage` (needs ``sqlalchemy`` and the database driver).

    :raises autokd.ConfigError: naming ``search.advisor_options.storage`` and the fix.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{_FIELD}: expected a storage URL string, got {url!r}; {_HOW}")
    url = url.strip()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""

    if url.startswith(JOURNAL_SCHEME):
        return _journal_file(url[len(JOURNAL_SCHEME) :], url)
    if scheme in ("redis", "rediss"):
        return _journal_redis(url)
    if scheme.split("+", 1)[0] in _RDB_SCHEMES:
        try:
            import sqlalchemy  # noqa: F401  (optuna's RDBStorage needs it)
        except ImportError:
            raise ConfigError(
                f"{_FIELD}: {url!r} is an RDB URL, which needs sqlalchemy: pip install sqlalchemy "
                f"(or use a journal file: journal:///path/study.log)"
            ) from None
        return url
    raise ConfigError(f"{_FIELD}: {url!r} is not a storage URL this plugin knows; {_HOW}")


def _journal_file(path: str, url: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not path:
        raise ConfigError(f"{_FIELD}: {url!r} names no file; write journal:///absolute/path/study.log")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        # Not created on purpose: a mistyped shared-file-system path would otherwise give
        # each machine its own private journal and the search would silently split.
        raise ConfigError(
            f"{_FIELD}: the directory of the journal file {path!r} does not exist ({directory}); "
            f"create it (on a file system every worker mounts) or fix the path"
        )
    if os.path.isdir(path):
        raise ConfigError(f"{_FIELD}: {path!r} is a directory; name a file in it, e.g. journal://{path}/study.log")
    return JournalStorage(JournalFileBackend(path))


def _journal_redis(url: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalRedisBackend

    try:
        return JournalStorage(JournalRedisBackend(url))
    except ImportError:
        raise ConfigError(f"{_FIELD}: {url!r} needs the redis package: pip install redis") from None
