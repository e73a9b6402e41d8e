"""The end of a fit: the best trial to ``fitted.yaml``, a last default-vs-fitted check, the report, fit.json."""

from __future__ import annotations

import math
import time
from pathlib import Path

from mitogan.errors import MitoganError

__all__ = ["finish", "trial_rows", "importances"]


def trial_rows(results, names) -> list[dict]:
    """Ray's ``ResultGrid`` as plain rows: trial id, searched values, last metrics, objective, finished."""
    rows = []
    for r in results:
        m = dict(r.metrics or {})
        obj = m.get("objective")
        if obj is None or not math.isfinite(obj):
            continue
        rows.append({"trial_id": m.get("trial_id", ""), "config": {k: float(v) for k, v in (r.config or {}).items()
                                                                    if k in names},
                     "metrics": {k: v for k, v in m.items() if isinstance(v, (int, float))}, "objective": float(obj),
                     "step": int(m.get("step", 0)), "finished": bool(m.get("finished"))})
    return rows


def importances(store, seed: int) -> dict:
    """Optuna's PED-ANOVA importance of each parameter over the finished trials ({} when fewer than
    ``search.report.MIN_FINISHED_FOR_IMPORTANCE``: below that it is noise). PED-ANOVA needs no scikit-learn."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    from search.report import MIN_FINISHED_FOR_IMPORTANCE
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="fit-sim", storage=JournalStorage(JournalFileBackend(str(store.journal))))
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < MIN_FINISHED_FOR_IMPORTANCE:
        return {}
    try:
        return {k: float(v) for k, v in get_param_importances(study, evaluator=PedAnovaImportanceEvaluator()).items()}
    except (ValueError, RuntimeError, ImportError):  # e.g. every finished trial has the same objective
        return {}


def _final_check(target, params, rungs, seed: int) -> dict:
    """Default and fitted simulator scored at the largest rung with seeds no trial saw (the fit's honest score)."""
    from mitogan.simfit.objective import score
    from mitogan.simulate import SimParams

    fresh = seed + 10**6
    return {"default": score(SimParams(), target, rungs[-1], fresh), "fitted": score(params, target, rungs[-1], fresh)}


def finish(out: Path, store, opts, target, videos, rungs, results, status: dict, seconds: float) -> None:
    """Write fitted.yaml, report/ and fit.json (status finished), and print the outcome."""
    from mitogan.simfit.data import write_fitted
    from mitogan.simfit.objective import simulate_videos
    from mitogan.simfit.report import fit_figure, frames_figure, top_spread
    from mitogan.simfit.space import physical, select_space, to_params
    from mitogan.simulate import SimParams
    from search.fitsim import _write_status

    space = select_space(opts.params)
    rows = trial_rows(results, {p.name for p in space})
    done = [r for r in rows if r["finished"]]
    if not done:
        _write_status(out, {**status, "status": "failed", "trials_ended": len(rows)})
        raise MitoganError(f"fit {out}: no trial ran every rung (see the errors above); nothing was fitted")
    best = min(done, key=lambda r: r["objective"])
    params = to_params(best["config"])
    final = _final_check(target, params, rungs, opts.seed)
    units = physical(best["config"], status.get("pixel_size_um"), status.get("frame_interval_s"))
    header = (f"mitogan fit-sim {time.strftime('%Y-%m-%d %H:%M')}: best of {len(rows)} trials "
              f"(objective {best['objective']:.4f}) fitted to {', '.join(opts.data) or 'the built-in dataset'}\n"
              f"use: mitogan simulate --config {out / 'fitted.yaml'} --out SIM  (lengths px, rates per frame)")
    write_fitted(out / "fitted.yaml", params, header)
    report = out / "report"
    report.mkdir(exist_ok=True)
    importance = importances(store, opts.seed)
    fit_figure(report / "fit.png", rows, importance, space)
    sim = {"real": videos, "fitted simulator": simulate_videos(params, rungs[-1], opts.seed),
           "default simulator": simulate_videos(SimParams(), rungs[-1], opts.seed)}
    frames_figure(report / "frames.png", sim)
    status = {**status, "status": "finished", "trials_ended": len(rows), "finished_trials": len(done),
              "seconds": round(seconds, 1), "best": best, "final_check": final, "importance": importance,
              "top_spread": top_spread(rows, space), "physical": {k: list(v) for k, v in units.items()},
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    _write_status(out, status)
    _say(out, final, len(rows), len(done), seconds)


def _say(out: Path, final: dict, n: int, done: int, seconds: float) -> None:
    d, f = final["default"], final["fitted"]
    print(f"fit-sim: {n} trials ({done} ran every rung) in {seconds / 60:.1f} min")
    print(f"realism_gap default {d['realism_gap']:.3f} -> fitted {f['realism_gap']:.3f}; temporal gap "
          f"{d['temporal_gap']:.3f} -> {f['temporal_gap']:.3f} (fresh seeds, largest rung)")
    print(f"fitted parameters: {out / 'fitted.yaml'} (mitogan simulate --config {out / 'fitted.yaml'} --out SIM)")
    print(f"report: {out / 'report' / 'fit.png'}, {out / 'report' / 'frames.png'}; summary: {out / 'fit.json'}")
