"""Results a person can read: a static HTML page (no server) for a finished or running search.

``write_report(search_dir)`` reads the search's files only (Ray's per-trial ``params.json`` and
``result.json``, the Optuna journal, the trainer's sample grids), so it works on a copy of the folder on a
laptop with no Ray running. It writes ``report/index.html`` with: a parallel-coordinates plot of the searched
parameters vs the objective, learning curves by generator step, the top trials with the objective's
components, why trials ended (each reason explained), every trial's last sample grid, and Optuna's
hyperparameter importances once enough trials finished (the reason shown otherwise).

The page only: reading the trials and the rule for how each ended are ``search.trials``; exporting the
best generator is ``search.export`` (both re-exported here for older imports).
"""

from __future__ import annotations

import html
import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from mitogan.errors import MitoganError
from search.export import export_search
from search.trials import (JUDGED_NAME, STOP_REASONS_EXPLAINED, TrialRecord, best_trial, collect_trials, rank_value,
                           ran_to_end, ranked_by, stop_reason_of)

__all__ = ["write_report", "write_report_at", "TrialRecord", "collect_trials", "best_trial", "ran_to_end",
           "stop_reason_of", "export_search", "STOP_REASONS_EXPLAINED"]

# sample grids the page shows (copied beside it), the best trials first: a 1,000-trial search does not copy 1,000
GALLERY = 48
MIN_FINISHED_FOR_IMPORTANCE = 10  # below this, Optuna's importances are noise (8 trials gave 1/12 each)


def write_report_at(target: str) -> str:
    """``mitogan search --report TARGET``: a search folder, or ``s3://.../NAME`` (its files are fetched
    into the local staging folder, the page is written there and uploaded). Returns where the page is."""
    from search.storage import SearchStore, is_uri

    if not is_uri(str(target)):
        return str(write_report(target))
    parent, _, name = str(target).rstrip("/").rpartition("/")
    store = SearchStore(parent, name, "--report")
    if not store.exists("search.json"):
        raise MitoganError(f"--report {target}: no search there (no search.json)")
    store.sync_down_for_report()
    write_report(store.local)
    store.upload("report")
    return f"{store.uri}/report/index.html"


def write_report(search_dir) -> Path:
    """Write ``<search_dir>/report/index.html`` and its PNGs; returns the page's path."""
    from mitogan.metrics import PRIMARY_MODE, PRIMARY_NAME

    search_dir = Path(search_dir)
    trials = collect_trials(search_dir)
    if not trials:
        raise MitoganError(f"{search_dir}: no trials found (is this a search directory from `mitogan search`?)")
    out = search_dir / "report"
    out.mkdir(exist_ok=True)
    best = best_trial(trials, PRIMARY_MODE)
    fixed = _fixed_keys(search_dir)
    for t in trials:  # the table shows what was searched, not the constants every trial shares
        t.searched = {k: v for k, v in t.params.items() if k not in fixed}
    importances, imp_note = _importances(search_dir, sum(t.status == "finished" for t in trials))
    figures = {"parameters vs objective": _plot_parallel(trials, out / "parallel_coordinates.png", PRIMARY_NAME,
                                                         PRIMARY_MODE),
               "learning curves": _plot_curves(trials, out / "primary_vs_step.png", PRIMARY_NAME),
               "importance": _plot_importances(importances, out / "importance.png")}
    if best and best.samples():
        figures["best trial's samples"] = Path(shutil.copy2(best.samples()[-1], out / "best_samples.png"))
        side = _real_vs_generated(best, out / "real_vs_generated.png", PRIMARY_NAME)
        if side is not None:
            figures["held-out real tiles vs the best trial's samples"] = side
    samples = _copy_samples(_ranked(trials, PRIMARY_MODE)[:GALLERY], out / "samples")
    page = out / "index.html"
    page.write_text(_html(search_dir.name, trials, best, (importances, imp_note), figures, samples,
                          PRIMARY_NAME, PRIMARY_MODE))
    (out / "summary.json").write_text(json.dumps(_summary(trials, best, importances, imp_note), indent=2))
    return page


