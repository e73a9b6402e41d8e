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
- **Cache entries** (:func:`cached_file`, :func:`cached_dir`): used only when their ``.sha256`` checksum
  file matches and they load; a damaged entry is warned about, discarded and recomputed; computed once per
  node under a :class:`FileLock` and published atomically.
- **Locks** (:class:`FileLock`): ``fcntl.flock`` on a lock file, so that concurrent processes on one node
  compute a cache entry once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TypeVar

from mitogan import claim
from mitogan.errors import MitoganError, one_line

__all__ = ["cache_root", "default_mode", "atomic_write", "atomic_dir", "fsync_dir", "claim_output_dir",
           "read_marker", "write_marker", "MARKER", "FileLock", "check_writable_dir", "json_safe",
           "cached_file", "cached_dir", "CHECKSUM_SUFFIX", "sha256_file", "proc_stat"]

T = TypeVar("T")

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
    dir_mode, file_mode = default_mode(True), default_mode()  # the umask is read once, not per file
    os.chmod(d, dir_mode)
    for root, dirs, files in os.walk(d):
        for name in dirs:
            os.chmod(os.path.join(root, name), dir_mode)
        for name in files:
            os.chmod(os.path.join(root, name), file_mode)


@contextlib.contextmanager
def atomic_dir(final, kind: str | None = None, info: dict | None = None) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it to ``final`` when the block ends without error.

    ``kind``: the folder is a MitoGAN output of this kind; its marker (:func:`write_marker`, with ``info``)
    is written into the temporary folder first.

    An existing ``final`` is replaced only then: it is renamed aside, the new folder renamed in, and the old
    one removed, so a crash leaves the old folder or the new one (or both, the old under a ``.old-`` name),
    never neither. On error the temporary folder is removed and ``final`` is untouched; one left by a killed
    run (its name holds host and pid) is removed by the next ``atomic_dir`` for ``final``. The caller decides
    whether ``final`` may be replaced (see :func:`claim_output_dir`).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=final.parent))
    try:
        if kind is not None:
            write_marker(tmp, kind, info)
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


_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"  # in temporary names: whose they are


def _remove_stale_tmp(final: Path) -> None:
    """Remove the temporary folders that :func:`atomic_dir` made for ``final`` in runs that were killed: only
    folders named as it names them (``.NAME.HOST-PID.XXXXXXXX.tmp``), made on this host by this user, whose
    process is gone. A folder of another host, a live process or another user is left alone."""
    pattern = re.compile(re.escape(f".{final.name}.{_HOST}-") + r"(\d+)\.[A-Za-z0-9_]{8}\.tmp")
    try:
        entries = list(os.scandir(final.parent))
    except OSError:
        return
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if not m or not entry.is_dir(follow_symlinks=False) or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_uid == os.getuid():
                shutil.rmtree(entry.path)
                log.info("removed %s, left by a killed MitoGAN run", entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or not a pid we can ask about): leave its folder
    return proc_stat(pid)[0] != "Z"  # a zombie is dead (an init that does not reap orphans keeps it for good)


