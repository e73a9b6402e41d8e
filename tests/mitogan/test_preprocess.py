"""Preprocessing steps (dtype/range contracts), the Pipeline, its cache and quality control."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from mitogan import preprocess as pp
from mitogan.config import PreprocessConfig, from_flat, to_flat
from mitogan.errors import InputError
from mitogan.frames import Video

DTYPES = [np.uint8, np.uint16, np.float32]
NOISE_CROPS = {"643a9c8cc961ee3e0ca48b33", "643a9c8fc961ee3e0ca48b34"}


def blobs(shape=(96, 96), seed=0, n=12) -> np.ndarray:
    """Smooth bright blobs on a dark background, float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    ys, xs = rng.integers(8, shape[0] - 8, n), rng.integers(8, shape[1] - 8, n)
    img[ys, xs] = 1.0
    img = cv2.GaussianBlur(img, (0, 0), 2.5)
    return img / img.max()


def as_dtype(img01: np.ndarray, dtype) -> np.ndarray:
    """A [0, 1] image in ``dtype`` on that dtype's full range (floats stay in [0, 1])."""
    if dtype == np.float32:
        return img01.astype(np.float32)
    return np.round(img01 * np.iinfo(dtype).max).astype(dtype)


def noisy_blobs(dtype, shape=(96, 96), seed=0, sigma=0.08):
    rng = np.random.default_rng(seed)
    clean = 0.1 + 0.7 * blobs(shape, seed)
    return clean, as_dtype(np.clip(clean + rng.normal(0, sigma, shape), 0, 1), dtype)


# ------------------------------------------------------------------------------------------ steps

@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_maps_percentiles_to_unit_range(dtype):
    _, img = noisy_blobs(dtype, sigma=0.04)  # no clipping at 0 or 1 in the input
    out = pp.normalize_percentile(img, 1.0, 99.0)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() == 0.0 and out.max() == 1.0
    # ~1 % of pixels sit at or below the low percentile, ~1 % at or above the high one
    assert 0.005 < np.mean(out == 0) < 0.03 and 0.005 < np.mean(out == 1) < 0.03


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_constant_image_gives_zeros(dtype):
    out = pp.normalize_percentile(np.full((8, 8), 7, dtype))
    assert out.dtype == np.float32 and not out.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["ratio", "exponential"])
def test_bleaching_correction_flattens_known_decay(dtype, method):
    # 20 frames: offset + pattern * exp(-0.08 t); the pattern has dark pixels so the dark level is the offset
    scale = {np.uint8: 100, np.uint16: 20000, np.float32: 0.5}[dtype]
    offset = {np.uint8: 10, np.uint16: 1000, np.float32: 0.05}[dtype]
    t = np.arange(20)[:, None, None]
    video = (offset + scale * blobs() * np.exp(-0.08 * t)).astype(dtype)
    out = pp.correct_bleaching(video, method)
    assert out.dtype == np.float32 and out.shape == video.shape
    signal = out.reshape(20, -1).mean(1) - offset
    before = video.reshape(20, -1).mean(1) - offset
    assert before[-1] / before[0] < 0.25  # the input decays by >4x
    np.testing.assert_allclose(signal / signal[0], 1.0, atol=0.03)  # the output is flat
    # the dark background stays at the camera offset (it is not amplified)
    assert abs(float(np.median(out[-1])) - offset) <= 0.02 * scale


@pytest.mark.parametrize("dtype", DTYPES)
def test_drift_correction_recovers_known_shift(dtype):
    big = blobs((160, 160), seed=3, n=40)
    shifts = [(0, 0), (3, -5), (-4, 2)]
    video = np.stack([big[20 + dy:140 + dy, 20 + dx:140 + dx] for dy, dx in shifts])  # (3, 120, 120)
    video = as_dtype(video, dtype)
    # frame t shows the scene moved by -shift: its content is displaced by (-dy, -dx) from frame 0's
    est = pp.estimate_drift(video, "first")
    np.testing.assert_allclose(est, -np.array(shifts, float), atol=0.35)  # OpenCV's subpixel peak
    chained = pp.estimate_drift(video, "previous")
    np.testing.assert_allclose(chained, -np.array(shifts, float), atol=0.5)
    out = pp.correct_drift(video, "first")
    assert out.dtype == np.float32 and out.shape == video.shape
    inner = np.s_[12:-12, 12:-12]
    ref = video[0].astype(np.float32)
    err_after = np.abs(out[1][inner] - ref[inner]).mean()
    err_before = np.abs(video[1].astype(np.float32)[inner] - ref[inner]).mean()
    assert err_after < 0.25 * err_before