def _real_vs_generated(best, path: Path, primary_name: str) -> Path | None:
    """Held-out real tiles (from the preprocessing cache the trial used) beside the best trial's last
    sample grid, titled with the objective and its components. None when the cached tiles are gone
    (e.g. a search folder copied off a cluster): the page then shows the samples alone."""
    from PIL import Image, ImageDraw

    from mitogan.metrics.protocol import split_real
    from mitogan.fsutil import cache_root
    from mitogan.tiles import load_tiles
    from mitogan.viz import image_grid, save_png

    try:
        info = json.loads((best.dir / "data.json").read_text())
        ts = load_tiles(cache_root() / "tiles" / f"{info['cache_key']}.npz")
    except Exception:  # no data.json, no cache key, cache cleared: nothing to compare with
        return None
    holdout = float(best.params.get("train.holdout", 0.25))
    held = split_real(ts.source, ts.frame, holdout, 0).heldout
    pick = np.sort(np.random.default_rng(0).choice(held, min(64, len(held)), replace=False))
    real = image_grid(ts.tiles[pick], nrow=8)
    fake = np.asarray(Image.open(best.samples()[-1]).convert("L").resize(real.shape[::-1], Image.NEAREST))
    body = np.concatenate([real, np.full((real.shape[0], 12), 255, np.uint8), fake], 1)
    canvas = Image.new("L", (body.shape[1], body.shape[0] + 22), 255)
    canvas.paste(Image.fromarray(body), (0, 22))
    last = best.last
    parts = ", ".join(f"{k} {last[k]:.3g}" for k in ("fidelity", "diversity_gap") if k in last)
    ImageDraw.Draw(canvas).text((4, 5), f"left: held-out real tiles   right: best trial {best.trial_id} at step "
                                        f"{best.step}   {primary_name} {best.primary:.3g} ({parts})", fill=0)
    return save_png(np.asarray(canvas), path)


def _ranked(trials, mode: str) -> list:
    """Finished trials first, best first on the scale ``best_trial`` uses (``ranked_by``); the others by the primary."""
    sign, by = 1.0 if mode == "min" else -1.0, ranked_by(trials)

    def key(t):
        value = rank_value(t, by) if t.status == "finished" else t.primary
        return t.status != "finished", sign * (value if value is not None else math.inf)
    return sorted(trials, key=key)


def _copy_samples(trials, dest: Path) -> dict[str, Path]:
    """Each trial's last sample grid, copied beside the page (the page must work on a copied folder)."""
    out = {}
    for t in trials:
        if t.samples():
            dest.mkdir(exist_ok=True)
            out[t.trial_id] = Path(shutil.copy2(t.samples()[-1], dest / f"trial_{t.trial_id}.png"))
    return out


def _plot_parallel(trials, path: Path, name: str, mode: str) -> Path | None:
    from search.report_plots import parallel_coordinates

    params = sorted({k for t in trials for k in (t.searched or {})})
    rows = [{**(t.searched or {}), name: t.primary, "finished": t.status == "finished"} for t in trials]
    return parallel_coordinates(rows, params, name, path, mode=mode)


def _fixed_keys(search_dir: Path) -> set:
    launch = search_dir / "search.json"
    if not launch.exists():
        return set()
    return set(json.loads(launch.read_text()).get("space", {}).get("fixed", {}))


def _summary(trials, best, importances, imp_note) -> dict:
    return {"trials": len(trials), "status": dict(Counter(t.status for t in trials)),
            "stop_reasons": dict(Counter(t.stop_reason for t in trials if t.stop_reason)),
            "best": None if best is None else {"trial_id": best.trial_id, "dir": str(best.dir),
                                               "primary": best.primary, "params": best.searched or best.params},
            "importances": importances, "importances_note": imp_note}


