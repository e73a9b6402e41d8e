"""The trials of a search as read back from its folder, and the one rule for how each ended.

``ran_to_end`` / ``stop_reason_of`` decide whether a trial trained all its steps or why it ended early; the
report, the progress bar, the W&B logger and what Optuna is told (COMPLETE or PRUNED) all use them.
``collect_trials`` reads a trial folder's ``params.json`` / ``result.json`` (no Ray needed) and
``best_trial`` picks the best finished one; ``write_params`` / ``append_result`` write them (the search's
driver, in place of Ray's JSON, CSV and TensorBoard loggers: ``search.run``).

What a trial hands Ray (``pack``): Ray keeps running statistics (max, min, mean, last 5 and 10 values) of
every number at the top level of every result, in memory and in the experiment state it re-saves for the
whole search: ~0.5 KB per number per trial, 34 of the ~57 KB per trial when every trainer scalar was there.
So only what Ray itself needs is a top-level number (``RAY_KEYS``: the scheduler's time ``step`` and the
objective ``primary``); the rest travels as one JSON string (``PAYLOAD``), which Ray stores but does not
track. ``expand`` puts those keys back: every reader of a result (this module's ``collect_trials``,
``ran_to_end``, the searcher, the W&B logger) sees the trainer's scalars as before.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from mitogan.errors import MitoganError
from mitogan.fsutil import atomic_write

__all__ = ["PAYLOAD", "RAY_KEYS", "pack", "expand", "LINEAGE", "lineage_of", "TrialRecord", "collect_trials",
           "best_trial", "JUDGED_NAME", "ranked_by", "rank_value", "ran_to_end", "stop_reason_of", "STOP_REASONS_EXPLAINED", "PARAMS", "RESULTS",
           "write_params", "append_result", "complete_results",
           "whole_lines"]


PAYLOAD = "metrics_json"  # result key: the trainer's other scalars, as one JSON object in a string
# what ranks finished trials, ``mitogan.metrics.evaluate.JUDGED_NAME`` (not imported here: that pulls in every metric)
JUDGED_NAME = "judged_gap"
RAY_KEYS = ("step", "primary")  # top-level numbers: ASHA's/PBT's time attribute and the searched objective


def pack(metrics: dict, keep=RAY_KEYS) -> dict:
    """A trial's result for Ray: the ``keep`` numbers, strings and non-JSON values (the sample grid's bytes,
    which the W&B logger takes out) at the top level; every other scalar inside ``PAYLOAD``."""
    top, packed = {}, {}
    for k, v in metrics.items():
        inside = k not in keep and (isinstance(v, (bool, int, float)) or v is None)
        (packed if inside else top)[k] = v
    if packed:
        top[PAYLOAD] = json.dumps(packed)
    return top


def expand(result: dict) -> dict:
    """``result`` with its ``PAYLOAD`` keys back at the top level (a copy; a result without one as it is).
    A top-level key wins over a packed one of the same name (Ray's own keys)."""
    packed = result.get(PAYLOAD) if isinstance(result, dict) else None
    if not isinstance(packed, str):
        return result
    try:
        extra = json.loads(packed)
    except ValueError:  # not ours: a result keeps its other keys
        extra = {}
    top = {k: v for k, v in result.items() if k != PAYLOAD}
    return {**extra, **top} if isinstance(extra, dict) else top


def ran_to_end(result: dict, steps=None) -> bool:
    """Whether a trial whose last result is ``result`` trained all its steps with no stop reason.

    The planned steps are the result's own ``steps_total`` (every trainer report carries it, see
    ``mitogan.report.TrainReport``); ``steps`` is only the fallback for results written without it.
    Also true when Ray ended the trial right at its last step, before the trainable's final report.
    The one rule behind the report's status, the progress bar and what Optuna is told (pruned or not).
    """
    result = expand(result)
    if result.get("stop_reason"):
        return False
    steps = result.get("steps_total", steps)
    return bool(result.get("finished")) or (steps is not None and result.get("step", 0) >= int(steps))


def stop_reason_of(result: dict, steps=None, error: bool = False) -> str:
    """Why a trial whose last result is ``result`` ended early: ``error``, a non-convergence reason from
    ``mitogan.stopping``, or ``asha`` (Ray's scheduler ended it); "" when it ran to the end."""
    if error:
        return "error"
    if result.get("stop_reason"):  # a string: never packed (``pack``); ran_to_end expands the rest
        return result["stop_reason"]
    return "" if ran_to_end(result, steps) else "asha"


@dataclass
class TrialRecord:
    """One trial as read back from disk."""

    trial_id: str
    dir: Path
    params: dict
    results: list[dict] = field(default_factory=list)
    error: str | None = None  # the end of Ray's error.txt: every failure of every attempt
    searched: dict | None = None  # params minus the space's fixed keys (set by write_report)
    failed_at: str | None = None  # when the last failure happened ("YYYY-MM-DD_HH-MM-SS", Ray's error.txt)

    @property
    def last(self) -> dict:
        return self.results[-1] if self.results else {}

    @property
    def step(self) -> int:
        return int(self.last.get("step", 0))

    @property
    def primary(self) -> float | None:
        value = self.last.get("primary")
        return None if value is None or not math.isfinite(value) else float(value)

    @property
    def judged(self) -> float | None:
        """``judged_gap`` of a finished trial whose classifier judge ran (``mitogan.metrics.evaluate.judged_value``)."""
        value = self.last.get(JUDGED_NAME)
        return None if value is None or not math.isfinite(value) else float(value)

    @property
    def done(self) -> bool:
        """Trained all its steps without a stop reason (also when Ray ended it right at the last step)."""
        return ran_to_end(self.last, self.params.get("train.steps"))

    @property
    def failed(self) -> bool:
        """Its last attempt failed: an error, and no result reported after it. A trial whose worker was lost
        and that Ray continued from its checkpoint has an error.txt too, but results from after the failure
        (Ray's ``date``, in the same format and the cluster's clock)."""
        if not self.error:
            return False
        return self.failed_at is None or str(self.last.get("date", "")) <= self.failed_at

    @property
    def status(self) -> str:
        """finished | stopped | error | running."""
        if self.failed:
            return "error"
        if self.done:
            return "finished"
        return "stopped" if self.results else "running"

    @property
    def stop_reason(self) -> str:
        """Why the trial ended early: a non-convergence reason, ``asha``, ``error``; "" when it finished."""
        return stop_reason_of(self.last, self.params.get("train.steps"), error=self.failed)

    def samples(self) -> list[Path]:
        return sorted(self.dir.glob("samples/*.png"))

    @property
    def lineage(self) -> list[dict]:
        """Population-based training: the trials whose state this one continued, ``[{"parent", "step"}]``."""
        return lineage_of(self.dir)


LINEAGE = "lineage.json"  # in a trial folder: its exploits under population-based training


def lineage_of(trial_dir) -> list[dict]:
    """The trial's exploits under population-based training, oldest first (``[]``: none)."""
    try:
        lineage = json.loads((Path(trial_dir) / LINEAGE).read_text())
    except (OSError, ValueError):
        return []
    return [e for e in lineage if isinstance(e, dict) and "parent" in e] if isinstance(lineage, list) else []


PARAMS, RESULTS = "params.json", "result.json"  # a trial's config, and one JSON line per result (Ray's names)


def write_params(trial_dir, config: dict) -> None:
    """``params.json``: the trial's config (rewritten whole: population-based training changes it)."""
    atomic_write(Path(trial_dir) / PARAMS, json.dumps(config, sort_keys=True, indent=2, default=_plain))


def append_result(trial_dir, result: dict) -> None:
    """One line of ``result.json``: ``result`` as Ray recorded it (its config is in ``params.json``)."""
    line = json.dumps({k: v for k, v in result.items() if k != "config"}, default=_plain) + "\n"
    path = Path(trial_dir) / RESULTS
    try:
        f = open(path, "a")
    except FileNotFoundError:  # the first result of a trial whose folder the trainable has not made
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")
    with f:
        f.write(line)


def complete_results(trial_dir, last: dict) -> bool:
    """Append ``last`` (a result as Ray recorded it) to the trial's ``result.json`` unless the file already
    holds its ``training_iteration``; a last line cut short by a kill is dropped first. True when appended.
    No file, or a result without ``training_iteration``: nothing to complete, False."""
    path = Path(trial_dir) / RESULTS
    if "training_iteration" not in last or not path.is_file():
        return False
    rows = _results(path)  # a torn last line is left out
    if max((r.get("training_iteration", 0) for r in rows), default=0) >= last["training_iteration"]:
        return False
    text = path.read_text()
    if whole_lines(text) != text:
        atomic_write(path, whole_lines(text))
    append_result(trial_dir, last)
    return True


def whole_lines(text: str) -> str:
    """The text of a ``result.json`` ready for more lines: a last line cut short by a kill dropped, a whole
    one missing only its newline given it."""
    if not text or text.endswith("\n"):
        return text
    tail = text[text.rfind("\n") + 1:]
    try:
        json.loads(tail)
    except ValueError:
        return text[:len(text) - len(tail)]
    return text + "\n"


def _plain(value):
    """NumPy scalars as plain numbers; anything else not JSON as its text."""
    return value.item() if hasattr(value, "item") else str(value)


def collect_trials(search_dir) -> list[TrialRecord]:
    """Every trial folder under ``search_dir`` (those with a ``params.json``), by trial id. A damaged
    ``params.json`` or ``result.json`` is one line naming the file (a torn last line, from a driver killed
    while writing, is dropped)."""
    search_dir = Path(search_dir)
    if not search_dir.is_dir():
        raise MitoganError(f"{search_dir}: no such search directory")
    trials = []
    for params_file in sorted(search_dir.glob(f"*/{PARAMS}")):
        d = params_file.parent
        params = _json(params_file)
        if not isinstance(params, dict):
            raise MitoganError(f"{params_file}: not a JSON object; the trial folder is damaged")
        results = [r for r in _results(d / RESULTS) if "step" in r]
        text = (d / "error.txt").read_text(errors="replace") if (d / "error.txt").exists() else None
        failures = _FAILURE.findall(text or "")
        trial_id = results[-1].get("trial_id") if results else d.name
        trials.append(TrialRecord(str(trial_id or d.name), d, params, results, text[-2000:] if text is not None else None,
                                  failed_at=failures[-1] if failures else None))
    return trials


_FAILURE = re.compile(r"^Failure # \d+ \(occurred at (\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)\)", re.M)  # Ray's error.txt


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise MitoganError(f"{path}: not readable JSON ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                           "the trial folder is damaged: move it out of the search folder") from None


def _results(path: Path) -> list[dict]:
    """The JSON lines of a ``result.json``; only its last line may be torn (then dropped)."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    except (OSError, UnicodeDecodeError) as e:
        raise MitoganError(f"{path}: not readable ({type(e).__name__}); the trial folder is damaged") from None
    out = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:
                break  # a write cut short by a kill
            raise MitoganError(f"{path}: line {i + 1} is not JSON; the trial folder is damaged: move it out of "
                               "the search folder") from None
        if not isinstance(row, dict):
            raise MitoganError(f"{path}: line {i + 1} is not a JSON object; the trial folder is damaged")
        out.append(expand(row))
    return out


def ranked_by(trials: list[TrialRecord]) -> str:
    """What ranks the finished trials: ``judged_gap`` when every finished trial has one (its classifier judge ran),
    else the primary (``primary``) for all of them, so that no trial is ranked on a laxer scale than another."""
    done = [t for t in trials if t.status == "finished" and t.primary is not None]
    return JUDGED_NAME if done and all(t.judged is not None for t in done) else "primary"


def rank_value(t: TrialRecord, by: str) -> float | None:
    """A trial's value on the scale ``by`` (``ranked_by``)."""
    return t.judged if by == JUDGED_NAME else t.primary


def best_trial(trials: list[TrialRecord], mode: str) -> TrialRecord | None:
    """The finished trial with the best final ``judged_gap`` (the primary with the classifier's verdict folded in)
    when every finished trial has one, else the best final primary; ties broken by higher diversity."""
    done = [t for t in trials if t.status == "finished" and t.primary is not None]
    if not done:
        return None
    sign, by = 1.0 if mode == "min" else -1.0, ranked_by(done)
    return min(done, key=lambda t: (sign * rank_value(t, by), -float(t.last.get("diversity", 0.0))))


STOP_REASONS_EXPLAINED = {
    "finished": "trained all its steps",
    "asha": "ASHA (Ray's scheduler) stopped it at a rung: its objective was not in the top third of the "
            "trials that had reached the same generator step",
    "nonfinite": "a loss, the critic estimate or a gradient norm became NaN/Inf",
    "critic_explode": "the critic's Wasserstein estimate grew beyond the limit (an exploding critic)",
    "critic_drift": "the critic estimate kept moving one way without bound",
    "grad_blowup": "a gradient norm went beyond the limit",
    "collapse": "the generated batch lost its diversity (mode collapse: one image over and over)",
    "error": "the trial raised an error (see error.txt in its folder)",
}
