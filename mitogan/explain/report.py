"""The explanation as files a person reads: overlay PNGs, ranked tables (CSV and Markdown), one HTML page.

All files are written atomically (``mitogan.fsutil.atomic_write``).
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from mitogan.explain.geometry import STRUCTURES, Structures
from mitogan.fsutil import atomic_write

__all__ = ["overlay_png", "write_table", "markdown_table", "write_html", "TABLE_COLUMNS"]

# structure colours in the overlay (RGB 0-255); the thick/thin and curvature halves are left out
_COLOURS = {"skeleton": (255, 255, 0), "edge": (0, 160, 255), "branch_points": (255, 0, 0),
            "end_points": (0, 255, 0), "beads": (255, 0, 255)}
TABLE_COLUMNS = ("rank", "level", "name", "set", "method", "estimate", "ci_low", "ci_high", "effect", "n", "note")


def _gray(tile: np.ndarray) -> np.ndarray:
    return np.clip((tile + 1) * 127.5, 0, 255).astype(np.uint8)


def _heat(m: np.ndarray) -> np.ndarray:
    """|map| scaled to its 99th percentile, in a black-red-yellow-white ramp: (S, S) -> (S, S, 3) uint8."""
    a = np.abs(m)
    v = np.clip(a / (np.percentile(a, 99) or 1.0), 0, 1)
    return (np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], -1) * 255
            ).astype(np.uint8)


def _structure_rgb(tile: np.ndarray, st: Structures, i: int) -> np.ndarray:
    rgb = np.repeat(_gray(tile)[..., None] // 2, 3, -1)
    for name, colour in _COLOURS.items():
        rgb[st[name][i]] = colour
    return rgb


def overlay_png(path, tiles: np.ndarray, maps: dict[str, np.ndarray], st: Structures, idx, scale: int = 3,
                title: str | None = None) -> Path:
    """One row per tile in ``idx``: the tile, each method's map, the map over the tile, the structures."""
    import cv2

    rows = []
    for i in idx:
        t = tiles[i, 0]
        cells = [np.repeat(_gray(t)[..., None], 3, -1)]
        for m in maps.values():
            h = _heat(m[i])
            cells += [h, (0.5 * h + 0.5 * np.repeat(_gray(t)[..., None], 3, -1)).astype(np.uint8)]
        cells.append(_structure_rgb(t, st, i))
        pad = np.full((t.shape[0], 2, 3), 255, np.uint8)
        rows.append(np.concatenate(sum(([c, pad] for c in cells), [])[:-1], axis=1))
    img = np.concatenate(sum(([r, np.full((2, rows[0].shape[1], 3), 255, np.uint8)] for r in rows), [])[:-1], 0)
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    header = np.full((18, img.shape[1], 3), 255, np.uint8)
    label = title or ("tile | " + " | ".join(f"{k} map, overlay" for k in maps) + " | structures")
    cv2.putText(header, label[: img.shape[1] // 7], (2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    img = np.concatenate([header, img], 0)
    ok, buf = cv2.imencode(".png", img[..., ::-1])
    return atomic_write(path, buf.tobytes())


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.3g}"
    return "" if v is None else str(v)


def write_table(path, rows: list[dict], columns=TABLE_COLUMNS) -> Path:
    """CSV of ``rows`` (missing keys empty)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in columns})
    return atomic_write(path, buf.getvalue())


def markdown_table(rows: list[dict], columns=TABLE_COLUMNS) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(_fmt(r.get(k)) for k in columns) + " |\n" for r in rows)


def _verdict(check: dict) -> str:
    """A sanity-check row's verdict: passed, or where it failed (the real tiles' correlation is in the row)."""
    if check["passed"]:
        return "passed"
    gen = check.get("generated")
    if gen and not gen["passed"]:
        return f"FAILED on the generated tiles ({gen['median_rank_corr']:.3f}): not reported"
    return "FAILED: not reported"


def write_html(path, summary: dict, rows: list[dict], images: list[str]) -> Path:
    """One page: what was explained, the sanity checks, the overlays and the ranked table."""
    esc = html.escape
    sanity = "".join(f"<tr><td>{esc(s['method'])}</td><td>{s['median_rank_corr']:.3f}</td><td>{s['n_images']}</td>"
                     f"<td>{_verdict(s)}</td></tr>" for s in summary.get("sanity", []))
    table = "".join("<tr>" + "".join(f"<td>{esc(_fmt(r.get(k)))}</td>" for k in TABLE_COLUMNS) + "</tr>"
                    for r in rows)
    imgs = "".join(f'<figure><img src="{esc(p)}" alt="{esc(p)}"><figcaption>{esc(p)}</figcaption></figure>'
                   for p in images)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>MitoGAN: what the discriminator looks at</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}img{{max-width:100%;image-rendering:pixelated}}</style>
</head><body><h1>What the discriminator looks at</h1>
<p>Source: <code>{esc(str(summary.get('source')))}</code>; data: <code>{esc(str(summary.get('data')))}</code>;
{summary.get('n_real', 0)} real and {summary.get('n_fake', 0)} generated tiles of {summary.get('image_size')} px.
D's mean score: real {_fmt(summary.get('score_real'))}, generated {_fmt(summary.get('score_fake'))}.</p>
<h2>Sanity check (model randomisation)</h2><table><tr><th>method</th><th>median rank corr. with a randomised D</th>
<th>tiles</th><th>verdict</th></tr>{sanity}</table>
<h2>Ranked geometric features</h2><p>geometry: saliency enrichment (1 = its share of the map); feature:
permutation importance (drop in R&sup2;), effect = standardised coefficient; edit: mean change of D's score,
effect = change / sd of D's scores. Intervals: bootstrap 95 % over tiles.</p>
<table><tr>{''.join(f'<th>{c}</th>' for c in TABLE_COLUMNS)}</tr>{table}</table>
<h2>Overlays</h2><p>{esc(_legend())}</p>{imgs}
<details><summary>summary.json</summary><pre>{esc(json.dumps(summary, indent=1, default=str))}</pre></details>
</body></html>"""
    return atomic_write(path, page)


def _legend() -> str:
    return ", ".join(f"{k}: rgb{v}" for k, v in _COLOURS.items()) + f"; structures: {', '.join(STRUCTURES)}"
