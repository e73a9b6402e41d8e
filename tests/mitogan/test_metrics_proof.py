"""The objective ranks damaged data the way a microscopist would (docs/metrics.md has the tables).

Ladders: blur sigma 0.5 < 1 < 2 < 4; collapse to 50 % < 10 % of the frames < 2 frames; noise mixed in at
10 % < 50 % < 100 %; gamma 1.5 < 3; pixel shuffle within 4 px < whole tile. Across ladders: held-out real
videos beat every damaged set; a 2-frame collapse is worse than real frames later in the same movies and
worse than blur sigma 1; real sources beat shuffled pixels, noise and blur sigma 4; noise is last. Every
order holds for 5 seeds of the metric's randomness, and the primary varies little across them.
Copies of training tiles (whole, noisy, shifted, mirrored, rotated, cropped, rescaled, partial, mixed) lose to
honest new data. Phase scrambling is in every table and rule: its rules hold on the simulator and the sparse
movies since the structure test; what still fails on the shared data is listed as known (``KNOWN_SHARED``).
Sparse simulated movies, and a trained generator collapsed on purpose onto k modes, too. The shared real data's
proof is in test_metrics_proof_shared.py (its own file: the longest test, run beside this file's in CI).
"""

import numpy as np
import pytest

from mitogan.metrics.distances import mean_pairwise_correlation
from mitogan.metrics.proof import (COPIES, LADDERS, PROOF_METRICS, copy_set, damage, pair_orders, proof_scores,
                                   rule_violations, videos_to_tiles)

SEEDS = (0, 1, 2, 3, 4)


def _stable(result, seeds=SEEDS):
    """Coefficient of variation < 5 % across seeds; where the primary is ~0 (|mean| < 0.1) the CV is
    meaningless and the spread must stay under 0.005 on the calibrated scale (0 = real split, 1 = noise)."""
    bad = []
    for name in result["scores"][seeds[0]]:
        v = np.array([result["scores"][s][name] for s in seeds])
        if abs(v.mean()) >= 0.1 and v.std() / abs(v.mean()) >= 0.05 or abs(v.mean()) < 0.1 and v.std() >= 0.005:
            bad.append(f"{name}: {np.round(v, 4)}")
    return bad


def _check(result, sources=(), known=frozenset(), seeds=SEEDS):
    for s in seeds:
        broken = {(a, b) for a, b in pair_orders(sources, "copy" in result["scores"][s])
                  if not result["scores"][s][a] < result["scores"][s][b]}
        assert broken <= known, f"seed {s}: {rule_violations(result['scores'][s], sources)}"
    assert _stable(result, seeds) == []


# Phase scrambling (each tile's Fourier phases randomised and its own histogram put back: intensities and power
# spectrum kept, every shape gone) scored like mild damage until the surrogate-data structure test
# (``structure.py``, the primary's ``structure_gap``; docs/metrics.md "Structure"): seed 0, realism_gap before ->
# after it, simulator 0.196 -> 0.648 (mild damage at most 0.454 -> 0.492), sparse movies 0.089 -> 0.749 (at most
# 0.474), shared data 0.434 -> 0.708. Every phase rule now holds on the simulator and the sparse movies.
_PHASE = "phase=1.0"

# Known on the shared data since twin videos count as one (docs/metrics.md, "Proof"): the data is ten fields,
# one of them filmed in five files (half of all tiles); held out by its time blocks, mild blur and gamma 1.5
# of "other videos" are as close to the held-out fields as the other videos themselves in this feature
# space (the objective's leniency to mild blur that the classifier test sees: issue 19, item 2), and half-
# scrambled phases of them too (0.47 vs 0.54: its structure gap 0.20). Whole scrambling now loses to every mild
# damage but 10 % noise (0.71 vs 0.76: the noise's fidelity 0.49 and diversity gap 0.48 against 0.37 and 0.11).
# A partial copy (three quarters of a training tile's side pasted into other videos' tiles) beats honest
# data here: the ATS field hardly changes, so new frames reproduce most of its patches as closely as a copy
# does (authenticity gap 0.02), and a collage of other videos with the training field is nearer the held-out
# field than other videos alone are (0.23 vs 0.54 / 0.46). On the simulator it loses clearly (gap 0.33).
KNOWN_SHARED = frozenset({("other", "blur=0.5"), ("other", "blur=1.0"), ("other", "gamma=1.5"),
                          ("blur=0.5", "blur=1.0"), ("other", "phase=0.5"), ("noise=0.1", _PHASE),
                          ("other", "copy_part=0.75"), ("later", "copy_part=0.75")})


