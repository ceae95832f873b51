"""The exclusive lock of an output directory: one run writes ``trials.jsonl`` at a time.

Built on ``filelock`` (an OS lock, ``flock`` on POSIX): the kernel releases it when the
holder dies, so a run killed with SIGKILL never blocks the resume. The holder writes its
pid into a side file so a second run can say who holds the directory.
"""

from __future__ import annotations

import os

import filelock

from .errors import StoreError

__all__ = ["OutputDirLock", "LOCK_FILE", "PID_FILE"]

LOCK_FILE = ".autokd.lock"
PID_FILE = ".autokd.lock.pid"


class OutputDirLock:
    """``with OutputDirLock(output_dir): ...`` holds ``output_dir`` for the block.

    A second holder (another process, or another lock object in this one) gets a
    :class:`StoreError` naming the directory and the holder's pid at once, without
    waiting.
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = os.fspath(output_dir)
        self.lock_path = os.path.join(self.output_dir, LOCK_FILE)
        self.pid_path = os.path.join(self.output_dir, PID_FILE)
        self._lock = filelock.FileLock(self.lock_path, timeout=0, thread_local=False)

    def acquire(self) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            holder = self._holder()
            raise StoreError(
                f"{self.output_dir} is in use by another autokd run ({holder}): wait for it to finish, "
                f"or use another output directory (--output-dir)"
            ) from None
        # The pid goes into a side file (never the lock file itself) by a fresh write.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.pid_path, flags, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()}\n")
        except OSError:  # a symlink or read-only side file is no reason to stop; the pid is only a hint
            pass

    def release(self) -> None:
        if self._lock.is_locked:
            try:
                os.unlink(self.pid_path)
            except OSError:
                pass
            self._lock.release()

    def _holder(self) -> str:
        try:
            with open(self.pid_path, encoding="utf-8") as fh:
                pid = fh.read().strip()
        except OSError:
            return "pid unknown"
        return f"pid {pid}" if pid.isdigit() else "pid unknown"

    def __enter__(self) -> OutputDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
