"""One explanation run: maps, sanity checks, geometry, features, edits, then the report files.

``explain_discriminator(d, real, fake, out_dir)`` writes into ``out_dir`` (a folder the caller claimed):

    summary.json            what was explained, D's scores, sanity checks, timings
    ranked.csv, ranked.md   the ranked table: geometry (per reported method, real and generated tiles),
                            features (regression + permutation importance), edits
    geometry.csv, features.csv, edits.csv   the same per level, with every column
    overlay_real.png, overlay_generated.png  tile | map | map over tile | structures, per method
    index.html              one page with all of it
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from mitogan.errors import MitoganError
from mitogan.explain import attribution, edits, features, geometry, report
from mitogan.fsutil import atomic_write
from mitogan.models.layers import per_image

__all__ = ["explain_discriminator"]

log = logging.getLogger(__name__)


def _pick(n: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, min(n, k), replace=False)) if n else np.zeros(0, int)


def _maps(d, tiles, methods, n_sanity, progress):
    """Maps of each method that passes the sanity check; every check's result.

    The check runs first, on the first ``n_sanity`` tiles: a method that fails it is never computed on
    the whole set (integrated gradients, the costly one, often fails). A passing method's maps of those
    tiles are kept and the rest computed after them (maps are per tile, so the set's maps are the same)."""
    out, checks = {}, []
    if progress:
        from tqdm import tqdm

        methods = tqdm(methods, desc="attribution", unit="method", leave=False)
    for method in methods:
        t0 = time.perf_counter()
        head = attribution.attribute(d, tiles[:n_sanity], method)
        res = attribution.sanity_check(d, tiles[:n_sanity], method, maps=head)
        if res.passed and len(tiles) > n_sanity:
            head = np.concatenate([head, attribution.attribute(d, tiles[n_sanity:], method)])
        checks.append({**res.__dict__, "seconds": round(time.perf_counter() - t0, 2)})
        if res.passed:
            out[method] = head
        else:
            log.warning("%s fails the model-randomisation check (median rank corr. %.2f): not reported",
                        method, res.median_rank_corr)
    return out, checks


def _geometry_rows(maps: dict, st, label: str) -> list[dict]:
    rows = []
    for method, m in maps.items():
        for r in geometry.summarise(*geometry.enrichment(m, st)):
            rows.append({"level": "geometry", "name": r["structure"], "set": label, "method": method,
                         "estimate": r["enrichment"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                         "effect": float(np.log2(r["enrichment"])) if r["enrichment"] > 0 else float("nan"),
                         "n": r["n_tiles"], "note": f"area {r['area_fraction']:.3f}"})
    return rows


def _feature_rows(tiles, d_scores, thr, st, n_boot) -> list[dict]:
    res = features.geometric_importance(tiles, d_scores, thr, st, n_boot=n_boot)
    return [{"level": "feature", "name": r["feature"], "set": "real+generated", "method": "ridge+permutation",
             "estimate": r["importance"], "ci_low": r["imp_low"], "ci_high": r["imp_high"], "effect": r["coef"],
             "n": len(tiles), "note": f"coef CI [{r['coef_low']:.3g}, {r['coef_high']:.3g}], R2 {r['r2']:.2f}"}
            for r in res]


def _edit_rows(d, tiles, st, base) -> list[dict]:
    res = edits.edit_effects(lambda x: attribution.scores(d, x), tiles, st, base=base)
    return [{"level": "edit", "name": r["edit"], "set": "real", "method": "edit", "estimate": r["delta"],
             "ci_low": r["ci_low"], "ci_high": r["ci_high"], "effect": r["effect"], "n": r["n_tiles"],
             "note": "change of D's score"} for r in res]


def _sanity_rows(checks_of: dict, reported: list) -> list[dict]:
    """One row per method, from its check on the real tiles; ``passed`` only if it is reported (it passed on
    every set), and the generated tiles' check, where it ran, under ``generated``."""
    generated = {c["method"]: c for c in checks_of.get("generated", [])}
    rows = []
    for c in checks_of["real"]:
        row = {**c, "passed": c["method"] in reported}
        if c["method"] in generated:
            g = generated[c["method"]]
            row["generated"] = {"median_rank_corr": g["median_rank_corr"], "passed": g["passed"]}
        rows.append(row)
    return rows


def explain_discriminator(d: torch.nn.Module, real: np.ndarray, fake: np.ndarray | None, out_dir, *,
                          methods=attribution.METHODS, n_sanity: int = 32, n_overlay: int = 8, n_boot: int = 200,
                          info: dict | None = None, progress: bool = False) -> dict:
    """Explain ``d`` on real tiles (and generated ones when given); write the files listed above."""
    from mitogan.metrics.morphology import dataset_threshold

    out, t0 = Path(out_dir), time.perf_counter()
    # each tile explained on its own: a discriminator that reads its batch's spread (model.d_mbstd) reads the
    # real tiles' mean spread instead, so a tile's score and maps do not depend on the tiles batched with it
    d = per_image(d.eval(), real)
    thr = dataset_threshold(real)  # one threshold, decided on the real tiles, for real and generated alike
    # the real tiles split by their own medians: the splits for every set, and the real set's structures
    st_all = {"real": geometry.structures(real, threshold=thr)}
    splits = st_all["real"].splits
    sets = {"real": real} if fake is None or not len(fake) else {"real": real, "generated": fake}
    rows, summary, ov = [], {**(info or {}), "threshold": thr, "splits": splits.__dict__}, []
    score_all = {}
    for label, tiles in sets.items():
        score_all[label] = attribution.scores(d, tiles)
    _check_scores(score_all)
    # a method is reported only if it passes the check on every set: on the real tiles first, then (only the
    # methods that passed there) on the generated ones
    maps_of, checks_of = {}, {}
    for label, tiles in sets.items():
        todo = methods if label == "real" else [m for m in methods if m in maps_of["real"]]
        maps_of[label], checks_of[label] = _maps(d, tiles, todo, n_sanity, progress)
    reported = [m for m in maps_of["real"] if all(m in maps for maps in maps_of.values())]
    summary["sanity"], summary["reported_methods"] = _sanity_rows(checks_of, reported), reported
    for label, tiles in sets.items():
        if label not in st_all:
            st_all[label] = geometry.structures(tiles, splits, threshold=thr)
        maps = {m: maps_of[label][m] for m in reported}
        rows += _geometry_rows(maps, st_all[label], label)
        if maps:
            idx = _pick(len(tiles), n_overlay, 0)
            ov.append(report.overlay_png(out / f"overlay_{label}.png", tiles, maps, st_all[label], idx).name)
    x = np.concatenate(list(sets.values()))
    s = np.concatenate(list(score_all.values()))
    # real tiles alone: their structures are known (same tiles, threshold and splits)
    st_x = st_all["real"] if len(sets) == 1 else geometry.structures(x, splits, threshold=thr)
    rows += _feature_rows(x, s, thr, st_x, n_boot)
    rows += _edit_rows(d, real, st_all["real"], score_all["real"])  # D's scores of the real tiles: known
    _rank(rows)
    summary.update({"n_real": len(real), "n_fake": 0 if fake is None else len(fake), "image_size": real.shape[-1],
                    "score_real": float(score_all["real"].mean()),
                    "score_fake": float(score_all["generated"].mean()) if "generated" in score_all else None,
                    "seconds": round(time.perf_counter() - t0, 1)})
    _write(out, rows, summary, ov)
    return {"summary": summary, "rows": rows, "overlays": [out / p for p in ov]}


def _check_scores(scores: dict[str, np.ndarray]) -> None:
    """Refuse, in one line, a discriminator that has nothing to explain: scores that are not finite (a
    damaged or diverged D) or one score for every tile (its maps are zero and every effect would be 0 or NaN)."""
    s = np.concatenate([np.asarray(v, np.float64).ravel() for v in scores.values()])
    if not np.isfinite(s).all():
        raise MitoganError(f"the discriminator's scores are not finite ({int((~np.isfinite(s)).sum())} of {len(s)} "
                           "tiles: NaN or Inf); it is damaged or diverged, so there is nothing to explain (explain "
                           "an earlier checkpoint, or re-export the bundle)")
    if len(s) and np.ptp(s) == 0:
        raise MitoganError(f"the discriminator gives every tile the same score ({s[0]:.6g}); it relies on nothing "
                           "in them, so there is nothing to explain (explain a trained discriminator)")


def _rank(rows: list[dict]) -> None:
    """Rank within each (level, set, method) block, in the order each block was sorted."""
    seen: dict = {}
    for r in rows:
        key = (r["level"], r["set"], r["method"])
        seen[key] = seen.get(key, 0) + 1
        r["rank"] = seen[key]


def _write(out: Path, rows: list[dict], summary: dict, overlays: list[str]) -> None:
    report.write_table(out / "ranked.csv", rows)
    md = ("# What the discriminator looks at\n\n" + report.markdown_table(rows) + "\n"
          + "".join(f"![{p}]({p})\n" for p in overlays))
    atomic_write(out / "ranked.md", md)
    for level, name in (("geometry", "geometry"), ("feature", "features"), ("edit", "edits")):
        report.write_table(out / f"{name}.csv", [r for r in rows if r["level"] == level])
    atomic_write(out / "summary.json", json.dumps(summary, indent=1, default=str))
    report.write_html(out / "index.html", summary, rows, overlays)
