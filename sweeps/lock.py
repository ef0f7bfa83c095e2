"""One writer per sweep output directory: a lock file created with O_CREAT|O_EXCL.

The lock `.einsim-sweep.lock` holds the writer's pid, host and start time (JSON). It is
created before anything else is written to the directory and removed when the run ends.
A run killed with SIGKILL leaves it behind; the next run finds it stale and takes it over:

    stale  =  the file names a pid on this host that is no longer running (or a zombie),
              or nobody holds the `flock` every live writer keeps on it (a reused pid),
              or it is empty and older than `EMPTY_STALE_S` (killed between create and write).

A writer flocks the file *before* writing its pid, so a non-empty lock without a flock
holder is never a writer still starting up. Two runs taking over the same stale lock are
serialized by a `flock` on the directory itself: each re-reads the lock under it and
removes it only if it is still the very file (same inode) it found stale, then competes
for O_EXCL again; exactly one wins. A lock from another host cannot be checked: the run is
refused, naming the host and pid and the file to delete if that run is dead.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import time
import warnings
from pathlib import Path

from einsim.einsum import SpecError

from .spec import SweepWarning

LOCK = ".einsim-sweep.lock"
#: An empty lock older than this was left by a run killed between creating and writing it.
EMPTY_STALE_S = 10.0


def _pid_running(pid: int) -> bool:
    """Whether process `pid` exists on this host and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: not running
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _flock_free(path: Path) -> bool | None:
    """Whether nobody holds a flock on `path` (None: it vanished meanwhile)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _read(path: Path) -> tuple[dict | None, os.stat_result] | None:
    """(holder or None when empty/unreadable, stat) of the lock file; None if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        holder = json.loads(raw)
        if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
            holder = None
    except ValueError:
        holder = None
    return holder, stat


class DirectoryLock:
    """The lock of one sweep output directory, held from `acquire` to `release`.

    Raises (from `acquire`):
        SpecError: another live sweep holds the lock (one line: its pid, host, start).
        OSError: the lock cannot be written (read-only file system, no space left); a
            half-written lock file is removed.
    """

    def __init__(self, folder: Path, label: str):
        self.folder = folder
        self.path = folder / LOCK
        self.label = label  # how errors name the directory: "output 'x'"
        self._fd: int | None = None

    def acquire(self) -> None:
        host = socket.gethostname()
        for _ in range(8):  # each round either wins, refuses, or removes one stale lock
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale(host)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                body = json.dumps({"pid": os.getpid(), "host": host, "started": started})
                os.write(fd, body.encode())
                os.fsync(fd)
            except BaseException:  # no space, or interrupted: leave no lock behind
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                raise
            self._fd = fd
            return
        raise SpecError(f"{self.label}: could not take the lock {LOCK} (it keeps changing)")

    def _take_over_if_stale(self, host: str) -> None:
        """Remove the lock file if its writer is gone; raise if a live writer holds it."""
        found = _read(self.path)
        for _ in range(50):  # a writer between O_EXCL and writing its pid: let it finish
            if found is None or found[0] is not None:
                break
            if time.time() - found[1].st_mtime > EMPTY_STALE_S:
                break
            time.sleep(0.01)
            found = _read(self.path)
        if found is None:
            return  # released meanwhile: try O_EXCL again
        holder, stat = found
        if not self._stale(holder, stat, host):
            raise self._held(holder, host)
        directory = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(directory, fcntl.LOCK_EX)  # one take-over at a time
            again = _read(self.path)
            if again is None:
                return
            if (again[1].st_ino, again[1].st_dev) != (stat.st_ino, stat.st_dev):
                return  # someone else took it over first: compete for O_EXCL again
            os.unlink(self.path)
        finally:
            os.close(directory)
        who = f"pid {holder['pid']} on {holder.get('host')}" if holder else "a run killed"
        warnings.warn(
            f"{self.label}: took over the lock of a sweep that is no longer running ({who})",
            SweepWarning,
            stacklevel=2,
        )

    def _stale(self, holder: dict | None, stat: os.stat_result, host: str) -> bool:
        if holder is None:  # empty: killed between O_EXCL and writing, or starting now
            return time.time() - stat.st_mtime > EMPTY_STALE_S and bool(_flock_free(self.path))
        if holder.get("host") != host:
            return False  # its pid cannot be checked from here
        return not _pid_running(holder["pid"]) or bool(_flock_free(self.path))

    def _held(self, holder: dict | None, host: str) -> SpecError:
        if holder is None:
            return SpecError(f"{self.label}: another sweep is writing to it right now")
        who = f"pid {holder['pid']} on {holder.get('host')}, since {holder.get('started')}"
        hint = "wait for it or choose another output"
        if holder.get("host") != host:
            hint += f"; if that run is dead, delete {self.path}"
        return SpecError(f"{self.label}: another sweep is writing to it right now ({who}); {hint}")

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the flock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            mine, now = os.fstat(fd), os.stat(self.path)
            if (mine.st_ino, mine.st_dev) == (now.st_ino, now.st_dev):
                os.unlink(self.path)
        except OSError:
            pass  # gone or unremovable: the next run finds it stale
        finally:
            os.close(fd)