@pytest.mark.slow
def test_proof_on_simulated_data():
    from mitogan.simulate import SimParams, simulate_video

    sim = videos_to_tiles([simulate_video(SimParams(size=128, frames=12), s)[0] for s in range(20)], 64)
    # another "microscope and lab": denser, thinner tubes, a wider PSF, dimmer, more branching
    other = SimParams(size=128, frames=12, density=5, width_mean=5, psf_sigma=2.0, brightness=150, branch_prob=0.5)
    second = videos_to_tiles([simulate_video(other, 100 + s)[0] for s in range(6)], 64).tiles
    _check(proof_scores(sim, {"second_source": second}, seeds=SEEDS), ("second_source",))


@pytest.mark.long  # beyond CI's budget: `make test-long` (README, Tests)
@pytest.mark.slow
def test_proof_on_sparse_simulated_data():
    from mitogan.simulate import SimParams, simulate_video

    # few, thin objects on a dark field: most of a tile is background, so whole-tile pixel shuffling and phase
    # scrambling keep most of its intensity histogram (issue 19: on sparse movies they scored like new data);
    # whole-tile shuffling and phase scrambling now score worse than every mild damage here (the topology features
    # and the structure test, docs/metrics.md);
    # 3 seeds of the metric's randomness (the CI budget), the rules and the spread as for 5
    sparse = SimParams(size=128, frames=12, density=0.8, width_mean=5, length_mean=25)
    result = proof_scores(videos_to_tiles([simulate_video(sparse, s)[0] for s in range(24)], 64), seeds=SEEDS[:3])
    _check(result, seeds=SEEDS[:3])


@pytest.mark.slow
def test_a_trained_generator_collapsed_on_purpose_ranks_by_severity():
    """Collapse as a GAN shows it, not as a ladder draws it: a DCGAN trained on the simulator's training part,
    then sampled with its latent confined to k points (plus 5 % jitter): the output of a generator that has
    collapsed onto k modes, textures and artefacts of a real network included. Fewer modes must score worse,
    and every such generator worse than held-out real data. So must a run that collapses by its own settings (a
    discriminator learning rate 50x the default, no discriminator normalisation, no augmentation, no EMA): measured
    2026-12-06 over training seeds 0-3, its samples correlate with each other at 0.26-0.64 on average (seed 0:
    0.40; real tiles: 0.04)."""
    import torch

    from mitogan.metrics.evaluate import _run_metrics, primary_value
    from mitogan.metrics.protocol import RealSplit
    from mitogan.metrics.reference import Reference
    from mitogan.metrics.registry import MetricContext
    from mitogan.simulate import SimParams, simulate_video
    from mitogan.train import train
    from mitogan.config import PLAIN_NETWORKS, Config, from_flat
    from mitogan.metrics.proof import proof_parts

    ts = videos_to_tiles([simulate_video(SimParams(size=64, frames=8), s)[0] for s in range(24)], 32)
    parts = proof_parts(ts, 0)
    cfg = from_flat(Config, {"preprocess.tile.size": 32, "model.arch": "dcgan", "model.g_width": 16,
                             "model.d_width": 16, "model.latent_dim": 32, "train.batch_size": 32, "train.steps": 400,
                             "train.report_every": 400, "train.sample_every": 400, "train.threads": 1,
                             "loss.kind": "hinge", "train.seed": 0,
                             # the plain DCGAN generator, whatever the defaults: the collapse was built on it (with
                             # noise inputs the unstable run below stays more varied than a collapse)
                             **PLAIN_NETWORKS})
    g = train(cfg, ts.tiles[parts["train"]]).generator
    n, rng = len(parts["other"]), torch.Generator().manual_seed(1)
    unstable = {"model.d_norm": "none", "optim.lr_d": 1e-2, "augment.p": 0.0, "train.ema_decay": 0.0}
    g_unstable = train(from_flat(Config, unstable, base=cfg), ts.tiles[parts["train"]]).generator
    with torch.no_grad():
        collapsed = g_unstable(torch.randn(n, 32, generator=torch.Generator().manual_seed(2))).numpy()
    assert mean_pairwise_correlation(collapsed) > 0.2 > 0.1 > mean_pairwise_correlation(ts.tiles[parts["other"]])

    def sample(k: int | None):
        z = torch.randn(n, 32, generator=rng)
        if k is not None:  # k modes: every latent snapped to one of k anchors, plus a little jitter
            z = torch.randn(k, 32, generator=rng)[torch.arange(n) % k] + 0.05 * z
        with torch.no_grad():
            return g(z).numpy()

    sets = {"other": ts.tiles[parts["other"]], "gan": sample(None), "gan_k=20": sample(20), "gan_k=5": sample(5),
            "gan_k=1": sample(1), "gan_unstable": collapsed}
    ref = Reference.build(ts.tiles, ts.source, ts.frame, seed=0,
                          split=RealSplit(parts["train"], parts["heldout"], "proof", np.zeros(len(ts), np.int64)))
    for seed in (0, 1, 2):
        values = {k: _run_metrics(MetricContext(ref, x, seed=seed), PROOF_METRICS)[0] for k, x in sets.items()}
        score = {k: primary_value(v) for k, v in values.items()}
        assert score["other"] < min(score[k] for k in sets if k != "other"), score
        assert score["gan"] <= score["gan_k=20"] < score["gan_k=5"] < score["gan_k=1"], score
        # the diversity gap itself sees the run that collapsed by its settings (its tiles share a lattice of
        # artefacts that the layout view blurs away: before the correlation view it read 0.00-0.08 on such runs)
        # (measured: other videos 0.006, the unstable run 0.378; the k-collapsed samples 0.408 <= 0.44 < 0.51 < 1.00)
        div = {k: v["diversity_gap_correlation"] for k, v in values.items()}
        assert div["gan_unstable"] > div["other"] + 0.1, div
        assert div["gan"] <= div["gan_k=20"] < div["gan_k=5"] < div["gan_k=1"], div


