"""The best trial of a search, for ``mitogan explain SEARCH_DIR`` (registered as the ``explain_source``
plugin in the ``mitogan.plugins`` entry point group, so the core never imports this package)."""

from __future__ import annotations

from pathlib import Path

from mitogan.errors import MitoganError

__all__ = ["explain_source"]


def explain_source(search_dir) -> dict:
    """``{"checkpoint", "trial_id", "trial_dir", "truncation"}`` of the search's best finished trial (the truncation
    factor it kept, the one its export draws at; 1 when it kept none); one-line ``MitoganError`` when
    ``search_dir`` is not a search or no trial finished."""
    from mitogan.export import chosen_truncation
    from mitogan.metrics import PRIMARY_MODE
    from search.export import checkpoint_of
    from search.trials import best_trial, collect_trials

    search_dir = Path(search_dir)
    trials = collect_trials(search_dir)
    if not trials:
        raise MitoganError(f"{search_dir}: not a run folder, checkpoint, bundle or search folder (no trials, "
                           "no checkpoint.pt, no bundle config.json)")
    chosen = best_trial(trials, PRIMARY_MODE)
    if chosen is None:
        raise MitoganError(f"{search_dir}: no trial finished, so there is no best discriminator to explain; "
                           "explain one trial's folder instead, or run a longer search")
    return {"checkpoint": str(checkpoint_of(chosen.dir)), "trial_id": chosen.trial_id,
            "trial_dir": str(chosen.dir), "truncation": chosen_truncation(chosen.last) or 1.0}
