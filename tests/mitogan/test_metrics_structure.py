"""The surrogate-data structure test (``mitogan.metrics.structure``): random fields with real statistics lose
their structure score, mild damage and new real frames do not."""

import numpy as np
import pytest

from mitogan.metrics.evaluate import primary_value
from mitogan.metrics.proof import damage, videos_to_tiles
from mitogan.metrics.structure import StructureReference, phase_surrogate, structure_auc


@pytest.fixture(scope="module")
def sim():
    from mitogan.simulate import SimParams, simulate_video

    # held out: 4 videos; training: the first 4 frames of 8 others; "new": their last 2 frames (what a generator
    # that learned its training distribution draws; the null is the training split, so this is the honest case)
    ts = videos_to_tiles([simulate_video(SimParams(size=128, frames=6), s)[0] for s in range(12)], 64)
    src, frame = np.asarray(ts.source), np.asarray(ts.frame)
    heldout, train, new = ts.tiles[src < 4], ts.tiles[(src >= 4) & (frame < 4)], ts.tiles[(src >= 4) & (frame >= 4)]
    return StructureReference(heldout, train), heldout, new


def _gaussian_field_like(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Textures a generator could draw without shapes: Gaussian random fields with the real tiles' MEAN power
    spectrum, mapped onto the real tiles' pooled histogram (not a damage of any one tile)."""
    rng = np.random.default_rng(seed)
    power = (np.abs(np.fft.fft2(real[:, 0])) ** 2).mean(0)
    field = np.fft.ifft2(np.sqrt(power) * np.fft.fft2(rng.standard_normal((n, *power.shape)))).real
    pooled = np.sort(rng.choice(real.ravel(), field[0].size * n).reshape(n, -1), axis=1)
    out = np.empty((n, field[0].size), np.float32)
    np.put_along_axis(out, np.argsort(field.reshape(n, -1), axis=1), pooled, axis=1)
    return out.reshape(n, 1, *power.shape)


def test_destroyed_structure_is_charged_and_mild_damage_or_new_frames_are_not(sim):
    ref, heldout, new = sim
    gap = lambda x: ref.gap(x)["structure_gap"]  # noqa: E731
    honest = gap(new)
    mild = {name: gap(damage(new, kind, level, seed=3)) for name, (kind, level) in
            {"blur 1 px": ("blur", 1.0), "gamma 1.5": ("gamma", 1.5), "blur 0.5 px": ("blur", 0.5)}.items()}
    destroyed = {"phase": gap(damage(new, "phase", 1.0, seed=3)), "shuffle": gap(damage(new, "shuffle", 0, seed=3)),
                 "texture": gap(_gaussian_field_like(new, len(new), 4))}
    # what the primary's rules need: structure destroyed in any of three ways costs several times what new frames
    # or mild damage cost (on ~130 tiles a gap moves by ~0.1 with the sample: the proof's sets are larger)
    assert max(honest, *mild.values()) < 0.2, (honest, mild)
    assert min(destroyed.values()) > 3 * max(honest, *mild.values()), (destroyed, mild)
    noise = gap(np.random.default_rng(5).uniform(-1, 1, new.shape).astype(np.float32))
    assert 0.5 < noise < 1.0  # smoothed: it approaches 1 but never ties "noise is last" with other sets


def test_the_test_is_deterministic_and_its_null_is_the_training_split(sim):
    ref, heldout, new = sim
    a, b = ref.gap(new, seed=0), ref.gap(new, seed=0)
    assert a == b and 0 < a["structure_auc"] < 1 and 0 < ref.null < 1
    assert a["structure_auc_null"] == ref.null
    # a set scored against itself sits at 0.5 exactly; the held-out tiles' own scores are centred
    assert structure_auc(ref.heldout, ref.heldout) == pytest.approx(0.5)
    assert abs(np.median(ref.heldout)) < 0.5


def test_phase_surrogate_keeps_each_tiles_histogram_and_power_spectrum_but_not_its_pixels():
    x = np.random.default_rng(0).uniform(-1, 1, (5, 1, 32, 32)).astype(np.float32)
    x[:, :, 8:24, 14:18] = 1.0  # a bar
    y = phase_surrogate(x, 1.0, np.random.default_rng(1))
    assert np.array_equal(np.sort(y.reshape(5, -1), 1), np.sort(x.reshape(5, -1), 1))
    assert not np.array_equal(y, x)
    px, py = np.abs(np.fft.fft2(x[:, 0])), np.abs(np.fft.fft2(y[:, 0]))
    assert np.corrcoef(px.ravel(), py.ravel())[0, 1] > 0.8  # nearly the same spectrum (rank remap changes it a little)


def test_the_primary_charges_structure_like_the_other_gaps():
    base = {"fidelity": 0.2, "diversity_gap": 0.1, "authenticity_gap": 0.0}
    assert primary_value({**base, "structure_gap": 0.0}) == pytest.approx(primary_value(base))
    worse = [primary_value({**base, "structure_gap": g}) for g in (0.0, 0.3, 0.6, 0.99)]
    assert worse == sorted(worse) and worse[-1] < 1.0


def test_a_cached_reference_keeps_its_structure_scores_for_the_next_trial(monkeypatch, tmp_path):
    # kept beside the cached reference like the copy nulls: a second trial on the same data draws no surrogate of
    # a real tile and scores generated tiles exactly as a reference built from scratch does
    from mitogan.metrics import structure
    from mitogan.metrics.reference import Reference
    from mitogan.simulate import SimParams, simulate_video

    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path))
    ts = videos_to_tiles([simulate_video(SimParams(size=64, frames=6), s)[0] for s in range(6)], 32)
    query = damage(ts.tiles[:40], "phase", 1.0, seed=1)
    want = Reference.build(ts.tiles, ts.source, ts.frame).structure.gap(query)
    first = Reference.cached(ts.tiles, ts.source, ts.frame)
    assert first.structure.gap(query) == want
    assert len(list(tmp_path.rglob("structure-*.npz"))) == 1
    drawn = []
    excess = structure.structure_excess
    monkeypatch.setattr(structure, "structure_excess", lambda tiles, *a: drawn.append(len(tiles)) or excess(tiles, *a))
    assert Reference.cached(ts.tiles, ts.source, ts.frame).structure.gap(query) == want
    assert drawn == [len(query)]  # the generated tiles only


def test_the_kept_noise_spectra_give_the_same_surrogates_as_drawn_afresh(monkeypatch):
    # the unit-modulus noise spectra are kept per shape (the in-training evaluator scores one shape every call):
    # the same seed, so the same numbers as a stack too big to keep, which draws them each time
    import mitogan.metrics.structure as structure

    x = np.random.default_rng(3).uniform(-1, 1, (9, 1, 32, 32)).astype(np.float32)
    kept = structure.structure_excess(x)
    np.testing.assert_array_equal(structure.structure_excess(x), kept)
    monkeypatch.setattr(structure, "_PHASE_CACHE_BYTES", 0)
    np.testing.assert_array_equal(structure.structure_excess(x), kept)
    assert not structure._cached_phases(x.shape, 2)[0].flags.writeable  # shared: nobody may write into them
