"""The claim on a search name in an object store: a lease object beside the search folder
(``<storage>/.<name>.mitogan-claim.json``), created with S3's conditional write (``If-None-Match: *``), so of
two drivers started at once exactly one creates it. The holder renews it every ``RENEW_S`` (``If-Match`` its
own version) and deletes it when the driver ends. A driver that crashed stops renewing: a lease not renewed for
``STALE_S`` (by the store's own clock, so hosts' clocks do not matter) is taken over, again conditionally, so
of two drivers taking over one wins. The local-folder equivalent is :mod:`mitogan.claim`.

Needs an S3 API with conditional writes (AWS S3 since 2024, MinIO, Ceph RGW, moto); other object stores
(``gs://``) get no claim, with a warning. Some servers check the condition and write in two steps (moto's
threaded server does), so two writers racing within milliseconds can both succeed: the lease is read back
``SETTLE_S`` later and only the writer whose lease is there holds the claim.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import secrets
import socket
import threading
import time

from mitogan.claim import describe
from mitogan.fsutil import proc_stat
from mitogan.errors import MitoganError

__all__ = ["S3Lease", "RENEW_S", "STALE_S"]

RENEW_S = 10.0  # how often the holder renews its lease
STALE_S = 60.0  # a lease not renewed for this long belongs to a driver that is gone
SETTLE_S = 0.5  # read the lease back this long after writing it (see S3Lease.acquire)

log = logging.getLogger(__name__)


class S3Lease:
    """``S3Lease("bucket", "prefix/.name.mitogan-claim.json", info).acquire(option, advice)`` claims; ``release()``
    ends the claim. ``info`` (command, host, pid, started) is what a refused driver is told."""

    def __init__(self, bucket: str, key: str, info: dict):
        import boto3

        self.bucket, self.key = bucket, key
        self.info = {**info, "lease": secrets.token_hex(8)}  # which of two drivers with the same info wrote it
        self._s3 = boto3.client("s3")  # endpoint, region and credentials: the usual AWS environment and chain
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, target: str, option: str, advice: str) -> None:
        """Claim, or raise one-line :class:`MitoganError` naming the live holder."""
        if not self._put(IfNoneMatch="*"):
            head = self._s3.head_object(Bucket=self.bucket, Key=self.key)
            holder = self._holder()
            gone = _age_s(head) >= STALE_S or _dead_here(holder)
            if not gone or not self._put(IfMatch=head["ETag"]):  # a live holder, or another taker won the race
                raise MitoganError(f"{option} {target}: {describe(holder)} is writing into it; {advice} (if that "
                                   f"driver is gone, its claim lapses {STALE_S:.0f} s after its last renewal; "
                                   "nothing was changed)")
            log.info("took over the claim on %s: its driver is gone", target)
        time.sleep(SETTLE_S)  # a store whose conditional writes are not atomic lets two writers through at once:
        now = self._holder()
        if now != self.info:  # the one whose lease is there now holds the claim
            self._etag = None
            raise MitoganError(f"{option} {target}: {describe(now)} claimed it at the same moment; "
                               f"{advice} (nothing was changed)")
        self._thread = threading.Thread(target=self._renew, name="mitogan-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and delete the lease (only if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RENEW_S)
        if self._etag is None:
            return
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self.key)
            if head["ETag"] == self._etag:
                self._s3.delete_object(Bucket=self.bucket, Key=self.key)
        except Exception as e:  # a lease left behind goes stale and is taken over: never fail the search here
            log.warning("could not remove the claim %s/%s (%s)", self.bucket, self.key, e)
        self._etag = None

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            try:
                if not self._put(IfMatch=self._etag):
                    log.warning("the claim %s/%s was taken over by another driver", self.bucket, self.key)
                    self._etag = None
                    return
            except Exception as e:  # a network blip: try again next period (STALE_S allows a few misses)
                log.warning("could not renew the claim %s/%s (%s)", self.bucket, self.key, e)

    def _put(self, **condition) -> bool:
        """One conditional write of the lease; False when the condition failed (412/409)."""
        from botocore.exceptions import ClientError

        try:
            r = self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=json.dumps(self.info).encode(),
                                    ContentType="application/json", **condition)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict",
                                                             "412", "409"):
                return False
            raise
        self._etag = r["ETag"]
        return True

    def _holder(self) -> dict | None:
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
            info = json.loads(body)
        except Exception:
            return None
        return info if isinstance(info, dict) else None


def _dead_here(holder: dict | None) -> bool:
    """The holder ran on this host and its process is gone (a driver killed here, resumed here): no process has
    its pid, it is a zombie (dead, not yet reaped: an init that does not reap orphans keeps them for good), or the
    process that has the pid now started after the holder did (pids are reused, within a minute on a host whose
    pid space is 32,768 and whose Ray nodes start threads by the thousand)."""
    if not holder or holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    state, started = proc_stat(holder["pid"])
    return state == "Z" or _later(started, holder.get("started"))


def _later(process_start: float | None, claimed) -> bool:
    """Whether a process that started at ``process_start`` started after a claim made at ``claimed`` (its local
    time, "%Y-%m-%d %H:%M:%S", taken once the holder had started, so the holder began at or before it). 2 s of
    margin: boot time and the claim's time are both truncated to whole seconds. False when either is unknown."""
    try:
        return process_start is not None and process_start > time.mktime(
            time.strptime(claimed, "%Y-%m-%d %H:%M:%S")) + 2.0
    except (TypeError, ValueError):
        return False


def _age_s(head: dict) -> float:
    """Seconds since the lease was last written, both times from the store's clock."""
    modified = head["LastModified"]
    now = email.utils.parsedate_to_datetime(head["ResponseMetadata"]["HTTPHeaders"]["date"])
    return (now - modified).total_seconds()