def _importances(search_dir: Path, finished: int) -> tuple[dict[str, float], str]:
    """Optuna's parameter importances from the search's journal, or ({}, why not)."""
    journal = search_dir / "optuna.log"
    if finished < MIN_FINISHED_FOR_IMPORTANCE:
        return {}, (f"not computed: {finished} finished trial(s); importances need at least "
                    f"{MIN_FINISHED_FOR_IMPORTANCE} to mean anything (run more trials)")
    if not journal.exists():
        return {}, "not computed: no Optuna journal (optuna.log) in the search folder"
    import warnings

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():  # Optuna's own warnings stay off the terminal
            warnings.simplefilter("ignore")
            storage = JournalStorage(JournalFileBackend(str(journal)))
            names = [s.study_name for s in storage.get_all_studies()]
            study = optuna.load_study(study_name=search_dir.name if search_dir.name in names else names[0],
                                      storage=storage)
            values = optuna.importance.get_param_importances(study)
        return {k: float(v) for k, v in values.items()}, f"from {finished} finished trials (Optuna's default evaluator)"
    except (RuntimeError, ValueError, KeyError, IndexError) as e:  # no variation, ...
        return {}, f"not computed: {e}"


def _plot_curves(trials, path: Path, name: str) -> Path:
    from mitogan.viz import save_line_plot

    series = {t.trial_id: ([r["step"] for r in t.results], [r.get("primary", math.nan) for r in t.results])
              for t in trials if t.results}
    series = {k: (x, [v if v is not None and abs(v) < 1e8 else math.nan for v in y]) for k, (x, y) in series.items()}
    return save_line_plot(series, path, title=f"{name} per trial (stopped trials end early)", ylabel=name,
                          xlabel="generator step")


def _plot_importances(importances: dict, path: Path) -> Path | None:
    from mitogan.viz import save_bar_plot

    if not importances:
        return None
    top = dict(sorted(importances.items(), key=lambda kv: kv[1])[-15:])
    return save_bar_plot(top, path, xlabel="importance (Optuna's default evaluator)")


# shown beside the objective's components: copying (share of copies, flag), the truncation factor a finished trial
# kept (mitogan.truncation) and the classifier two-sample test of its samples at that factor against held-out real
# tiles, with its baseline (training vs held-out split)
JUDGES = ("copy_share", "copying", "truncation", "c2st_accuracy", "c2st_baseline", JUDGED_NAME)


def _html(name, trials, best, importance, figures, samples, primary_name, mode) -> str:
    from mitogan.metrics import PRIMARY_COMPONENTS

    importances, imp_note = importance
    ranked = _ranked(trials, mode)
    reasons = Counter(t.stop_reason or "finished" for t in trials)
    reason_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td>"
                          f"<td>{html.escape(STOP_REASONS_EXPLAINED.get(k, ''))}</td></tr>" for k, v in reasons.most_common())
    imp_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>"
                       for k, v in sorted(importances.items(), key=lambda kv: -kv[1]))
    # parallel coordinates get the page's full width: one axis per searched parameter
    imgs = "".join(f'<figure{" class=wide" if p.name.startswith("parallel") else ""}><img src="{p.name}" '
                   f'alt="{html.escape(k)}"><figcaption>{html.escape(k)}</figcaption></figure>'
                   for k, p in figures.items() if p)
    # the objective's components, then the independent judges: the copy test and (finished trials) the C2ST
    columns = (*PRIMARY_COMPONENTS, *JUDGES)
    best_line = "no trial finished" if best is None else \
        f"best trial <b>{html.escape(best.trial_id)}</b>: {primary_name} = {best.primary:.4g} (" + \
        ", ".join(f"{c} = {_num(_last(best, c))}" for c in columns) + ")" + _ranking_note(trials, primary_name)
    return _PAGE.format(name=html.escape(name), best=best_line, rows=_trial_rows(ranked[:20], columns),
                        comps="".join(f"<th>{c}</th>" for c in columns), reasons=reason_rows,
                        imps=imp_rows, imp_note=html.escape(imp_note), imgs=imgs,
                        gallery=_gallery(ranked, samples, primary_name), primary=html.escape(primary_name),
                        mode=mode, n=len(trials))