def proc_stat(pid: int) -> tuple[str | None, float | None]:
    """(state letter, start time as a Unix time) of the process ``pid`` of this host, from /proc (Linux);
    (None, None) where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # from field 3, the state, on
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time in ticks
    except (ValueError, OSError, IndexError, StopIteration):
        return None, None


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
    if path.is_symlink() and not path.exists():
        raise MitoganError(f"{option} {path}: is a dangling symbolic link; choose another {option}")
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
    try:  # access() is not the whole story (read-only mounts seen as root, /proc, quotas): try it
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise MitoganError(f"{option} {path}: cannot write in {probe} ({e.strerror or type(e).__name__}); choose "
                           f"another {option}") from None
    return path


def claim_output_dir(path, kind: str, *, overwrite: bool = False, resume: bool = False,
                     option: str = "--out", info: dict | None = None, legacy: tuple[str, ...] = (),
                     create: bool = True) -> str:
    """Decide whether a command may write its ``kind`` of output (e.g. ``"run"``, ``"synth"``) into ``path``.

    Returns ``"new"`` (the folder did not exist or was empty: it now exists and holds the marker),
    ``"resume"`` (it holds MitoGAN's ``kind`` output and ``resume`` is set) or ``"overwrite"`` (it holds
    MitoGAN's ``kind`` output and ``overwrite`` is set: the caller replaces its own files, ideally with
    :func:`atomic_dir`). Raises one-line :class:`MitoganError` otherwise; nothing is changed then.

    ``legacy``: file names that together mark an unmarked folder as ``kind`` output of an older MitoGAN (it
    gets its marker when resumed or overwritten). ``create=False`` only checks (nothing is created or
    marked), so a command can refuse before it reads any data and claim once the inputs are known good.

    Either way the folder is claimed for this process first (:func:`mitogan.claim.hold`) and stays claimed
    until the process ends: another command writing into it now is refused in one line naming it.
    """
    path = check_writable_dir(path, option)
    claim.hold(path, _COMMAND_OF.get(kind, kind), option)  # before looking inside: two at once -> one refusal
    try:
        return _claim(path, kind, overwrite, resume, option, info, legacy, create)
    except BaseException:
        claim.release(path)
        raise


# the command that writes each kind of output, for the message of a refused claim
_COMMAND_OF = {"run": "train", "bundle": "export", "simulation": "simulate"}


def _claim(path: Path, kind: str, overwrite: bool, resume: bool, option: str, info: dict | None,
           legacy: tuple[str, ...], create: bool) -> str:
    if path.is_dir() and any(p.name != claim.INSIDE for p in path.iterdir()):
        marker = read_marker(path)
        if marker is None and legacy and all((path / name).exists() for name in legacy):
            marker = {"kind": kind}  # made by an older MitoGAN, before markers
            if create and (resume or overwrite):
                write_marker(path, kind, info)
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
    if create:
        path.mkdir(parents=True, exist_ok=True)
        write_marker(path, kind, info)
    return "new"


def json_safe(obj):
    """``obj`` with every non-finite float (NaN, ±Inf) replaced by None, recursively: JSON has no NaN, and
    ``json.dumps`` would write the non-standard ``NaN``/``Infinity`` that strict readers reject."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy/torch scalars
        return json_safe(obj.item())
    return obj


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


# ------------------------------------------------------------------------------------------ cache entries
log = logging.getLogger(__name__)

CHECKSUM_SUFFIX = ".sha256"  # beside each cache entry, in `sha256sum` format: "<hex>  <name>[/<file>]"


def cached_file(path, compute: Callable[[], T], save: Callable[[T, BinaryIO], None],
                load: Callable[[Path], T], *, label: str) -> T:
    """The value cached in the file ``path``: loaded when intact, else computed once per node and published.

    ``compute()`` makes the value, ``save(value, f)`` writes it to a binary file object, ``load(path)`` reads
    it back. The rules, shared by every MitoGAN cache (see :func:`_cached`): an entry is used only when its
    checksum file matches and it loads; a damaged one is warned about (one line naming the file), deleted
    and recomputed; concurrent processes compute it once (:class:`FileLock`) and never see a partial entry
    (:func:`atomic_write`). When the cache location cannot be written the value is computed and returned
    uncached, with a warning.
    """
    def publish(p: Path) -> T:
        value = compute()
        try:
            atomic_write(p, lambda f: save(value, f))
        except OSError as e:
            log.warning("%s", one_line(f"cache entry {p} ({label}) could not be written ({e}); continuing "
                                        f"without caching it"))
        return value

    def uncached(p: Path, e: OSError) -> T:
        log.warning("%s", one_line(f"cache {p.parent} ({label}) cannot be used ({e}); computing without it"))
        return compute()

    return _cached(Path(path), publish, load, label, uncached)


