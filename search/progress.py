"""A one-line live view of a search: trials running / finished / stopped, and the best primary so far."""

from __future__ import annotations

from ray.tune import Callback

from search.trials import ran_to_end

__all__ = ["SearchProgress"]


class SearchProgress(Callback):
    """tqdm bar over trials; the postfix shows running, finished, stopped (early), errored and best."""

    def __init__(self, total: int, mode: str, enabled: bool = True):
        self.total, self.mode, self.enabled = total, mode, enabled
        self.running: set[str] = set()
        self.counts = {"finished": 0, "stopped": 0, "errored": 0}
        self.best: float | None = None
        self.bar = None

    def setup(self, **info):
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc="trials", unit="trial", dynamic_ncols=True,
                            initial=sum(self.counts.values()))  # a resumed search starts where it stopped

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self._refresh()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.running.add(trial.trial_id)
        self._refresh()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        last = trial.last_result or {}
        if ran_to_end(last):
            self.counts["finished"] += 1
            value = last.get("primary")
            if value is not None and (self.best is None or (value < self.best if self.mode == "min" else value > self.best)):
                self.best = value
        else:
            self.counts["stopped"] += 1
        self._advance()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        self.counts["errored"] += 1
        self._advance()

    # Ray checkpoints this with the experiment: a resumed search's bar starts where the first one stopped
    def get_state(self) -> dict:
        return {"counts": dict(self.counts), "best": self.best}

    def set_state(self, state: dict) -> None:
        self.counts.update(state.get("counts", {}))
        self.best = state.get("best")
        if self.bar is not None:
            self.bar.n = sum(self.counts.values())
            self._refresh()

    def on_experiment_end(self, trials, **info):
        if self.bar is not None:
            self._refresh()
            self.bar.close()

    def _advance(self):
        self._refresh()  # the new counts first, so the redraw that update() makes shows them
        if self.bar is not None:
            self.bar.update(1)

    def _refresh(self):
        if self.bar is None:
            return
        best = "-" if self.best is None else f"{self.best:.4g}"
        self.bar.set_postfix(running=len(self.running), **self.counts, best=best, refresh=True)
