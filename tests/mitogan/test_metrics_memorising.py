"""Memorisation as a GAN shows it, not as a ladder draws it: a real DCGAN made to memorise.

The copy ladders of the proof alter training tiles by hand (noise, shifts, blur, warps). A GAN that memorises
does something else: it reproduces a few training tiles imperfectly, in its own textures, with the camera noise
half learned, and drifts towards them as it trains. Here a DCGAN is trained on 8 tiles of the simulator's
training split with no augmentation (what makes a GAN on few images memorise) and learning rates 5x the default
(it memorises in half the steps), and its EMA samples at 500 and 1,000 steps are scored against the whole split.
Independently of the copy index, a plain pixel correlation with those 8 tiles says how much it memorised
(measured 2026-12-06: 25 % and 51 % of its samples above 0.9, 0 % of other real videos). The objective must see
the same: an authenticity gap that grows as it memorises, the copying flag at the later checkpoint (and never for
honest data), and both checkpoints worse than honest new data, for every seed of the metric."""

import numpy as np
import pytest

from mitogan.metrics.proof import PROOF_METRICS, proof_parts, videos_to_tiles


def _correlation_with(x: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """Each row of ``x``'s highest Pearson correlation with one of ``tiles`` (raw pixels)."""
    def unit(a):
        a = a.reshape(len(a), -1).astype(np.float64)
        a = a - a.mean(1, keepdims=True)
        return a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-12)

    return (unit(x) @ unit(tiles).T).max(1)


@pytest.mark.slow
def test_a_gan_trained_to_memorise_is_caught_as_it_memorises():
    from mitogan.config import PLAIN_NETWORKS, Config, from_flat
    from mitogan.metrics.evaluate import _run_metrics, primary_value
    from mitogan.metrics.protocol import RealSplit
    from mitogan.metrics.reference import Reference
    from mitogan.metrics.registry import MetricContext
    from mitogan.simulate import SimParams, simulate_video
    from mitogan.train import train

    ts = videos_to_tiles([simulate_video(SimParams(size=64, frames=8), s)[0] for s in range(24)], 32)
    parts = proof_parts(ts, 0)
    few = ts.tiles[np.sort(np.random.default_rng(0).choice(parts["train"], 8, replace=False))]
    other = ts.tiles[parts["other"]]
    cfg = from_flat(Config, {"preprocess.tile.size": 32, "model.arch": "dcgan", "model.g_width": 32,
                             "model.d_width": 32, "model.latent_dim": 32, "train.batch_size": 16,
                             "train.steps": 1000, "train.report_every": 500, "train.sample_every": 1000,
                             "train.eval_every": 500, "train.eval_samples": len(other), "train.threads": 1,
                             "augment.p": 0.0, "loss.kind": "hinge", "optim.lr_g": 1e-3, "optim.lr_d": 1e-3,
                             "train.seed": 0,
                             # the plain DCGAN generator, whatever the defaults: the memoriser was built on it (with
                             # noise inputs it memorises more slowly)
                             **PLAIN_NETWORKS})
    snaps = []
    train(cfg, few, evaluate=lambda x: snaps.append(x))  # EMA samples at steps 500 and 1,000
    early, late = snaps

    # ground truth, without the copy index: the run did memorise, more as it went on
    near = {k: float(np.mean(_correlation_with(x, few) > 0.9)) for k, x in
            {"other": other, "early": early, "late": late}.items()}
    assert near["other"] <= 0.05 and 0.15 <= near["early"] < near["late"] and near["late"] >= 0.4, near

    ref = Reference.build(ts.tiles, ts.source, ts.frame, seed=0,
                          split=RealSplit(parts["train"], parts["heldout"], "proof", np.zeros(len(ts), np.int64)))
    for seed in (0, 1, 2):
        m = {k: _run_metrics(MetricContext(ref, x, seed=seed), PROOF_METRICS)[0]
             for k, x in {"other": other, "early": early, "late": late}.items()}
        gap = {k: v["authenticity_gap"] for k, v in m.items()}
        score = {k: primary_value(v) for k, v in m.items()}
        assert gap["other"] < gap["early"] < gap["late"] and gap["late"] >= 0.2, gap
        assert m["late"]["copying"] == 1.0 and m["other"]["copying"] == 0.0, (seed, gap)
        assert score["other"] < min(score["early"], score["late"]), (seed, score)
