"""Instance masks of simulated movies (mitogan.simulate.label_masks, `mitogan simulate` writes them): they
cover the bright pixels of the noise-free render and nothing else, their ids are the truth's objects, and
`mitogan simulate --config fitted.yaml` writes them beside the frames without their being read as movies."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from mitogan.simulate import SimParams, label_masks, simulate_video, skeleton_at

# expected photons only, no background, camera or haze: the frame is the rendered objects (after the PSF)
CLEAN = dict(size=96, frames=4, shot_noise=False, read_noise=0.0, column_noise=0.0, background=0.0,
             autofluorescence=0.0, offset=0.0, gradient=0.0, brightness_sd=0.0, bead_prob=0.6, density=6.0,
             psf_sigma=0.8)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_masks_cover_the_bright_pixels_of_the_noise_free_render(seed):
    p = SimParams(**CLEAN)
    frames, truth = simulate_video(p, seed)
    labels = label_masks(truth)
    assert labels.shape == frames.shape and labels.dtype == np.uint16
    inside = labels > 0
    peak = p.brightness * np.exp(-p.bleach_rate * np.arange(p.frames))[:, None, None]  # a tube's peak photons
    rel = frames / peak
    assert 0.01 < inside.mean() < 0.6
    # inside: signal everywhere, mostly near the peak (a cylinder's projection thins to 0 at its very edge)
    assert np.percentile(rel[inside], 1) > 0.05 and np.median(rel[inside]) > 0.5
    # outside: only the PSF's spill; nothing as bright as a tube's core
    assert rel[~inside].max() < 0.7


@pytest.mark.parametrize("seed", [1, 4])
def test_mask_ids_are_the_truths_objects_at_their_geometry(seed):
    frames, truth = simulate_video(SimParams(**{**CLEAN, "frames": 12, "fission_rate": 0.1}), seed)
    labels = label_masks(truth)
    assert truth["counts"]["fission"] > 0  # ids change over the movie
    for t in range(labels.shape[0]):
        alive = {o["id"]: o for o in truth["objects"] if o["first_frame"] <= t <= o["last_frame"]}
        present = set(np.unique(labels[t]).tolist()) - {0}
        assert {v - 1 for v in present} <= set(alive)
        for value in present:  # each label's pixels lie on that object's tube (or beads) at this frame
            ob = alive[value - 1]
            rows, cols = np.nonzero(labels[t] == value)
            skel = np.concatenate(skeleton_at(truth, ob, t))  # (N, 2) x, y, 1 px apart
            d = np.sqrt(((cols[:, None] - skel[None, :, 0]) ** 2 + (rows[:, None] - skel[None, :, 1]) ** 2).min(1))
            reach = max(ob["width_px"] / 2, ob["beads"]["radius_px"] or 0)
            assert d.max() <= reach + 0.6, (t, ob["id"])
        for oid, ob in alive.items():  # an object whose skeleton is well inside the frame is in the mask
            skel = np.concatenate(skeleton_at(truth, ob, t))
            if ((skel > 8) & (skel < 88)).all(1).any():
                assert oid + 1 in present or _covered(labels[t], skel), (t, oid)


def _covered(labels: np.ndarray, skel: np.ndarray) -> bool:
    """Every pixel under the skeleton belongs to other (higher-id) objects: hidden where they cross."""
    xy = np.rint(skel).astype(int)
    ok = (xy >= 0).all(1) & (xy < labels.shape[0]).all(1)
    return bool((labels[xy[ok, 1], xy[ok, 0]] > 0).all())


def test_simulate_with_a_fitted_config_writes_masks_not_read_as_movies(tmp_path):
    from mitogan.io import read_inputs
    from mitogan.simfit.data import write_fitted

    fitted = write_fitted(tmp_path / "fitted.yaml", SimParams(density=6.0, bead_prob=0.5))
    out = tmp_path / "sim"
    run = subprocess.run([sys.executable, "-m", "mitogan", "simulate", "--config", str(fitted), "--out", str(out),
                          "--videos", "2", "--frames", "3", "--size", "64", "-q"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    for i in range(2):
        truth = json.loads((out / f"video_{i:03d}.json").read_text())
        masks = tifffile.imread(out / "masks" / f"video_{i:03d}.tif")
        assert masks.dtype == np.uint16 and masks.shape == tuple(truth["shape"])
        assert truth["params"]["density"] == 6.0
        np.testing.assert_array_equal(masks, label_masks(truth))  # what the truth says, drawn
    items = json.loads((out / "simulation.json").read_text())["items"]
    assert [it["masks"] for it in items] == ["masks/video_000.tif", "masks/video_001.tif"]
    videos = read_inputs([out], progress=False)  # the folder as movies: the two videos, not their masks
    assert sorted(v.source for v in videos) == [str(out / "video_000.tif"), str(out / "video_001.tif")]