def cached_dir(path, build: Callable[[Path], None], load: Callable[[Path], T], *, label: str) -> T:
    """The folder ``path`` of the cache, built once per node by ``build(tmp)`` into an empty temporary folder
    and moved into place complete (:func:`atomic_dir`); returns ``load(path)``. Same rules as
    :func:`cached_file`, with a checksum for every file of the folder; a cache location that cannot be
    written is an error (the folder is needed)."""
    def publish(p: Path) -> T:
        with atomic_dir(p) as tmp:
            build(tmp)
        return load(p)

    def unusable(p: Path, e: OSError):
        raise MitoganError(one_line(f"cache folder {p.parent} cannot be written ({e}); set MITOGAN_CACHE_DIR "
                                     f"to a writable folder"))

    return _cached(Path(path), publish, load, label, unusable)


def _cached(path: Path, publish: Callable[[Path], T], load: Callable[[Path], T], label: str,
            on_unusable: Callable[[Path, OSError], T]) -> T:
    """Load ``path`` if intact; else, under ``<path>.lock``, re-check, discard a damaged entry, publish anew.

    The checksum file is written after the entry is in place, and removed before a damaged entry is, so an
    entry is trusted only once complete; a crash in between leaves an entry without checksum, recomputed by
    the next run. Readers take no lock: entries only ever appear by rename.
    """
    value = _load_intact(path, load, label, warn=False)
    if value is not _MISS:
        return value
    try:
        lock = FileLock(path.with_name(path.name + ".lock")).__enter__()
    except OSError as e:
        return on_unusable(path, e)
    try:
        value = _load_intact(path, load, label, warn=True)  # another process may have published it meanwhile
        if value is not _MISS:
            return value
        _remove_entry(path)
        value = publish(path)
        if path.exists():
            try:
                atomic_write(path.with_name(path.name + CHECKSUM_SUFFIX), _checksums(path))
            except OSError as e:  # the entry stays untrusted: the next run recomputes it
                log.warning("%s", one_line(f"checksum of cache entry {path} ({label}) could not be written "
                                            f"({e})"))
        return value
    finally:
        lock.__exit__()


_MISS = object()


def _load_intact(path: Path, load: Callable[[Path], T], label: str, warn: bool):
    """``load(path)``, or ``_MISS`` when the entry is absent or damaged (warned about when ``warn``)."""
    if not (path.exists() or path.is_symlink()):
        return _MISS
    problem = _verify(path)
    if problem is None:
        try:
            return load(path)
        except Exception as e:  # checksums match but it does not load (e.g. written by an older MitoGAN)
            problem = f"it does not load ({type(e).__name__}: {e})"
    if warn:
        log.warning("%s", one_line(f"cache entry {path} ({label}) is damaged: {problem}; discarding it and "
                                    f"recomputing"))
    return _MISS


def sha256_file(path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entry_files(path: Path) -> list[str]:
    """The files of the entry ``path`` (itself, or every file in the folder) relative to its parent."""
    if not path.is_dir():
        return [path.name]
    return sorted(p.relative_to(path.parent).as_posix() for p in path.rglob("*") if p.is_file() or p.is_symlink())


def _checksums(path: Path) -> str:
    return "".join(f"{sha256_file(path.parent / rel)}  {rel}\n" for rel in _entry_files(path))


def _verify(path: Path) -> str | None:
    """Why the entry ``path`` cannot be trusted, or None when every file matches its checksum file."""
    side = path.with_name(path.name + CHECKSUM_SUFFIX)
    try:
        lines = side.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return f"its checksum file {side.name} is missing or unreadable"
    sums = {rel: digest for digest, rel in (line.split("  ", 1) for line in lines if "  " in line)}
    if not sums or len(sums) != len(lines):
        return f"its checksum file {side.name} is malformed"
    try:
        files = _entry_files(path)
    except OSError as e:
        return f"it cannot be listed ({e})"
    if sorted(sums) != files:
        return f"its files differ from those listed in {side.name}"
    for rel, digest in sums.items():
        try:
            if sha256_file(path.parent / rel) != digest:
                return f"{'its content' if rel == path.name else rel} does not match its checksum"
        except OSError as e:
            return f"{rel} cannot be read ({e.strerror or type(e).__name__})"
    return None


def _remove_entry(path: Path) -> None:
    """Delete one damaged cache entry of MitoGAN's: its checksum file first, then the file or folder."""
    with contextlib.suppress(FileNotFoundError):
        path.with_name(path.name + CHECKSUM_SUFFIX).unlink()
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
