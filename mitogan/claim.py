"""One writer per output folder: a command claims the folder it writes before it reads any data, and holds the
claim until it ends, so two commands started at once into one ``--out`` (a double-click in a job script, a
retried CI job, two terminals) leave one complete output and one clear refusal, never a mix of both.

The claim is an exclusive ``fcntl.flock`` on a lock file beside the folder (``.NAME.mitogan-lock`` in its
parent, so replacing the folder atomically does not move the lock). The kernel drops the lock when the
process ends, however it ends, so a crashed command never leaves a folder claimed: the next command takes
the lock (the file left behind by a ``kill -9`` is reused, not trusted). The lock file holds who claimed it
(command, host, pid, start time) for the refusal message. On a shared mount the lock works as far as the
mount's ``flock`` does (NFSv4 and Lustre: yes; some FUSE mounts: no).

A process may claim many folders; :func:`release` ends one claim, :func:`release_all` every one (run at exit).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from mitogan.errors import MitoganError

__all__ = ["hold", "held", "claimed_while", "release", "release_all", "holder", "lock_path", "describe", "who"]

INSIDE = ".mitogan-lock"  # the lock file's name when it has to live inside the folder
_HELD: dict[str, int] = {}  # lock file path -> open descriptor holding its flock


def lock_path(target) -> Path:
    """The lock file of the folder ``target``: ``.NAME.mitogan-lock`` beside it (inside it when the parent
    cannot hold it: a folder at a file system's root, or a read-only parent)."""
    target = Path(os.path.abspath(Path(target).expanduser()))
    if target.parent != target and os.access(_existing(target.parent), os.W_OK | os.X_OK):
        return target.parent / f".{target.name}.mitogan-lock"
    return target / INSIDE


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def hold(target, what: str, option: str = "--out", advice: str | None = None) -> None:
    """Claim the folder ``target`` for this process (a ``what``: "train", "search", ...) until it ends or
    :func:`release` is called. A second claim by the same process is a no-op.

    Raises one-line :class:`MitoganError` naming the process holding the folder (and ``advice``: what to do,
    default "wait for it to end or choose another OPTION") when another live process holds it.
    """
    lock = lock_path(target)
    if str(lock) in _HELD:
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            info = _read(fd)
            for _ in range(20):  # the holder writes who it is just after it locks: give it a moment
                if info is not None:
                    break
                time.sleep(0.025)
                info = _read(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise MitoganError(f"{option} {target}: cannot lock {lock} ({e.strerror}); the file system may not "
                                   "support locks: choose a local folder") from None
            advice = advice or f"wait for it to end or choose another {option}"
            raise MitoganError(f"{option} {target}: {describe(info)} is writing into it; {advice} "
                               "(nothing was changed)") from None
        if _same_file(fd, lock):
            break
        os.close(fd)  # the previous holder removed the lock file between our open and our lock: take a new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(who(what)).encode(), 0)
    _HELD[str(lock)] = fd


def held(target) -> bool:
    """Whether this process holds the claim on ``target``."""
    return str(lock_path(target)) in _HELD


@contextlib.contextmanager
def claimed_while(target):
    """``with claimed_while(out):`` around a library function that claims ``out`` (through
    :func:`mitogan.fsutil.claim_output_dir`): the claim it takes ends with the block, so a notebook or a test
    calling the function does not keep the folder claimed until the process ends. A claim held before the
    block (the command's own) is kept."""
    before = held(target)
    try:
        yield
    finally:
        if not before:
            release(target)


def holder(target) -> dict | None:
    """Who holds ``target`` now (``{"command", "host", "pid", "started"}``), or None when nobody does."""
    lock = lock_path(target)
    if str(lock) in _HELD:
        return who("this process")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read(fd)
    finally:
        os.close(fd)  # closing drops a shared lock we may have taken
    return None


def describe(info: dict | None) -> str:
    """"another MitoGAN train (pid 123 on node1, started 2026-12-04 07:40:12)", from a lock file's content."""
    if not info:
        return "another MitoGAN process"
    return (f"another MitoGAN {info.get('command', 'process')} (pid {info.get('pid', '?')} on "
            f"{info.get('host', '?')}, started {info.get('started', '?')})")


def release(target) -> None:
    """End this process's claim on ``target`` (nothing when it holds none)."""
    _release(str(lock_path(target)))


def release_all() -> None:
    """End every claim of this process (run at exit; the kernel would drop the locks anyway)."""
    for lock in list(_HELD):
        _release(lock)


def _release(lock: str) -> None:
    fd = _HELD.pop(lock, None)
    if fd is None:
        return
    try:  # removed while still locked: a process waiting on the old file sees it gone and opens a new one
        if _same_file(fd, Path(lock)):
            os.unlink(lock)
    except OSError:
        pass
    os.close(fd)


atexit.register(release_all)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _read(fd: int) -> dict | None:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def who(what: str) -> dict:
    """What a claim records: the command, host, pid and when this process started."""
    return {"command": what, "host": socket.gethostname(), "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(_START))}


_START = time.time()
