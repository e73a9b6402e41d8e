"""Data copying (``mitogan.metrics.copying``): copies of training tiles are found up to orientation, small
shifts, a 10 % zoom, noise and blur; new data of the same movies is not; twin videos are merged; the
authenticity gap enters the primary so that a copier loses to honest data. The full copy ladder on the
simulator and the shared real data is in test_metrics_proof.py."""

import numpy as np
import pytest

from mitogan.metrics.copying import CopyIndex, PatchIndex, copy_statistics, layout, video_twins
from mitogan.metrics.evaluate import primary_value
from mitogan.metrics.proof import COPIES, copy_set


def _movie(n_frames=24, seed=0, size=48, drift=0.7):
    """One simulated-looking movie: blurred random tubes that drift, with camera noise; tiles of 32 px."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    base = np.zeros((size * 3, size * 3), np.float32)
    for _ in range(30):
        y, x = rng.integers(0, size * 3, 2)
        base[max(0, y - 1):y + 2, max(0, x - 8):x + 8] = rng.uniform(0.5, 1.0)
    base = ndimage.gaussian_filter(base, 1.5)
    frames = []
    for t in range(n_frames):
        f = ndimage.shift(base, (drift * t, 0.5 * drift * t), order=1, mode="wrap")
        frames.append(f[:size * 2, :size * 2] + 0.03 * rng.standard_normal((size * 2, size * 2)))
    frames = np.asarray(frames)
    frames = (frames - frames.min()) / (frames.max() - frames.min()) * 2 - 1
    tiles = frames.reshape(n_frames, 2, size, 2, size).transpose(0, 1, 3, 2, 4).reshape(-1, 1, size, size)
    return tiles[:, :, 8:40, 8:40].astype(np.float32), np.repeat(np.arange(n_frames), 4)


@pytest.fixture(scope="module")
def movie():
    tiles, frame = _movie()
    train = frame < 16  # the first two thirds train; later frames are honest new data of the same field
    groups = frame[train] // 4  # time blocks of the training frames
    index = CopyIndex(tiles[train])
    return tiles[train], tiles[~train], index, index.null(groups, tiles[train])


# copies under 5 % noise are as far from their originals as a re-acquisition of the field is: the copy test
# does not see them, the noise costs them fidelity instead (the proof checks the primary's order)
@pytest.mark.parametrize("name", [c for c in COPIES if c not in ("copy_mix=0.1", "copy_noise=0.05", "copy_part=0.75")])
def test_every_form_of_copy_is_flagged_and_later_frames_are_not(movie, name):
    train, later, index, null = movie
    copies = copy_set(train, name, later, 48, seed=1)
    gap_copy = copy_statistics(index.distances(copies)[0], null)["authenticity_gap"]
    gap_later = copy_statistics(index.distances(later)[0], null)["authenticity_gap"]
    assert gap_later < 0.1, gap_later
    assert gap_copy > gap_later + 0.3, (name, gap_copy, gap_later)


@pytest.fixture(scope="module")
def parts(movie):
    train, later, _, _ = movie
    groups = np.repeat(np.arange(16), 4)[: len(train)] // 4
    return PatchIndex(train, groups)


def _part_share(parts, tiles):
    return float((parts.ratios(tiles) < np.quantile(parts.null(), 0.05)).mean())


def test_partial_copies_are_flagged_and_new_frames_are_not(movie, parts):
    train, later, _, _ = movie
    from scipy import ndimage

    # three quarters of a training tile's side pasted at a random place into new frames: the whole tile
    # matches nothing, a part of it does
    pasted = copy_set(train, "copy_part=0.75", later, 48, seed=3)
    assert _part_share(parts, later) < 0.15  # new frames of the field: about the null's 5 %
    smooth = ndimage.gaussian_filter(later, (0, 0, 1, 1))  # cleaner than the data is not closer to it
    assert _part_share(parts, smooth) < 0.15
    assert _part_share(parts, pasted) > _part_share(parts, later) + 0.3


def test_the_partial_copy_null_is_calibrated_like_new_data(movie, parts):
    # the null's own tiles, left out one time block at a time, are flagged at ~5 % by construction; the
    # question is whether new frames are flagged at about that rate too (not far above: false copies)
    train, later, _, _ = movie
    null = parts.null()
    assert len(null) == len(train) and np.isfinite(null).all()
    assert abs(_part_share(parts, later) - 0.05) < 0.1


def test_copy_statistics_join_the_two_tests_and_measure_from_the_null_rate():
    rng = np.random.default_rng(0)
    n = 4000
    d_null, r_null = rng.uniform(0, 1, n), rng.uniform(0, 1, n)  # independent: the union flags ~10 %
    honest = copy_statistics(rng.uniform(0, 1, n), d_null, rng.uniform(0, 1, n), r_null)
    assert 0.08 < honest["copy_null_share"] < 0.12 and honest["authenticity_gap"] < 0.03
    parts_only = copy_statistics(rng.uniform(0, 1, n), d_null, np.zeros(n), r_null)  # every tile part-copied
    assert parts_only["copy_share"] == 1.0 and parts_only["authenticity_gap"] == 1.0
    assert parts_only["whole_copy_share"] < 0.1 and parts_only["part_copy_share"] == 1.0
    # the partial-copy index may hold a subset of the training tiles: its null is paired with theirs, never
    # silently dropped
    sub = copy_statistics(rng.uniform(0, 1, n), d_null, np.zeros(n), r_null[:500], d_null_of_r=d_null[:500])
    assert sub["part_copy_share"] == 1.0 and sub["authenticity_gap"] == 1.0
    with pytest.raises(ValueError):
        copy_statistics(rng.uniform(0, 1, n), d_null, np.zeros(n), r_null[:500], d_null_of_r=d_null[:400])


def test_copy_share_is_monotone_in_the_share_of_copies(movie):
    train, later, index, null = movie
    gaps = [copy_statistics(index.distances(copy_set(train, f"copy_mix={s}", later, 60, seed=2))[0], null)
            ["authenticity_gap"] for s in (0.1, 0.5, 1.0)]
    assert gaps[0] < gaps[1] < gaps[2] and gaps[2] > 0.9


def test_nearest_training_tile_is_the_copied_one(movie):
    train, _, index, _ = movie
    pick = np.array([3, 17, 40])
    d, j = index.distances(np.rot90(train[pick], 1, axes=(2, 3)))
    assert np.all(d < 1e-3) and list(j) == list(pick)


def test_the_first_stage_equals_a_float64_search_on_dark_faint_tiles():
    # A dark field is -1 everywhere in [-1, 1] units and its structure is faint: every window's products are
    # large terms that cancel. The first stage's distance (best window correlation over +-2 cells of shift)
    # must equal a plain float64 search over every training tile and shift; the einsum it replaced was up to
    # 3.4e-3 off on such patches (float32 cancellation), this one to 3e-7.
    from scipy import ndimage

    from mitogan.metrics.copying import FINE, SHIFT, grids

    rng = np.random.default_rng(3)
    faint = ndimage.gaussian_filter(rng.standard_normal((14, 1, 32, 32)), (0, 0, 2, 2))
    tiles = (-1 + 0.02 * faint / faint.std() + 0.002 * rng.standard_normal(faint.shape)).astype(np.float32)
    train = tiles[:10]
    query = np.concatenate([tiles[10:], np.roll(train[:2], 1, axis=3)])  # new tiles, then shifted copies
    index = CopyIndex(train, candidates=len(train), orient=False, zooms=(1.0,), rotate=False)
    got = index.distances(query)[0]

    side = FINE - 2 * SHIFT
    g_train = grids(train, FINE, 32 / 64).astype(np.float64)
    g_query = grids(query, FINE, 32 / 64).astype(np.float64)[:, SHIFT:SHIFT + side, SHIFT:SHIFT + side]
    unit = lambda w: (w - w.mean()) / np.linalg.norm(w - w.mean())  # noqa: E731
    want = np.array([1 - max(float((unit(q) * unit(t[i:i + side, j:j + side])).sum())
                             for t in g_train for i in range(2 * SHIFT + 1) for j in range(2 * SHIFT + 1))
                     for q in g_query])
    assert want[-2:].max() < 0.1 < want[:-2].min()  # the shifted copies are near, the new tiles are not
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("degrees, mirror", [(4.0, False), (17.0, True), (-29.0, False), (45.0, True), (128.0, False)])
def test_a_turned_copy_is_matched_to_its_original_at_its_angle(movie, degrees, mirror):
    """Any turn, not only quarter turns: the angle read from the two power spectra is within 2 degrees (32 px
    tiles), and a copy turned about a point off the tile's centre (a turn plus a sub-pixel move) finds its
    original (mirrored or not), nearer than the copy threshold. Tiles with structure: a turned tile of camera
    noise alone is new noise, no test can call it a copy."""
    from mitogan.metrics.copying import _along_angles, _angles, _polar_spectra, turn_tiles

    train, _, index, null = movie
    pick = np.sort(np.argsort(train.std((1, 2, 3)))[-4:])
    s = train.shape[-1]
    originals = np.ascontiguousarray(train[pick][..., ::-1] if mirror else train[pick])
    turned = turn_tiles(originals, degrees, centre=(s / 2 + 0.3, s / 2 - 0.6))
    spectra = lambda x: _along_angles(_polar_spectra(x))  # noqa: E731
    angle = _angles(spectra(turn_tiles(train[pick], degrees)), spectra(train[pick])[:, None])[0][:, 0]
    assert np.all(np.abs((angle - degrees + 90) % 180 - 90) < 2.0), angle
    d, j = index.distances(turned)
    assert list(j) == list(pick) and np.all(d < np.quantile(null, 0.05)), (j, d, np.quantile(null, 0.05))


@pytest.mark.parametrize("scale, degrees, mirror", [(0.75, 0.0, False), (1.3, 0.0, False), (1.4, 20.0, True), (0.8, -35.0, False)])
def test_a_rescaled_copy_is_matched_to_its_original(movie, scale, degrees, mirror):
    """Copies magnified or shrunk by 20-40 % (the tile's own border mirrored in where it shrinks), turned or not,
    mirrored or not, about a point off the centre: each is nearer than the copy threshold to its original or to
    the same place one frame away (the field drifts 0.7 px a frame: a shrunk copy loses that much detail)."""
    from mitogan.metrics.copying import turn_tiles

    train, _, index, null = movie
    pick = np.sort(np.argsort(train.std((1, 2, 3)))[-4:])
    s = train.shape[-1]
    originals = np.ascontiguousarray(train[pick][..., ::-1] if mirror else train[pick])
    copies = turn_tiles(originals, degrees, centre=(s / 2 - 0.4, s / 2 + 0.7), scale=scale)
    d, j = index.distances(copies)
    (frame, place), (frame0, place0) = np.divmod(j, 4), np.divmod(pick, 4)  # 4 tiles a frame (``_movie``)
    assert np.all(place == place0) and np.all(np.abs(frame - frame0) <= 1), (j, pick)
    assert np.all(d < np.quantile(null, 0.05)), (d, np.quantile(null, 0.05))


def test_twin_videos_are_merged_and_distinct_videos_are_not():
    a, _ = _movie(seed=0)
    b, _ = _movie(seed=1)
    twin = np.clip(a + 0.02 * np.random.default_rng(3).standard_normal(a.shape), -1, 1)  # the same movie saved twice
    tiles = np.concatenate([a, b, twin]).astype(np.float32)
    source = np.repeat([0, 1, 2], len(a))
    merged = video_twins(tiles, source)
    assert merged[0] == merged[-1] and merged[0] != merged[len(a)]


def test_a_copier_loses_to_an_honest_generator_of_similar_fidelity():
    honest = primary_value({"fidelity": 0.2, "diversity_gap": 0.0, "authenticity_gap": 0.0})
    copier = primary_value({"fidelity": -0.1, "diversity_gap": 0.0, "authenticity_gap": 0.9})
    assert copier > honest and primary_value({"fidelity": 0.2, "diversity_gap": 0.0}) == honest


def test_layout_sees_the_same_structure_at_the_same_place():
    rng = np.random.default_rng(0)
    tiles, _ = _movie()
    real, scale = layout(tiles)
    stamped = layout(0.4 * tiles + 0.6 * tiles[5][None], scale)[0]
    spread = lambda z: np.linalg.norm(z - z.mean(0), axis=1).mean()  # noqa: E731
    assert spread(stamped) < 0.7 * spread(real)
    empty = layout(np.full((10, 1, 32, 32), -1, np.float32) + 0.05 * rng.standard_normal((10, 1, 32, 32)), scale)[0]
    assert np.linalg.norm(empty, axis=1).max() < 0.3  # noise on an empty tile is not blown up into contrast


def test_whole_frames_of_256_px_are_indexed_like_64_px_tiles():
    # 256 px tiles are area-averaged to 64 px before they are cut into patches: a copy is still found, and the
    # patches cost what 64 px tiles do
    from scipy import ndimage

    rng = np.random.default_rng(4)
    tiles = ndimage.gaussian_filter(rng.standard_normal((16, 1, 256, 256)), (0, 0, 3, 3)).astype(np.float32)
    tiles /= np.abs(tiles).max()
    train, new = tiles[:12], tiles[12:]
    index = PatchIndex(train, np.arange(12) // 3)
    assert index.side == 32 and index.index.size == 32
    threshold = np.quantile(index.null(), 0.05)
    assert (index.ratios(np.roll(train[:4], 5, axis=3)) < threshold).all()  # shifted copies
    assert (index.ratios(new) >= threshold).mean() >= 0.75  # new images are not copies


def test_a_cached_reference_keeps_its_copy_nulls_for_the_next_trial(monkeypatch, tmp_path):
    # both copy nulls are kept beside the cached reference: a second trial on the same data reads them (no null
    # is computed again) and scores generated tiles exactly as a reference built from scratch does
    from mitogan.metrics.reference import Reference

    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path))
    tiles, frame = _movie(n_frames=20)
    source = np.zeros(len(tiles), np.int64)
    query = np.concatenate([_movie(n_frames=4, seed=5)[0], np.rot90(tiles[:8], 1, axes=(2, 3))])

    def stats(ref):
        d, r = ref.copies.distances(query)[0], ref.part_copies.ratios(query)
        return copy_statistics(d, ref.copy_null, r, ref.part_copies.null(), d_null_of_r=ref.copy_null[ref.part_copy_tiles])

    want = stats(Reference.build(tiles, source, frame))
    first = Reference.cached(tiles, source, frame)
    assert stats(first) == want
    nulls = list(first.cache_file.parent.glob("copy-nulls-" + first.cache_file.stem.removeprefix("reference-") + "-*.npz"))
    assert len(nulls) == 1  # kept beside the reference's own entry
    computed = []
    distances = CopyIndex.distances
    monkeypatch.setattr(CopyIndex, "distances",
                        lambda self, q, groups=None, chunk=256: computed.append(groups) or distances(self, q, groups, chunk))
    second = Reference.cached(tiles, source, frame)
    assert stats(second) == want
    assert len(computed) == 2 and all(g is None for g in computed)  # the two query passes only, no null
    np.testing.assert_array_equal(second.part_copies.scale, first.part_copies.scale)
