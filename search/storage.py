"""Where a search lives: ``<storage>/<name>`` on a local path, a shared mount, or an object store.

One abstraction for every file a search writes. ``--storage`` is a folder (the default ``runs``, an NFS
mount shared by all nodes) or a URI that ``pyarrow.fs`` understands (``s3://bucket/prefix``,
``gs://bucket/prefix``); credentials and endpoints come from the usual environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...) so nothing secret
is ever written into the search's own files.

- Ray Tune writes the trials and their checkpoints itself (``RunConfig(storage_path=...)``: Ray resolves
  the same URI through pyarrow).
- MitoGAN's own files (``search.json``, the Optuna journal ``optuna.log``, the W&B offline runs under
  ``wandb/``, ``report/`` and the exported ``best/`` bundle) are written in a local POSIX folder,
  :attr:`SearchStore.local`, and, for an object store, uploaded to the same relative paths under the URI.
  For a local or mounted ``--storage`` that folder *is* the search folder and nothing is copied.

The Optuna journal needs POSIX file locks, so on an object store it lives in the local staging folder
(``$MITOGAN_CACHE_DIR/searches/<hash of the URI>/<name>``) and is uploaded after every trial start and end; a resume
downloads it first (the longer of the two copies wins: the journal is append-only).

Everything created here follows the umask (``mitogan.fsutil.default_mode``).

Trust: a resumed search runs Ray Tune's ``Tuner.restore``, which unpickles Ray's experiment state from the
search folder (``tuner.pkl``, ``experiment_state-*.json``, ``search_gen_state-*.json``,
``callback-states-*.pkl``); whoever can write those files can run code as whoever resumes.
:meth:`SearchStore.check_trusted` refuses a local folder that others can write to before Ray reads it; an
object store's permissions cannot be checked from here, so resuming from one needs ``--trust-storage``.
MitoGAN's own state there is JSON (``search.searcher``) and is never unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from urllib.parse import urlparse

from mitogan.errors import MitoganError, one_line
from mitogan.fsutil import atomic_write, cache_root

__all__ = ["SearchStore", "validate_name", "is_uri", "JOURNAL"]

JOURNAL = "optuna.log"
log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_uri(storage: str) -> bool:
    """An object-store URI (``s3://``, ``gs://``, ...); ``file://`` counts as a local path."""
    return "://" in storage and not storage.startswith("file://")


def validate_name(name: str, option: str = "--name") -> str:
    """A search name is one path component: letters, digits, ``.``, ``_``, ``-`` (no ``/``, no ``..``)."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise MitoganError(f"{option} {name!r}: a search name is one folder name of letters, digits, '.', '_' "
                           "and '-' (at most 128, not starting with '.' or '-'); choose another")
    return name


def _storage_errors(method):
    """An object store that cannot be reached (network, credentials, no bucket) is one line, not a traceback."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as e:
            if not self.remote or isinstance(e, FileNotFoundError):
                raise
            detail = " ".join(str(e).split())[:300]
            raise MitoganError(f"--storage {self.storage}: {method.__name__.strip('_')} failed ({detail}); check "
                               "the bucket, AWS_ENDPOINT_URL and the credentials") from None
    return wrapper


class SearchStore:
    """The search folder ``<storage>/<name>``: :attr:`uri` (what Ray and the user see), :attr:`local` (the
    POSIX folder MitoGAN writes in) and the copies between them for an object store."""

    def __init__(self, storage: str, name: str, option: str = "--name"):
        self.name = validate_name(name, option)
        storage = str(storage)
        self.remote = is_uri(storage)
        if self.remote:
            try:
                self.fs, root = _filesystem(storage)
            except Exception as e:  # unknown scheme, no such bucket, bad credentials: one line
                raise MitoganError(f"--storage {storage}: cannot open it ({str(e).splitlines()[0]})") from None
            self.storage = storage.rstrip("/")
            self.uri = f"{self.storage}/{self.name}"
            self.fs_storage = root.rstrip("/")  # the storage root as a path inside self.fs (what Ray gets)
            self._base = f"{self.fs_storage}/{self.name}"
            key = hashlib.blake2b(self.uri.encode(), digest_size=6).hexdigest()
            self.local = cache_root() / "searches" / key / self.name  # named like the search: the report and
            # the export read the search's name from the folder
        else:
            root = Path(storage.removeprefix("file://")).expanduser().resolve()
            self.fs = None
            self.fs_storage = self.storage = str(root)
            self.uri = str(root / self.name)
            self.local = root / self.name

    @property
    def ray_path(self) -> str:
        """The experiment path as Ray Tune sees it (a path inside :attr:`fs` for an object store)."""
        return self._base if self.remote else self.uri

    def __repr__(self) -> str:
        return f"SearchStore({self.uri!r})"

    # -- reading and writing --------------------------------------------------------------------------
    @_storage_errors
    def exists(self, rel: str = "") -> bool:
        """Whether ``rel`` (a file or folder of the search; "" = the search folder) exists in storage."""
        if not self.remote:
            return (self.local / rel).exists() if rel else self.local.is_dir() and any(self.local.iterdir())
        import pyarrow.fs as pafs

        path = f"{self._base}/{rel}".rstrip("/")
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return False
        if info.type == pafs.FileType.Directory and not rel:
            return bool(self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))
        return True

    @_storage_errors
    def read_text(self, rel: str) -> str | None:
        """The text of ``rel`` in storage, or None when it does not exist."""
        if not self.remote:
            p = self.local / rel
            return p.read_text() if p.is_file() else None
        try:
            with self.fs.open_input_stream(f"{self._base}/{rel}") as f:
                return f.read().decode()
        except FileNotFoundError:
            return None

    def read_json(self, rel: str) -> dict | None:
        """``rel`` parsed as JSON; None when absent; one-line error when it is not JSON."""
        text = self.read_text(rel)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError as e:
            raise MitoganError(f"{self.uri}/{rel}: not valid JSON ({e}); the search folder is damaged") from None
        if not isinstance(data, dict):
            raise MitoganError(f"{self.uri}/{rel}: not a JSON object; the search folder is damaged")
        return data

    def write_json(self, rel: str, data: dict) -> None:
        """Write ``rel`` atomically in the local folder and upload it."""
        self.write_text(rel, json.dumps(data, indent=2, default=str))

    def write_text(self, rel: str, text: str) -> None:
        """Write ``rel`` atomically in the local folder and upload it."""
        atomic_write(self.local / rel, text)
        self.upload(rel)

    # -- copies between the local folder and an object store ----------------------------------------------
    @_storage_errors
    def upload(self, *rels: str) -> None:
        """Copy local files/folders ``rels`` to the same paths in storage (no-op for a local storage)."""
        if not self.remote:
            return
        import pyarrow.fs as pafs

        for rel in rels:
            src = self.local / rel
            if src.exists():
                pafs.copy_files(str(src), f"{self._base}/{rel}", source_filesystem=pafs.LocalFileSystem(),
                                destination_filesystem=self.fs)

    @_storage_errors
    def download(self, rel: str = "", skip=None) -> Path:
        """Copy ``rel`` (a file or folder; "" = the whole search) from storage into the local folder;
        ``skip(relative_path) -> bool`` leaves files out. Returns the local path."""
        dest = self.local / rel if rel else self.local
        if not self.remote:
            return dest
        import pyarrow.fs as pafs

        src = f"{self._base}/{rel}".rstrip("/")
        info = self.fs.get_file_info(src)
        if info.type == pafs.FileType.File:
            _fetch(self.fs, src, dest)
            return dest
        if info.type == pafs.FileType.NotFound:
            return dest
        for f in self.fs.get_file_info(pafs.FileSelector(src, recursive=True)):
            if f.type != pafs.FileType.File:
                continue
            relpath = f.path[len(src):].lstrip("/")
            if skip is None or not skip(relpath):
                _fetch(self.fs, f.path, dest / relpath)
        return dest

    def check_trusted(self, trust: bool) -> None:
        """Before Ray unpickles its state on ``--resume``: the search folder and the top-level files Ray
        reads back (``*.pkl``, ``*.json``) must be owned by this user (or root) and writable by nobody else;
        an object store needs ``trust`` (``--trust-storage``). One line naming the file otherwise."""
        if trust:
            return
        how = ("pass --trust-storage if everyone who can write there is someone you would let run code as you "
               "(Ray unpickles the search's state on resume)")
        if self.remote:
            raise MitoganError(f"--resume {self.name}: {self.uri} is in an object store, where MitoGAN cannot check "
                               f"who may write; {how}")
        files = sorted(p for p in self.local.iterdir() if p.suffix in (".pkl", ".json"))
        for path in (self.local, *files):
            why = _untrusted(path.stat())
            if why:
                fix = f"chmod go-w {self.local} {self.local}/*.pkl {self.local}/*.json" if "writable" in why else \
                    "resume it as its owner"
                raise MitoganError(f"--resume {self.name}: {path} is {why}, so others could plant code that Ray "
                                   f"would run on resume; {fix}, or {how}")

    def claim(self, option: str, advice: str) -> None:
        """Claim the search name for this driver until :meth:`release` (or the driver's end), before anything
        is read or written: of two drivers started at once (or a resume while the search runs) one goes on and
        the other is refused in one line naming the running one (:mod:`mitogan.claim`, :mod:`search.lease`)."""
        from mitogan import claim

        if not self.remote:
            claim.hold(self.local, "search", option, advice)
            return
        if not self.storage.startswith("s3://"):
            log.warning("%s: this object store has no conditional writes MitoGAN uses, so a second driver "
                        "started on the same name at the same time is not detected", self.uri)
            return
        from botocore.exceptions import BotoCoreError, ClientError

        from search.lease import S3Lease

        bucket, _, prefix = self.fs_storage.partition("/")
        try:
            lease = S3Lease(bucket, f"{prefix}/.{self.name}.mitogan-claim.json".lstrip("/"), claim.who("search"))
            lease.acquire(self.uri, option, advice)
        except (BotoCoreError, ClientError) as e:
            raise MitoganError(f"--storage {self.storage}: cannot claim the search name ({one_line(str(e), 200)}); "
                               "check the bucket, AWS_ENDPOINT_URL and the credentials") from None
        self._lease = lease

    def release(self) -> None:
        """End this driver's claim (see :meth:`claim`)."""
        from mitogan import claim

        if not self.remote:
            claim.release(self.local)
        elif getattr(self, "_lease", None) is not None:
            self._lease.release()
            self._lease = None

    @_storage_errors
    def top_files(self) -> list[str]:
        """The names of the files directly in the search folder (in storage), sorted."""
        if not self.remote:
            return sorted(p.name for p in self.local.iterdir() if p.is_file()) if self.local.is_dir() else []
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self._base, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)

    @property
    def journal(self) -> Path:
        """The local POSIX path of the Optuna journal."""
        return self.local / JOURNAL

    @_storage_errors
    def pull_journal(self) -> None:
        """Bring the local journal up to date with storage's copy (the longer wins: it is append-only)."""
        if not self.remote:
            return
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(f"{self._base}/{JOURNAL}")
        local = self.journal.stat().st_size if self.journal.exists() else -1
        if info.type == pafs.FileType.File and info.size > local:
            _fetch(self.fs, f"{self._base}/{JOURNAL}", self.journal)

    def sync_down_for_report(self) -> Path:
        """The search's files a report needs, in the local folder (Ray's checkpoints stay in storage)."""
        return self.download("", skip=lambda rel: bool(re.search(r"(^|/)checkpoint_\d+/", rel))
                             or rel.startswith(("wandb/", "report/", "best/")))