def test_drift_correction_leaves_input_untouched():
    # OpenCV 5.0's phaseCorrelate overwrites its inputs; our wrapper must not let that leak out
    video = as_dtype(np.stack([blobs(seed=1)] * 3), np.float32)
    before = video.copy()
    pp.correct_drift(video)
    np.testing.assert_array_equal(video, before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nlm_denoise_contract_and_effect(dtype):
    clean, img = noisy_blobs(dtype)
    out = pp.denoise_nlm(img, h=20, template=7, search=21)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    err_in = np.abs(pp.to_unit(img) - clean).mean()
    assert np.abs(out - clean).mean() < 0.6 * err_in  # noise is reduced


@pytest.mark.parametrize("dtype", DTYPES)
def test_laplace_contract_and_sharpening(dtype):
    img = as_dtype(0.1 + 0.6 * blobs(), dtype)
    same = pp.enhance_laplace(img, ksize=3, weight=0.0)
    np.testing.assert_allclose(same, pp.to_unit(img), atol=1e-6)  # weight 0: identity on the unit scale
    out = pp.enhance_laplace(img, ksize=3, weight=1.0)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    # sharpening raises the blob peaks (negative Laplacian there)
    assert out.max() > same.max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_otsu_mask_and_masked(dtype):
    img = as_dtype(0.05 + 0.9 * (blobs() > 0.3), dtype)
    mask = pp.otsu(img, "mask")
    assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(mask > 0, pp.to_unit(img) > 0.5)
    masked = pp.otsu(img, "masked")
    assert masked.dtype == np.float32
    np.testing.assert_allclose(masked, np.where(mask > 0, pp.to_unit(img), 0), atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["mask", "masked"])
def test_otsu_on_constant_image_has_no_foreground(dtype, mode):
    img = np.full((32, 32), 5, dtype)
    assert pp.otsu_threshold(img) is None
    out = pp.otsu(img, mode)
    assert out.dtype == np.float32 and out.shape == (32, 32) and not out.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiling_counts_range_and_provenance(dtype):
    frames = np.stack([as_dtype(blobs((130, 200), seed=s, n=60), dtype) for s in range(2)])
    tiles, frame, yx = pp.tile_frames(frames, size=64)
    # rows at y = 0, 64; columns at x = 0, 64, 128: 6 tiles per frame
    assert tiles.shape == (12, 1, 64, 64) and tiles.dtype == np.float32
    assert tiles.min() >= -1.0 and tiles.max() <= 1.0
    assert frame.tolist() == [0] * 6 + [1] * 6
    assert yx[:6].tolist() == [[0, 0], [0, 64], [0, 128], [64, 0], [64, 64], [64, 128]]
    np.testing.assert_allclose(tiles[4, 0], pp.to_unit(frames[0])[64:128, 64:128] * 2 - 1, atol=1e-6)
    assert len(pp.tile_frames(frames, size=64, stride=32)[0]) == 2 * 3 * 5  # y: 0,32,64; x: 0..128
    assert pp.tile_frames(frames, size=32, scale=0.5)[0].shape == (2 * 2 * 3, 1, 32, 32)  # 65×100 frames


def test_tiling_skips_empty_tiles():
    frame = np.zeros((64, 128), np.float32)
    frame[:, 64:] = blobs((64, 64), n=30)  # left half empty, right half structured
    tiles, _, yx = pp.tile_frames(frame, size=64, min_foreground=0.02)
    assert yx.tolist() == [[0, 64]]
    assert len(pp.tile_frames(frame, size=64, min_foreground=0.0)[0]) == 2
    # a constant frame has no foreground at all
    assert len(pp.tile_frames(np.full((64, 64), 0.5, np.float32), size=64, min_foreground=0.01)[0]) == 0


# ------------------------------------------------------------------------------------------ quality

def test_quality_flags_the_real_noise_crops(shared_data):
    tifffile = pytest.importorskip("tifffile")
    for folder in sorted((shared_data / "deep-events").iterdir()):
        if not (folder / "images.tif").is_file():
            continue
        frames = tifffile.imread(folder / "images.tif").astype(np.float32)
        report = pp.quality_report(Video(frames, str(folder)), min_snr=3.0)
        if folder.name in NOISE_CROPS:
            assert report["no_signal"] and len(report["flagged"]) == len(frames), (folder.name, report["snr"])
        else:
            assert report["flagged"] == [], (folder.name, report["snr"])


def test_quality_on_constant_and_clean_frames():
    report = pp.quality_report(np.stack([np.zeros((96, 96), np.uint8), as_dtype(blobs(), np.uint8)]))
    assert report["snr"][0] == 0.0 and report["flagged"] == [0]  # no signal, no crash
    assert report["snr"][1] > 10  # a clean image: noise floor at 1 % of its range


# ------------------------------------------------------------------------------------------ pipeline

def make_video(seed=0, t=4, shape=(128, 128), source=None) -> Video:
    rng = np.random.default_rng(seed)
    clean = 200 + 3000 * blobs(shape, seed, n=50)
    frames = np.stack([clean * np.exp(-0.05 * i) + rng.normal(0, 30, shape) for i in range(t)])
    return Video(np.clip(frames, 0, 65535).astype(np.uint16), source or f"sim_{seed}.tif")


def all_on(**flat) -> PreprocessConfig:
    base = {f"{s}.enabled": True for s in ("bleach", "drift", "normalize", "denoise", "laplace", "otsu")}
    return from_flat(PreprocessConfig, {**base, "tile.size": 32, **flat})


def test_config_round_trip_through_flat_keys():
    cfg = all_on(**{"denoise.h": 7.5, "otsu.mode": "mask", "tile.stride": 16, "normalize.per": "frame"})
    flat = to_flat(cfg)
    assert flat["denoise.h"] == 7.5 and flat["tile.stride"] == 16
    assert from_flat(PreprocessConfig, flat) == cfg
    ray_flat = pp.Pipeline(cfg).flat_config()
    assert ray_flat["preprocess.denoise.h"] == 7.5
    assert from_flat(PreprocessConfig, {k.removeprefix("preprocess."): v for k, v in ray_flat.items()}) == cfg


def test_pipeline_runs_all_steps_with_provenance():
    videos = [make_video(0), make_video(1, t=3)]
    ts = pp.Pipeline(all_on()).run(videos, progress=False, cache=False)
    assert ts.tiles.dtype == np.float32 and ts.tiles.shape[1:] == (1, 32, 32) and len(ts) > 0
    assert ts.tiles.min() >= -1 and ts.tiles.max() <= 1
    assert set(ts.source.tolist()) == {0, 1} and ts.frame.max() <= 3
    assert ts.meta["sources"] == ["sim_0.tif", "sim_1.tif"]
    assert ts.meta["steps"] == ["bleach", "drift", "normalize", "denoise", "laplace", "otsu", "tile"]
    assert ts.meta["config"]["preprocess.tile.size"] == 32
    assert [q["flagged"] for q in ts.meta["quality"]] == [[], []]
    assert ts.meta["intensity"][0]["mapping"] == "percentile" and len(ts.meta["intensity"][0]["range"]) == 2


def test_pipeline_drops_flagged_frames_and_reports_when_nothing_is_left():
    rng = np.random.default_rng(0)
    noise = Video(rng.normal(100, 5, (3, 64, 64)).astype(np.float32), "noise.tif")
    good = make_video(2, t=2, shape=(64, 64))
    ts = pp.Pipeline(all_on()).run([noise, good], progress=False, cache=False)
    assert set(ts.source.tolist()) == {1}  # every noise frame was dropped
    assert ts.meta["quality"][0]["flagged"] == [0, 1, 2]
    with pytest.raises(InputError, match=r"noise.tif: .*zero tiles .*3/3 frames flagged"):
        pp.Pipeline(all_on()).run([noise], progress=False, cache=False)


def test_trace_returns_each_enabled_step():
    video = make_video(0)
    trace = pp.Pipeline(all_on(**{"drift.enabled": False})).trace(video, frames=[0, 2])
    assert [name for name, _ in trace] == ["input", "bleach", "normalize", "denoise", "laplace", "otsu"]
    assert all(img.shape == (2, 128, 128) for _, img in trace)
    np.testing.assert_array_equal(trace[0][1], video.frames[[0, 2]].astype(np.float32))


def test_cache_hit_reuses_and_miss_recomputes(monkeypatch, tmp_path):
    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path))
    videos = [make_video(0)]
    first = pp.Pipeline(all_on())
    ts1 = first.run(videos, progress=False)
    path = first.last_cache_path
    assert path.parent == tmp_path / "tiles" and path.is_file() and first.stats["computed"] == 1
    mtime = os.stat(path).st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("recomputed despite a cache hit")

    second = pp.Pipeline(all_on())  # a fresh pipeline, as another process would have
    monkeypatch.setattr(second, "_compute", boom)
    ts2 = second.run(videos, progress=False)
    assert second.stats == {"computed": 0, "cache_hits": 1} and os.stat(path).st_mtime_ns == mtime
    np.testing.assert_array_equal(ts1.tiles, ts2.tiles)
    assert ts2.meta["cache_key"] == path.stem

    other = pp.Pipeline(all_on(**{"denoise.h": 5.0}))  # another config: another key, a recompute
    other.run(videos, progress=False)
    assert other.stats["computed"] == 1 and other.last_cache_path != path
    changed = [Video(videos[0].frames + np.uint16(1), videos[0].source)]  # other frames: another key
    assert pp.cache_key(changed, all_on()) != pp.cache_key(videos, all_on())


