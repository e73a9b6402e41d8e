"""The truncation trick's factor, chosen per generator by how a finished search trial is ranked: ``judged_gap``.

A generator that draws every latent as ψ × z (``mitogan synth --truncation ψ``) puts fewer samples where its
training fields were most particular. On the shared data's generators that moved some a little nearer the held-out
videos by the classifier judge and others not at all, and two of four crowded towards copy-like templates
(bench/results/truncation). The in-training primary alone cannot tell which: it favoured truncation where the
classifier saw no change. So a finished search trial tries ψ = 1, 0.9, … down to ``train.truncation_floor`` on its
judge's latents, scores each as trials are ranked (``judged_gap``: the primary against held-out tiles, with its
diversity and copy tests, and the classifier two-sample test folded in) and keeps the best factor whose samples are
not flagged as copying. The factor kept is then judged again on *other* latents: the numbers the trial reports,
ranks and exports by are not the minimum it chose on. Its generator is exported and drawn by ``synth`` at it.

    out = judge_generator(evaluator, generator, n=1000, latent_dim=32, seed=0, floor=0.8)
    out["truncation"]             # the factor kept (1: none did better)
    out["truncation_primary"]     # the primary at that factor, on the fresh latents
    out["c2st_accuracy"], ...     # the classifier test at that factor, on the fresh latents
"""

from __future__ import annotations

import numpy as np

STEP = 0.1  # the factors tried: 1, 1 - STEP, ... down to the floor
CHUNKS = 2  # the primary at a factor: the mean over this many of the evaluator's samples (n_fake each)


def is_factor(t) -> bool:
    """Whether ``t`` is a truncation factor: a number above 0 and at most 1 (1: none)."""
    return not isinstance(t, bool) and isinstance(t, (int, float, np.number)) and bool(np.isfinite(t) and 0 < t <= 1)


def truncation_grid(floor: float) -> tuple[float, ...]:
    """The factors a trial tries, 1 first: (1.0,) when ``floor`` is 1 (off)."""
    if not (0 < floor <= 1):
        raise ValueError(f"truncation floor {floor}: give a factor above 0 and at most 1")
    n = int((1 - floor) / STEP + 1e-9)  # whole steps that stay at or above the floor
    return tuple(round(1 - i * STEP, 6) for i in range(n + 1))


def judge_latents(n: int, latent_dim: int, seed: int, fresh: bool = False):
    """The ``n`` latents a finished trial of seed ``seed`` (``train.seed``) is judged on; ``fresh``: a second,
    independent set (the factor chosen on the first is judged again on it)."""
    import torch

    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed + (104729 if fresh else 7919)))


def sample(generator, z, batch: int = 250) -> np.ndarray:
    """(N, 1, S, S) images of ``generator`` for latents ``z`` (a CPU tensor), on the generator's device."""
    import torch

    held = next(iter([*generator.parameters(), *generator.buffers()]), None)
    device = held.device if held is not None else torch.device("cpu")
    with torch.no_grad():
        return torch.cat([generator(z[i:i + batch].to(device)).float().cpu() for i in range(0, len(z), batch)]).numpy()


def score_factor(evaluator, generator, z, psi: float, judge_flagged: bool = True) -> dict | None:
    """``generator``'s samples of the latents ``psi`` × ``z``: the in-training evaluator's ``primary`` and
    ``copy_share`` (means over ``CHUNKS`` of its ``n_fake``) and ``copying`` (1 when any chunk is flagged), then the
    classifier judge's numbers (``evaluator.judge``; skipped for flagged samples unless ``judge_flagged``) and
    ``judged`` (``judged_value``; absent when the judge gave no ``c2st_gap``). None when the samples are not finite."""
    from mitogan.metrics.evaluate import judged_value

    fake = sample(generator, z * psi)
    if not np.isfinite(fake).all():
        return None
    n = int(evaluator.n_fake)
    runs = [evaluator(fake[i * n:(i + 1) * n]) for i in range(max(1, min(CHUNKS, len(fake) // n)))]
    out = {"primary": float(np.mean([r["primary"] for r in runs])),
           "copying": float(any(r.get("copying") for r in runs))}
    if all("copy_share" in r for r in runs):
        out["copy_share"] = float(np.mean([r["copy_share"] for r in runs]))
    if judge_flagged or not out["copying"]:
        out.update(evaluator.judge(fake))
    if out.get("c2st_gap") is not None:
        out["judged"] = judged_value(out["primary"], out["c2st_gap"])
    return out


def choose_truncation(evaluator, generator, z, floor: float) -> dict:
    """Score ``generator`` at each factor of ``truncation_grid(floor)`` on the latents ``z`` (``score_factor``) and
    keep the best ``judged`` (the primary where the judge gave none) among the factors whose samples are not flagged
    as copying (1 is always allowed: the trial's own copy test judges it); ties keep the larger factor. Returns
    ``truncation``, ``truncation_by`` (``judged`` or ``primary``) and each scored factor's value
    (``truncation_<by>_<100 ψ>``: ``_100``, ``_90``, …), or ``{}`` when the samples are not finite."""
    scores = {}
    for psi in truncation_grid(floor):
        s = score_factor(evaluator, generator, z, psi, judge_flagged=psi == 1)
        if s is None:
            return {}
        if psi == 1 or not s["copying"]:  # a factor that draws flagged copies is never kept
            scores[psi] = s
    by = "judged" if all("judged" in s for s in scores.values()) else "primary"
    best = min(scores, key=lambda p: (scores[p][by], -p))
    return {"truncation": best, "truncation_by": by,
            **{f"truncation_{by}_{round(p * 100)}": s[by] for p, s in scores.items()}}


def judge_generator(evaluator, generator, n: int, latent_dim: int, seed: int, floor: float) -> dict:
    """What a finished trial's judge adds to its result (flat values). ``floor`` 1: the classifier judge of ``n``
    samples (``evaluator.judge``). Below 1: the factor chosen on ``n`` judge latents (``choose_truncation``), then
    that factor's primary (``truncation_primary``), copy share (``truncation_copy_share``) and classifier judge on
    ``n`` fresh latents; a factor below 1 whose fresh samples are flagged as copying is not kept (1 is, and
    ``truncation_flagged`` names the factor refused). ``{}`` when the samples are not finite."""
    z = judge_latents(n, latent_dim, seed)
    if floor >= 1:
        fake = sample(generator, z)
        return evaluator.judge(fake) if np.isfinite(fake).all() else {}
    choice = choose_truncation(evaluator, generator, z, floor)
    fresh = judge_latents(n, latent_dim, seed, fresh=True)
    checked = choice and score_factor(evaluator, generator, fresh, choice["truncation"])
    if checked and checked["copying"] and choice["truncation"] < 1:  # flagged on the fresh latents: not kept
        choice = {**choice, "truncation": 1.0, "truncation_flagged": choice["truncation"]}
        checked = score_factor(evaluator, generator, fresh, 1.0)
    if not checked:
        return {}
    judged = {k: v for k, v in checked.items() if k not in ("primary", "copying", "copy_share", "judged")}
    return {**choice, "truncation_primary": checked["primary"], **judged,
            **({"truncation_copy_share": checked["copy_share"]} if "copy_share" in checked else {})}