def _filesystem(storage: str):
    """``(pyarrow filesystem, path inside it)`` for a URI. For ``s3://`` the endpoint comes from the AWS
    environment (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``: MinIO, Ceph, a test server), which pyarrow
    does not read itself; credentials stay with the default AWS chain (never pickled into Ray's state)."""
    import pyarrow.fs as pafs

    scheme, _, rest = storage.partition("://")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if scheme == "s3" and endpoint:
        url = urlparse(endpoint)
        kwargs = {"region": os.environ["AWS_DEFAULT_REGION"]} if os.environ.get("AWS_DEFAULT_REGION") else {}
        fs = pafs.S3FileSystem(endpoint_override=url.netloc or url.path, scheme=url.scheme or "https", **kwargs)
        return fs, rest.split("?", 1)[0]
    return pafs.FileSystem.from_uri(storage)


def _untrusted(st: os.stat_result) -> str | None:
    """Why a file with this (followed) stat is writable by someone other than this user, or None."""
    if st.st_uid not in (os.geteuid(), 0):
        import pwd

        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = f"uid {st.st_uid}"
        return f"owned by another user ({owner})"
    if st.st_mode & 0o002:
        return "world-writable"
    if st.st_mode & 0o020:
        return "group-writable"
    return None


def _fetch(fs, src: str, dest: Path) -> None:
    """Download one file atomically (umask mode)."""
    def write(out):
        with fs.open_input_stream(src) as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)

    atomic_write(dest, write)