# ------------------------------------------------------------------------------------------ CLI

def write_stack(path, seed=0, t=3, shape=(96, 96)):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(path, make_video(seed, t=t, shape=shape).frames, photometric="minisblack")
    return path


def test_cli_preprocess_writes_all_outputs(tmp_path, capsys):
    import json

    import yaml

    from mitogan.cli import main
    from mitogan.tiles import load_tiles

    stack = write_stack(tmp_path / "stack.tif")
    config = tmp_path / "pp.yaml"
    config.write_text("preprocess:\n  denoise: {enabled: true, h: 8}\n  tile: {size: 32}\n")
    out, preview = tmp_path / "out", tmp_path / "preview.png"
    argv = ["preprocess", str(stack), "--config", str(config), "--set", "preprocess.laplace.enabled=true",
            "--set", "otsu.enabled=true", "--out", str(out), "--preview", str(preview)]
    assert main(argv) == 0
    ts = load_tiles(out / "tiles.npz")
    assert ts.size == 32 and len(ts) > 0 and ts.meta["sources"] == [str(stack)]
    resolved = yaml.safe_load((out / "config.yaml").read_text())["preprocess"]
    assert resolved["denoise"]["h"] == 8 and resolved["laplace"]["enabled"] and resolved["otsu"]["enabled"]
    quality = json.loads((out / "quality.json").read_text())
    assert quality["n_frames"] == 3 and quality["n_flagged"] == 0
    assert preview.stat().st_size > 1000 and preview.read_bytes()[:4] == b"\x89PNG"
    assert "tiles of 32×32 from 3 frames of 1 videos" in capsys.readouterr().out
    # the second run (into its own earlier output: --overwrite) is served from the cache
    assert main(argv + ["--overwrite"]) == 0 and "(from cache)" in capsys.readouterr().out


def test_cli_without_input_uses_the_simulated_dataset(tmp_path, monkeypatch, capsys):
    import mitogan.simulate
    from mitogan.cli import main

    folder = tmp_path / "sim"
    folder.mkdir()
    write_stack(folder / "video_000.tif", seed=4)
    monkeypatch.setattr(mitogan.simulate, "default_dataset", lambda *a, **k: folder)
    assert main(["preprocess", "--out", str(tmp_path / "out"), "--set", "tile.size=32"]) == 0
    assert "built-in simulated dataset" in capsys.readouterr().out
    assert (tmp_path / "out" / "preview.png").is_file()  # default preview location


def test_cli_bad_config_key_is_one_line_error(tmp_path, capsys):
    from mitogan.cli import main

    stack = write_stack(tmp_path / "stack.tif")
    assert main(["preprocess", str(stack), "--out", str(tmp_path / "o"), "--set", "denoise.strength=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mitogan: error: ") and "denoise.strength" in err and len(err.splitlines()) == 1
