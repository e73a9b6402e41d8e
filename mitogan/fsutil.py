"""Files and folders, one way everywhere: atomic writes, the cache root, output folders MitoGAN may write
into, and a cross-process lock.

The rules, each with one home here:

- **Atomic writes** (:func:`atomic_write`, :func:`atomic_dir`): the new content goes to a temporary file
  (or folder) beside the target, is flushed and fsynced, gets the umask's mode (``mkstemp``/``mkdtemp``
  make 0600/0700), and is renamed over the target; the parent folder is fsynced so the rename survives a
  crash. The old output is replaced only once the new one is complete; a crash leaves one or the other.
- **The cache root** (:func:`cache_root`): ``$MITOGAN_CACHE_DIR`` when set and not empty, else
  ``~/.cache/mitogan``.
- **Output folders** (:func:`claim_output_dir`): a command writes into a folder that does not exist yet, an
  empty folder, or a folder MitoGAN made itself (it holds the marker file ``.mitogan.json`` naming the kind
  of output). Anything else is refused with one line saying how to go on; nothing is changed.
- **Locks** (:class:`FileLock`): ``fcntl.flock`` on a lock file, so that concurrent processes on one node
  compute a cache entry once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from mitogan.errors import MitoganError

__all__ = ["cache_root", "default_mode", "atomic_write", "atomic_dir", "fsync_dir", "claim_output_dir",
           "read_marker", "write_marker", "MARKER", "FileLock", "check_writable_dir"]

MARKER = ".mitogan.json"


def cache_root() -> Path:
    """Root of MitoGAN's caches: ``$MITOGAN_CACHE_DIR`` when set and not empty, else ``~/.cache/mitogan``."""
    env = os.environ.get("MITOGAN_CACHE_DIR", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mitogan"


def default_mode(is_dir: bool = False) -> int:
    """The mode a new file (0o666) or folder (0o777) gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if is_dir else 0o666) & ~mask


def fsync_dir(path) -> None:
    """fsync a folder so that renames into it are on disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, data: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (bytes, text, or a function that writes to a binary file object) to ``path``
    atomically: temporary file in the same folder, fsync, umask mode, rename, folder fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def _chmod_tree(d: Path) -> None:
    os.chmod(d, default_mode(True))
    for root, dirs, files in os.walk(d):
        for name in dirs:
            os.chmod(os.path.join(root, name), default_mode(True))
        for name in files:
            os.chmod(os.path.join(root, name), default_mode())


@contextlib.contextmanager
def atomic_dir(final) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it to ``final`` when the block ends without error.

    An existing ``final`` is replaced only then: it is renamed aside, the new folder renamed in, and the old
    one removed, so a crash leaves the old folder or the new one (or both, the old under a ``.old-`` name),
    never neither. On error the temporary folder is removed and ``final`` is untouched. The caller decides
    whether ``final`` may be replaced (see :func:`claim_output_dir`).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        _chmod_tree(tmp)
        old = None
        if final.exists() or final.is_symlink():
            old = final.with_name(f".{final.name}.old-{os.getpid()}-{int(time.time())}")
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() else old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_marker(path) -> dict | None:
    """The marker of a folder MitoGAN made (``{"kind": ..., ...}``), or None."""
    try:
        marker = json.loads((Path(path) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("kind"), str) else None


def check_writable_dir(path, option: str = "--out") -> Path:
    """Fail early, with one line, when ``path`` cannot become a folder we can write into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MitoganError(f"{option} {path}: is a file, not a folder; choose another {option}")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise MitoganError(f"{option} {path}: {probe} is a file, not a folder; choose another {option}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise MitoganError(f"{option} {path}: {probe} is not writable; choose another {option}")
    return path


def claim_output_dir(path, kind: str, *, overwrite: bool = False, resume: bool = False,
                     option: str = "--out", info: dict | None = None) -> str:
    """Decide whether a command may write its ``kind`` of output (e.g. ``"run"``, ``"synth"``) into ``path``.

    Returns ``"new"`` (the folder did not exist or was empty: it now exists and holds the marker),
    ``"resume"`` (it holds MitoGAN's ``kind`` output and ``resume`` is set) or ``"overwrite"`` (it holds
    MitoGAN's ``kind`` output and ``overwrite`` is set: the caller replaces its own files, ideally with
    :func:`atomic_dir`). Raises one-line :class:`MitoganError` otherwise; nothing is changed then.
    """
    path = check_writable_dir(path, option)
    if path.is_dir() and any(path.iterdir()):
        marker = read_marker(path)
        if marker is None:
            raise MitoganError(f"{option} {path}: the folder holds files MitoGAN did not write; choose an empty "
                               f"or new {option} (nothing was changed)")
        if marker["kind"] != kind:
            raise MitoganError(f"{option} {path}: the folder holds a MitoGAN {marker['kind']} output, not a "
                               f"{kind}; choose another {option} (nothing was changed)")
        if resume:
            return "resume"
        if overwrite:
            return "overwrite"
        raise MitoganError(f"{option} {path}: already holds a MitoGAN {kind} output; pass --overwrite to replace "
                           f"it{' or --resume to continue it' if kind in ('run', 'synth') else ''}, or choose "
                           f"another {option}")
    path.mkdir(parents=True, exist_ok=True)
    write_marker(path, kind, info)
    return "new"


def write_marker(path, kind: str, info: dict | None = None) -> Path:
    """Mark ``path`` as a folder holding MitoGAN's ``kind`` output."""
    from mitogan import __version__

    return atomic_write(Path(path) / MARKER, json.dumps({"kind": kind, "mitogan": __version__, **(info or {})},
                                                         indent=1))


class FileLock:
    """An exclusive ``fcntl.flock`` on ``path`` (created if needed), for processes on one node.

    ``with FileLock(p):`` blocks until the lock is free. The lock file itself is left in place (removing
    it would race with a waiting process); it is empty and harmless.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._fd: int | None = None

    def __enter__(self) -> "FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, default_mode())
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