def test_rules_cover_every_ladder_step_and_the_cross_ladder_orders():
    pairs = set(pair_orders(("second_source",)))
    assert ("blur=0.5", "blur=1.0") in pairs and ("collapse=0.1", "collapse=2") in pairs
    assert ("later", "collapse=2") in pairs and ("second_source", "shuffle=0") in pairs
    assert ("blur=1.0", "phase=1.0") in pairs and ("collapse=0.5", "phase=1.0") in pairs
    assert ("other", "copy_part=0.75") in pairs and ("later", "copy_part=0.75") in pairs
    assert ("templates=5", "templates=1") in pairs and ("other", "stamp=0.3") in pairs
    for copy in ("copy", "copy_noise=0.01", "copy_shift=1", "copy_rot90", "copy_crop=0.9", "copy_mix=0.5"):
        assert ("other", copy) in pairs and ("later", copy) in pairs  # copies lose to honest new data
    assert ("copy_mix=0.1", "copy_mix=0.5") in pairs and ("copy_mix=0.5", "copy_mix=1.0") in pairs
    scores = {name: 0.5 for pair in pairs for name in pair}
    assert len(rule_violations(scores, ("second_source",))) == len(pairs)  # ties break every rule


def test_damage_keeps_shape_and_range_and_collapse_keeps_whole_frames():
    x = np.random.default_rng(0).uniform(-1, 1, (40, 1, 16, 16)).astype(np.float32)
    for kind, levels in LADDERS.items():
        for level in levels:
            y = damage(x, kind, level, frames=np.arange(40) // 4)
            assert y.shape == x.shape and y.dtype == np.float32 and y.min() >= -1 and y.max() <= 1
    two = damage(x, "collapse", 2, frames=np.arange(40) // 4)
    assert len(np.unique(two.reshape(40, -1), axis=0)) == 8  # 2 frames x 4 tiles
    local = damage(x, "shuffle", 4)  # pixels stay inside their 4x4 block
    assert np.allclose(np.sort(local[:, :, :4, :4].reshape(40, -1)), np.sort(x[:, :, :4, :4].reshape(40, -1)))


def test_copy_sets_are_what_they_say():
    rng = np.random.default_rng(1)
    train = rng.uniform(-1, 1, (30, 1, 32, 32)).astype(np.float32)
    honest = rng.uniform(-1, 1, (30, 1, 32, 32)).astype(np.float32)
    flat = lambda a: {t.tobytes() for t in a}  # noqa: E731
    for name in COPIES:
        x = copy_set(train, name, honest, 20, seed=2)
        assert x.shape == (20, 1, 32, 32) and x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1, name
    assert flat(copy_set(train, "copy", honest, 20)) <= flat(train)
    assert flat(copy_set(train, "copy_rot90", honest, 20)) <= flat(np.rot90(train, 1, axes=(2, 3)))
    half = copy_set(train, "copy_mix=0.5", honest, 20)
    assert len(flat(half) & flat(train)) == 10 and len(flat(half) & flat(honest)) == 10
