"""Fitting the simulator to a lab's movies, the Ray-free half: the searched ``SimParams`` and their ranges
(:mod:`.space`), temporal statistics of movies (:mod:`.temporal`), the objective at a simulation budget
(:mod:`.objective`), reading the real data (:mod:`.data`) and the fitted file (:mod:`.fitted`). The search
itself (Ray Tune + Optuna) is ``search.fitsim``; the command is ``mitogan fit-sim``."""

from mitogan.simfit.objective import RUNGS, SMOKE_RUNGS, TEMPORAL_WEIGHT, FitTarget, Rung, score, simulate_videos
from mitogan.simfit.space import FIT_SPACE, FitParam, physical, select_space, to_params
from mitogan.simfit.temporal import STATS, dataset_stats, temporal_gap, video_stats

__all__ = ["RUNGS", "SMOKE_RUNGS", "TEMPORAL_WEIGHT", "FitTarget", "Rung", "score", "simulate_videos", "FIT_SPACE",
           "FitParam", "physical", "select_space", "to_params", "STATS", "dataset_stats", "temporal_gap",
           "video_stats"]
