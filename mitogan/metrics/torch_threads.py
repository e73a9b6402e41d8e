"""One torch thread for a stretch of code, safe when Python threads overlap (``evaluate`` runs the C2ST beside the
feature blocks, each of which runs the scattering transform).

``torch.set_num_threads`` is process-wide: two overlapping save/set/restore pairs can leave the process on one
thread for good (A saves 2 and sets 1, B saves 1, A restores 2, B restores 1). Here the first user to enter saves
the process's setting and the last to leave puts it back; ``setting()`` is that saved value while any user is inside.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

__all__ = ["one_torch_thread", "setting", "allowed"]

_LOCK = threading.Lock()
_users = 0
_saved: int | None = None


@contextmanager
def one_torch_thread():
    """torch runs its kernels on one thread inside; the process's own setting comes back when the last user leaves."""
    global _users, _saved
    with _LOCK:
        if _users == 0:
            _saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _users += 1
    try:
        yield
    finally:
        with _LOCK:
            _users -= 1
            if _users == 0:
                torch.set_num_threads(_saved)
                _saved = None


def setting() -> int:
    """The process's torch thread count, as set outside any ``one_torch_thread`` block."""
    with _LOCK:
        return _saved if _saved is not None else torch.get_num_threads()


def allowed(cap: int = 4) -> int:
    """Threads the metrics may keep busy at once: the process's torch setting (what a search trial's CPUs or
    ``--threads`` allow; one thread keeps everything on one core), at most ``cap``."""
    return max(1, min(cap, setting()))