def _ranking_note(trials, primary_name: str) -> str:
    if ranked_by(trials) == JUDGED_NAME:
        return (f"<br>finished trials are ranked by judged_gap: {html.escape(primary_name)} with the classifier "
                "two-sample test's c2st_gap folded in (1 - (1 - realism_gap)(1 - c2st_gap)), both of the samples "
                "drawn at the truncation factor the trial kept")
    return f"<br>finished trials are ranked by {html.escape(primary_name)} (not every finished trial has a C2ST)"


def _trial_rows(trials, components) -> str:
    return "".join(
        f"<tr><td>{html.escape(t.trial_id)}</td><td>{t.status}</td><td>{html.escape(t.stop_reason)}</td>"
        f"<td>{t.step}</td><td>{_num(t.primary)}</td>" + "".join(f"<td>{_num(_last(t, c))}</td>" for c in components)
        + f"<td><code>{html.escape(_short_params(t.searched or t.params))}</code>{_lineage(t)}</td></tr>" for t in trials)


def _lineage(t) -> str:
    """Population-based training: "continued trial_x at step 250, then trial_y at 500" under the parameters."""
    if not t.lineage:
        return ""
    hops = ", then ".join(f"{html.escape(str(e['parent']))} at step {e.get('step', '?')}" for e in t.lineage)
    return f"<br><small>continued {hops}</small>"


def _gallery(trials, samples: dict, primary_name: str) -> str:
    """Each trial's last sample grid with its status, stop reason, step and objective."""
    figs = []
    for t in trials:
        if (p := samples.get(t.trial_id)) is None:
            continue
        why = f" ({html.escape(t.stop_reason)})" if t.stop_reason else ""
        figs.append(f'<figure class="s"><img src="samples/{p.name}" alt="trial {html.escape(t.trial_id)}">'
                    f"<figcaption>{html.escape(t.trial_id)}: {t.status}{why}, step {t.step}, "
                    f"{primary_name} {_num(t.primary)}</figcaption></figure>")
    more = f"<p>the {GALLERY} best trials of {len(trials)}; every trial's grids are in its folder</p>" \
        if len(trials) > GALLERY else ""
    return "".join(figs) + more if figs else "<p>no sample grids</p>"


def _last(t: TrialRecord, key: str):
    """The trial's latest value of ``key`` (components are only on the results where it was evaluated)."""
    for r in reversed(t.results):
        if r.get(key) is not None:
            return r[key]
    return None


def _num(v) -> str:
    return "" if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) else f"{v:.4g}"


def _short_params(params: dict) -> str:
    return ", ".join(f"{k.split('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.', 1)[-1]}={v}"
                     for k, v in params.items())


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>MitoGAN search {name}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}} code{{font-size:11px}}
figure{{display:inline-block;margin:0.5em;vertical-align:top}} img{{max-width:560px;border:1px solid #ddd}}
figure.wide img{{max-width:1150px}} figure.s img{{max-width:260px}} figure.s figcaption{{font-size:12px;max-width:260px}}</style></head>
<body><h1>MitoGAN search <code>{name}</code></h1>
<p>{n} trials; objective <b>{primary}</b> ({mode}imise). {best}</p>
{imgs}
<h2>Top trials</h2><table><tr><th>trial</th><th>status</th><th>stop reason</th><th>step</th><th>{primary}</th>{comps}
<th>parameters</th></tr>{rows}</table>
<h2>Why trials ended</h2><table><tr><th>reason</th><th>trials</th><th>what it means</th></tr>{reasons}</table>
<h2>Samples per trial (last grid each trial wrote)</h2>{gallery}
<h2>Hyperparameter importance</h2><p>{imp_note}</p><table>{imps}</table>
<script>window.addEventListener("load", function () {{
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
}});</script>
</body></html>
"""
