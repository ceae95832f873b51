"""Trial records and the append-only result store (the Pareto front and the best-arch
rule are :mod:`autokd.front`'s, re-exported here; the resume checks, :mod:`autokd.resume`).

``<output_dir>/trials.jsonl`` holds one JSON object per finished trial, flushed (to the
operating system: a killed process loses nothing) before the next trial starts and
fsynced (to the disk) at least once a second and at the end of the search;
``summary.json`` holds the Pareto front and the best architecture. Nothing here
unpickles: records are JSON.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import json
import logging
import numbers
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import attrs

from ._lock import OutputDirLock
from .advisor import Objective
from .errors import StoreError
from .evaluation import metric_value
from .front import dominates, pareto_front, select_best

__all__ = [
    "TrialRecord",
    "ResultStore",
    "pareto_front",
    "select_best",
    "dominates",
    "plain_metrics",
    "atomic_write",
]

log = logging.getLogger("autokd")

TRIALS_FILE = "trials.jsonl"
SUMMARY_FILE = "summary.json"


@attrs.frozen
class TrialRecord:
    """One finished trial (one evaluation).

    With ``search.fidelity`` (or in a final distillation) a record also says what was
    trained: ``budget`` (the cumulative fraction of every stage's ``train_steps`` the
    model had trained when evaluated; one fraction per stage for a final distillation
    given ``train_steps``), ``rung``, ``candidate`` (the architecture's number: every
    evaluation of one candidate has it) and ``phase`` (``search`` or ``final``). Without
    them a record is as it always was (those keys are left out of ``trials.jsonl``).
    """

    trial: int
    arch: dict
    metrics: dict = attrs.field(factory=dict)
    status: str = "ok"
    error: str | None = None
    duration_s: float = 0.0
    extras: dict = attrs.field(factory=dict)
    budget: float | list[float] | None = None
    rung: int | None = None
    candidate: int | None = None
    phase: str = "search"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def candidate_number(self) -> int:
        """The architecture's candidate number (the trial number without fidelity)."""
        return self.trial if self.candidate is None else self.candidate

    @property
    def full_budget(self) -> bool:
        """A search evaluation at the full budget (every evaluation without fidelity)."""
        return self.phase == "search" and (
            self.budget is None or (isinstance(self.budget, int | float) and self.budget >= 1 - 1e-9)
        )

    def values(self, objectives: Sequence[Objective]) -> tuple[float, ...] | None:
        """The objective values in order, or None for a failed or incomplete trial."""
        if not self.ok:
            return None
        out = []
        for obj in objectives:
            v = metric_value(self.metrics.get(obj.name))
            if v is None:
                return None
            out.append(v)
        return tuple(out)

    def to_json(self) -> dict:
        data = attrs.asdict(self)
        if self.budget is None and self.phase == "search":
            for key in ("budget", "rung", "candidate", "phase"):
                data.pop(key)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        """A record from its JSON object. Keys this version does not know (written by a
        newer autokd) are ignored and absent optional keys take their defaults, so old
        and new stores load; a key of the wrong type raises ValueError saying which."""
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a JSON object, got {_json_type(data)}")
        for key in ("trial", "arch"):
            if key not in data:
                raise ValueError(f"no {key!r} key")
        fields = {f.name: f for f in attrs.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        for key, types, what in _RECORD_TYPES:
            if key in values and not (isinstance(values[key], types) and not isinstance(values[key], bool)):
                if key in ("error",) and values[key] is None:
                    continue
                raise ValueError(f"{key!r} must be {what}, got {_json_type(values[key])} {values[key]!r:.60}")
        return cls(**values)


_RECORD_TYPES = (
    ("trial", int, "an integer"),
    ("arch", dict, "an object of parameter values"),
    ("metrics", dict, "an object of metric values"),
    ("status", str, "a string"),
    ("error", str, "a string or null"),
    ("duration_s", int | float, "a number"),
    ("extras", dict, "an object"),
)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def plain_metrics(metrics: Mapping) -> dict:
    """Metrics as JSON can hold them: tensors and numpy scalars through ``.item()``, and
    every other real number (``Decimal``, ``Fraction``) as a float, by the one rule of
    :func:`autokd.evaluation.metric_value`; strings and the like stay as they are (and
    fail the trial if they are objectives)."""
    out = {}
    for key, value in metrics.items():
        item = getattr(value, "item", None)
        if callable(item) and not isinstance(value, int | float):
            try:
                value = item()
            except (TypeError, ValueError, RuntimeError):
                pass
        if isinstance(value, numbers.Number) and not isinstance(value, bool | int | float):
            number = metric_value(value)
            value = number if number is not None else str(value)
        out[str(key)] = value
    return out


def _json_default(value: Any) -> Any:
    # numpy / torch scalars and arrays, paths
    for attr in ("item", "tolist"):
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return fn()
            except (TypeError, ValueError):
                continue
    return str(value)


def is_main_process() -> bool:
    """Whether this process writes results: the only one, or rank 0 of several started by
    ``torchrun`` / ``accelerate launch`` (which set ``RANK``); the others train their share
    and read."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


_MAIN_ALONE = contextvars.ContextVar("autokd_main_alone", default=False)


@contextlib.contextmanager
def main_process_alone() -> Iterator[None]:
    """Mark work that only the main process does (saving and exporting the students):
    backends skip their collective steps inside it (e.g. autokd-torch's metric broadcast),
    since the other processes are not there to take part."""
    token = _MAIN_ALONE.set(True)
    try:
        yield
    finally:
        _MAIN_ALONE.reset(token)


def main_process_is_alone() -> bool:
    """True inside :func:`main_process_alone`."""
    return _MAIN_ALONE.get()


class ResultStore:
    """``trials.jsonl`` and ``summary.json`` under an output directory.

    Only a run repairs the store (under its lock); ``autokd report`` reads with
    ``load(repair=False)`` and never writes.
    Only the main process writes (:func:`is_main_process`): under ``torchrun`` the
    other ranks train their share of each batch and record nothing.
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = os.fspath(output_dir)
        self.writes = is_main_process()
        self.trials_path = os.path.join(self.output_dir, TRIALS_FILE)
        self.summary_path = os.path.join(self.output_dir, SUMMARY_FILE)

    def exists(self) -> bool:
        return os.path.exists(self.trials_path) and os.path.getsize(self.trials_path) > 0

    def holds_results(self) -> bool:
        """True when a fresh run here would overwrite a search: recorded trials, or a
        ``summary.json`` of any trial (one of 0 trials, left by a run that failed at
        once, may go)."""
        if self.exists():
            return True
        if not os.path.lexists(self.summary_path):
            return False
        try:
            summary = self.read_summary()
        except StoreError:  # unreadable: not ours to overwrite either
            return True
        return summary is None or summary.get("trials") != 0

    def lock(self) -> AbstractContextManager:
        """The exclusive lock of this output directory (``with store.lock(): ...``).

        Only the main process, the one that writes, takes it: the other ranks of one
        ``torchrun`` run share the main process's directory without writing.
        """
        return OutputDirLock(self.output_dir) if self.writes else contextlib.nullcontext()

    def load(self, repair: bool = False) -> list[TrialRecord]:
        """Every recorded trial.

        A last line cut off by a crash is dropped (that trial runs again); a last record
        without its final newline gets one, so the next append cannot glue two records.
        With ``repair`` (only a run does it, holding the directory's lock) the file is
        fixed on disk, atomically; by default nothing is written. Any other unreadable line raises :class:`StoreError`
        ``trials.jsonl:LINE: why``.
        """
        try:
            with open(self.trials_path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return []
        except IsADirectoryError:
            raise StoreError(f"{self.trials_path}: is a directory, not a trials file") from None
        if repair:
            self._remove_stale_temporaries()
        lines = data.split(b"\n")
        # After the last newline: b"" when the file ends with one, else a record without
        # its newline or a line cut off mid-write.
        records = []
        keep = len(data)
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            last = i == len(lines) - 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if last:
                    keep = len(data) - len(raw)
                    break
                raise StoreError(
                    f"{self.trials_path}:{i + 1}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                if last:
                    keep = len(data) - len(raw)
                    break
                raise StoreError(f"{self.trials_path}:{i + 1}: not JSON: {exc.msg} at column {exc.colno}") from None
            try:
                records.append(TrialRecord.from_json(obj))
            except (ValueError, TypeError) as exc:
                raise StoreError(
                    f"{self.trials_path}:{i + 1}: not a trial record: {exc}. Fix or delete that line "
                    f"(every other line is kept), or start a new output directory"
                ) from None
        if keep < len(data):
            log.warning("%s: dropping a last line cut off mid-write; that trial runs again", self.trials_path)
            if repair and self.writes:
                atomic_write(self.trials_path, data[:keep])
        elif data and not data.endswith(b"\n"):
            log.warning("%s: the last record had no final newline; adding it", self.trials_path)
            if repair and self.writes:
                atomic_write(self.trials_path, data + b"\n")
        return records

    def _remove_stale_temporaries(self) -> None:
        # Left by a run killed inside atomic_write; only the lock holder gets here.
        for name in (TRIALS_FILE, SUMMARY_FILE):
            for path in glob.glob(os.path.join(glob.escape(self.output_dir), f".{name}.*.tmp")):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def append(self, record: TrialRecord, sync: bool = True) -> None:
        """Append ``record``, flushed; fsynced too unless ``sync`` is False (the search
        loop fsyncs at most once a second: an fsync costs milliseconds, as much as the
        rest of the loop's work for an instant trial; see :meth:`sync`)."""
        if not self.writes:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        line = json.dumps(record.to_json(), default=_json_default, allow_nan=True)
        with open(self.trials_path, "ab") as fh:
            # A store that lost its final newline some other way must not glue records.
            if fh.tell() > 0 and _last_byte(self.trials_path) != b"\n":
                line = "\n" + line
            fh.write((line + "\n").encode("utf-8"))
            fh.flush()
            if sync:
                os.fsync(fh.fileno())

    def sync(self) -> None:
        """fsync ``trials.jsonl`` (records appended with ``sync=False`` reach the disk)."""
        if os.path.exists(self.trials_path):
            fd = os.open(self.trials_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        if not self.writes:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        text = json.dumps(summary, indent=2, default=_json_default) + "\n"
        atomic_write(self.summary_path, text.encode("utf-8"))

    def read_summary(self) -> dict | None:
        try:
            with open(self.summary_path, encoding="utf-8") as fh:
                summary = json.load(fh)
        except FileNotFoundError:
            return None
        except (UnicodeDecodeError, json.JSONDecodeError, IsADirectoryError) as exc:
            raise StoreError(
                f"{self.summary_path}: unreadable ({exc}); delete it: a run rewrites it from trials.jsonl"
            ) from None
        return summary if isinstance(summary, dict) else None


def _last_byte(path: str) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash at any moment leaves the old file or the
    new one, never a mix or an empty file: a uniquely named temporary file in the same
    directory (created with O_EXCL, so never through a symlink), flushed and fsynced,
    then ``os.replace``d and the directory fsynced."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)
