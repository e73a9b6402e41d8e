"""Ray's PB2 scheduler as the search uses it; its own module because Ray's PB2 imports scikit-learn."""

from ray.tune.schedulers.pb2 import PB2

from search.schedulers import ToTheEnd

__all__ = ["PB2ToTheEnd"]


class PB2ToTheEnd(ToTheEnd, PB2):
    """Ray's ``PB2`` that never exploits at a trial's last step (:class:`search.schedulers.ToTheEnd`)."""
