"""Readers: every format/dtype/layout gives (T, H, W) frames; every bad input gives one clear InputError."""

from __future__ import annotations

import logging

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from mitogan.errors import ConfigError, InputError
from mitogan.frames import Video
from mitogan.io import SUPPORTED_SUFFIXES, read_file, read_inputs

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------ fixtures


def blobs(t=3, h=24, w=32, seed=0, hi=200):
    """(t, h, w) float64 smooth bright spots drifting slowly: neighbouring frames correlate strongly."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    centres = rng.uniform([0, 0], [h, w], size=(6, 2))
    frames = []
    for i in range(t):
        img = sum(np.exp(-((yy - cy - 0.3 * i) ** 2 + (xx - cx) ** 2) / 8.0) for cy, cx in centres)
        frames.append(10 + hi * img / img.max())
    return np.stack(frames)


def one(path, **kw) -> Video:
    videos = read_file(path, **kw)
    assert len(videos) == 1
    return videos[0]


def write_avi(path, frames_bgr, fps=5):
    h, w = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), isColor=True)
    assert writer.isOpened()
    for frame in frames_bgr:
        writer.write(frame)
    writer.release()


# -------------------------------------------------------------------------------------- TIFF dtypes


@pytest.mark.parametrize(
    "dtype, values, out_dtype",
    [
        (np.uint8, [0, 7, 255], np.uint8),
        (np.uint16, [0, 300, 65535], np.uint16),
        (np.float16, [75.0, 80.5, 1132.0], np.float32),  # widened
        (np.float32, [-1.5, 0.25, 3e5], np.float32),
        (np.float64, [-1.5, 0.25, 3e5], np.float32),  # narrowed: images do not need float64
        (np.int8, [0, 5, 127], np.uint8),  # non-negative: lossless to unsigned
        (np.int16, [0, 300, 32767], np.uint16),
        (np.int16, [-20, 0, 300], np.float32),  # negative values kept, as float
        (np.int32, [0, 1, 70000], np.float32),  # beyond uint16
        (np.uint32, [0, 1, 65535], np.uint16),
    ],
)
def test_tiff_dtypes_are_kept_or_converted_losslessly(tmp_path, dtype, values, out_dtype):
    stack = np.zeros((3, 8, 9), dtype)
    stack[:, 0, 0] = np.array(values, dtype)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack", metadata={"axes": "TYX"})
    video = one(tmp_path / "s.tif")
    assert video.frames.shape == (3, 8, 9)
    assert video.frames.dtype == out_dtype
    np.testing.assert_allclose(video.frames[:, 0, 0], np.array(values, dtype).astype(np.float64), rtol=1e-3)
    assert video.source == str(tmp_path / "s.tif")
    assert list(video.frame_index) == [0, 1, 2]
    if out_dtype != dtype:
        assert video.meta["converted_from"] == np.dtype(dtype).name


# ------------------------------------------------------------------------------------- TIFF layouts


def test_single_page_tiff_is_one_frame(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.arange(48, dtype=np.uint16).reshape(6, 8))
    video = one(tmp_path / "a.tif")
    assert video.frames.shape == (1, 6, 8)
    assert video.frames[0, 1, 0] == 8


def test_plain_multipage_tiff_without_metadata_is_time(tmp_path):
    stack = blobs(5).astype(np.uint16)
    with tifffile.TiffWriter(tmp_path / "p.tif") as tif:
        for frame in stack:
            tif.write(frame, metadata=None)  # no shape metadata at all: tifffile labels pages 'I'
    video = one(tmp_path / "p.tif")
    np.testing.assert_array_equal(video.frames, stack)


def test_channels_last_tiff_keeps_channel_0_by_default(tmp_path):
    # (T, H, W, C) with a small last axis, as in mitosplit v1, shaped metadata without axes
    arr = np.stack([np.full((2, 24, 32), 10, np.uint8), np.full((2, 24, 32), 99, np.uint8)], axis=-1)
    tifffile.imwrite(tmp_path / "cl.tif", arr)
    video = one(tmp_path / "cl.tif")
    assert video.frames.shape == (2, 24, 32)
    assert np.all(video.frames == 10)
    assert video.meta["channel"] == 0 and video.meta["n_channels"] == 2
    assert "channel 0 of 2" in video.meta["channel_note"]
    assert np.all(one(tmp_path / "cl.tif", channel=1).frames == 99)


def test_channels_first_two_stains_are_read_as_channels(tmp_path):
    # Two uncorrelated stains with different intensity distributions (like mitosplit v2)
    stain_a = blobs(1, seed=1, hi=200)[0]
    stain_b = 40 + 0.2 * blobs(1, seed=7, hi=100)[0]
    tifffile.imwrite(tmp_path / "cf.tif", np.stack([stain_a, stain_b]).astype(np.uint8), photometric="minisblack")
    video = one(tmp_path / "cf.tif")
    assert video.frames.shape == (1, 24, 32)
    np.testing.assert_array_equal(video.frames[0], stain_a.astype(np.uint8))
    assert "read as channels" in video.meta["axes_note"]
    np.testing.assert_array_equal(one(tmp_path / "cf.tif", channel=1).frames[0], stain_b.astype(np.uint8))


def test_short_correlated_stack_stays_time(tmp_path):
    # 3 frames of one drifting scene: correlated, so frames (not channels)
    tifffile.imwrite(tmp_path / "t.tif", blobs(3).astype(np.uint16), photometric="minisblack")
    video = one(tmp_path / "t.tif")
    assert video.frames.shape == (3, 24, 32)
    assert "read as frames" in video.meta["axes_note"]


def test_tifffile_planar_rgb_guess_is_not_trusted(tmp_path):
    # tifffile writes a (3, H, W) uint8 stack as planar RGB by default; three frames of a time-lapse stay frames
    stack = blobs(3).astype(np.uint8)
    with pytest.warns(DeprecationWarning):
        tifffile.imwrite(tmp_path / "s.tif", stack)
    np.testing.assert_array_equal(one(tmp_path / "s.tif").frames, stack)


def test_short_pure_noise_stack_stays_time(tmp_path):
    # Uncorrelated frames with one intensity distribution (a no-signal crop) are frames, not channels
    noise = RNG.poisson(80, size=(3, 32, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "n.tif", noise, photometric="minisblack")
    assert one(tmp_path / "n.tif").frames.shape == (3, 32, 32)


def test_unlabelled_four_axes(tmp_path):
    # (T, C, H, W) with a small second axis is inferred; anything else 4-D without labels is refused
    arr = np.zeros((3, 2, 24, 32), np.uint16)
    arr[:, 1] = 9
    tifffile.imwrite(tmp_path / "tc.tif", arr, photometric="minisblack")
    video = one(tmp_path / "tc.tif", channel=1)
    assert video.frames.shape == (3, 24, 32) and np.all(video.frames == 9) and video.meta["axes"] == "TCYX"
    tifffile.imwrite(tmp_path / "q.tif", np.zeros((5, 6, 24, 32), np.uint16), photometric="minisblack")
    with pytest.raises(InputError, match=r"cannot tell which axes of shape \(5, 6, 24, 32\).*ImageJ or OME"):
        read_file(tmp_path / "q.tif")


def test_imagej_hyperstack_channel_and_z(tmp_path):
    # TZCYX: 2 times, 3 z planes, 2 channels; plane value encodes (t, z, c)
    t, zn, c = np.meshgrid(np.arange(2), np.arange(3), np.arange(2), indexing="ij")
    code = (100 * t + 10 * zn + c).astype(np.uint16)
    arr = np.broadcast_to(code[..., None, None], (2, 3, 2, 6, 7)).copy()
    tifffile.imwrite(tmp_path / "h.tif", arr, imagej=True, metadata={"axes": "TZCYX"})
    video = one(tmp_path / "h.tif")
    assert video.frames.shape == (2, 6, 7)
    assert list(video.frames[:, 0, 0]) == [20, 120]  # channel 0, max over z
    assert video.meta["axes_source"] == "imagej" and video.meta["n_z"] == 3
    assert list(one(tmp_path / "h.tif", channel=1, z=1).frames[:, 0, 0]) == [11, 111]
    mean = one(tmp_path / "h.tif", z="mean")
    assert mean.frames.dtype == np.float32
    np.testing.assert_allclose(mean.frames[:, 0, 0], [10, 110])
    assert list(one(tmp_path / "h.tif", z="2").frames[:, 0, 0]) == [20, 120]  # CLI strings accepted


def test_imagej_plain_stack_is_time_not_z(tmp_path):
    # ImageJ labels every unlabelled stack "slices"; without the hyperstack flag it is a time series
    tifffile.imwrite(tmp_path / "ij.tif", blobs(4).astype(np.uint16), imagej=True, metadata={"axes": "ZYX"})
    with tifffile.TiffFile(tmp_path / "ij.tif", mode="r+b") as tif:
        desc = tif.pages[0].description.replace("hyperstack=true\n", "")
        tif.pages[0].tags["ImageDescription"].overwrite(desc)
    video = one(tmp_path / "ij.tif")
    assert video.frames.shape == (4, 24, 32)
    assert "plain stack" in video.meta["axes_source"]


def test_ome_tiff_axes_are_used(tmp_path):
    arr = np.zeros((2, 3, 4, 6, 7), np.uint16)  # T C Z Y X
    arr[:, 1, 2] = 500
    arr[:, 0, 1] = 7
    tifffile.imwrite(tmp_path / "a.ome.tif", arr, ome=True, metadata={"axes": "TCZYX"})
    video = one(tmp_path / "a.ome.tif")
    assert video.meta["axes_source"] == "ome"
    assert video.frames.shape == (2, 6, 7)
    assert np.all(video.frames == 7)  # channel 0, max over z
    assert np.all(one(tmp_path / "a.ome.tif", channel=1, z=2).frames == 500)


def test_rgb_tiff_grey_content_collapses(tmp_path):
    grey = blobs(1)[0].astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([grey] * 3, -1), photometric="rgb")
    video = one(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(video.frames[0], grey)
    assert video.meta["colour"].startswith("grey")


def test_channel_and_z_out_of_range_name_the_count(tmp_path):
    tifffile.imwrite(tmp_path / "h.tif", np.zeros((3, 2, 6, 7), np.uint8), imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(InputError, match=r"h\.tif: channel 5 requested but the file has 2 channels"):
        read_file(tmp_path / "h.tif", channel=5)
    with pytest.raises(InputError, match=r"z plane 3 requested but the file has 3 z planes"):
        read_file(tmp_path / "h.tif", z=3)
    tifffile.imwrite(tmp_path / "g.tif", np.zeros((2, 6, 7), np.uint8))
    with pytest.raises(InputError, match=r"channel 1 requested but the file has 1 channel"):
        read_file(tmp_path / "g.tif", channel=1)
    assert one(tmp_path / "g.tif", channel=0).frames.shape == (2, 6, 7)  # grey is channel 0


@pytest.mark.parametrize("kw, match", [({"z": "median"}, "z: must be"), ({"z": -1}, "z: a plane index"),
                                       ({"channel": -1}, "channel: must be >= 0"),
                                       ({"channel": "red"}, "channel: must be a channel index")])
def test_bad_options_are_config_errors(tmp_path, kw, match):
    tifffile.imwrite(tmp_path / "g.tif", np.zeros((2, 6, 7), np.uint8))
    with pytest.raises(ConfigError, match=match):
        read_file(tmp_path / "g.tif", **kw)


# -------------------------------------------------------------------------------------------- GIF


def test_gif_rgb_grey_collapses_exactly(tmp_path):
    grey = blobs(4).astype(np.uint8)  # (4, 24, 32)
    iio.imwrite(tmp_path / "g.gif", np.repeat(grey[..., None], 3, -1), loop=0)
    video = one(tmp_path / "g.gif")
    assert video.frames.shape == (4, 24, 32) and video.frames.dtype == np.uint8
    assert video.meta["original_shape"] == (4, 24, 32, 3)
    assert video.meta["colour"].startswith("grey")
    # GIF palettes quantise to at most 256 grey levels: 8-bit grey survives exactly
    np.testing.assert_array_equal(video.frames, grey)


def test_gif_grey_with_small_coloured_overlay_stays_grey(tmp_path):
    # a red play icon burned into the corner (as in the ats GIFs) must not turn the video to luminance
    grey = np.repeat(blobs(2).astype(np.uint8)[..., None], 3, -1)
    grey[:, :4, :4] = [255, 0, 0]
    iio.imwrite(tmp_path / "icon.gif", grey)
    video = one(tmp_path / "icon.gif")
    assert video.meta["colour"].startswith("grey")
    np.testing.assert_array_equal(video.frames[:, 10:, 10:], grey[:, 10:, 10:, 1])


def test_gif_coloured_becomes_luminance(tmp_path):
    rgb = np.zeros((2, 8, 10, 3), np.uint8)
    rgb[:, :, :5] = [200, 0, 0]  # red half
    rgb[:, :, 5:] = [0, 200, 0]  # green half
    iio.imwrite(tmp_path / "c.gif", rgb)
    video = one(tmp_path / "c.gif")
    assert video.meta["colour"].startswith("luminance")
    assert abs(int(video.frames[0, 0, 0]) - round(0.299 * 200)) <= 2
    assert abs(int(video.frames[0, 0, 9]) - round(0.587 * 200)) <= 2
    assert abs(int(one(tmp_path / "c.gif", channel=1).frames[0, 0, 9]) - 200) <= 2  # explicit component


# ------------------------------------------------------------------------------------------ video


def test_mjpg_avi_reads_as_grey(tmp_path):
    levels = [30, 90, 150, 210]
    write_avi(tmp_path / "v.avi", [np.full((24, 32, 3), v, np.uint8) for v in levels])
    video = one(tmp_path / "v.avi")
    assert video.frames.shape == (4, 24, 32) and video.frames.dtype == np.uint8
    np.testing.assert_allclose(video.frames.mean(axis=(1, 2)), levels, atol=3)  # MJPG is lossy
    assert video.meta["fps"] == pytest.approx(5.0)


def test_coloured_video_becomes_luminance(tmp_path):
    write_avi(tmp_path / "c.avi", [np.full((16, 16, 3), (0, 0, 200), np.uint8)] * 2)  # BGR: pure red
    video = one(tmp_path / "c.avi")
    assert video.meta["colour"].startswith("luminance")
    assert abs(float(video.frames.mean()) - 0.299 * 200) < 6


# ------------------------------------------------------------------------------------------ stills


@pytest.mark.parametrize("suffix, arr, out_dtype", [
    (".png", np.arange(64, dtype=np.uint8).reshape(8, 8) * 3, np.uint8),
    (".png", np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000, np.uint16),
    (".png", np.repeat((np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)[..., None], 3, -1), np.uint8),
    (".bmp", np.arange(64, dtype=np.uint8).reshape(8, 8) * 3, np.uint8),
])
def test_lossless_stills(tmp_path, suffix, arr, out_dtype):
    iio.imwrite(tmp_path / f"s{suffix}", arr)
    video = one(tmp_path / f"s{suffix}")
    assert video.frames.shape == (1, 8, 8) and video.frames.dtype == out_dtype
    np.testing.assert_array_equal(video.frames[0], arr if arr.ndim == 2 else arr[..., 0])


def test_png_with_alpha_and_jpeg(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 120
    rgba[..., 3] = 255
    iio.imwrite(tmp_path / "a.png", rgba)
    assert np.all(one(tmp_path / "a.png").frames == 120)
    iio.imwrite(tmp_path / "b.jpg", np.full((16, 16), 100, np.uint8))
    assert abs(float(one(tmp_path / "b.jpg").frames.mean()) - 100) < 2


# -------------------------------------------------------------------------------------- bad input


def _write_bad(tmp_path, case):
    """Create the bad file for ``case``; returns its path."""
    if case == "empty":
        (p := tmp_path / "e.tif").write_bytes(b"")
    elif case == "text":
        (p := tmp_path / "t.tif").write_text("this is not an image\n")
    elif case == "truncated":
        tifffile.imwrite(p := tmp_path / "tr.tif", RNG.integers(0, 255, (5, 64, 64), dtype=np.uint8))
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif case == "zero_frames":
        with pytest.warns(UserWarning):
            tifffile.imwrite(p := tmp_path / "z.tif", np.zeros((0, 8, 8), np.uint8))
    elif case == "one_pixel":
        tifffile.imwrite(p := tmp_path / "px.tif", np.zeros((8, 1), np.uint8))
    elif case == "bool":
        tifffile.imwrite(p := tmp_path / "b.tif", np.zeros((8, 8), bool))
    elif case == "complex":
        tifffile.imwrite(p := tmp_path / "c.tif", np.zeros((8, 8), np.complex64))
    elif case == "nan":
        tifffile.imwrite(p := tmp_path / "n.tif", np.full((8, 8), np.nan, np.float32))
    elif case == "suffix":
        (p := tmp_path / "notes.xyz").write_text("x")
    elif case == "missing":
        p = tmp_path / "nope.tif"
    elif case == "text_gif":
        (p := tmp_path / "t.gif").write_text("GIF? no\n")
    elif case == "text_png":
        (p := tmp_path / "t.png").write_text("PNG? no\n")
    elif case == "text_avi":
        (p := tmp_path / "t.avi").write_text("AVI? no\n")
    elif case == "empty_video":
        cv2.VideoWriter(str(p := tmp_path / "e.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (8, 8)).release()
    return p


BAD_CASES = {
    "empty": r"file is empty \(0 bytes\)",
    "text": "not a readable TIFF image",
    "truncated": "TIFF is truncated or corrupt",
    "zero_frames": "contains zero frames",
    "one_pixel": "frames are 8x1 pixels; need at least 2x2",
    "bool": "unsupported dtype bool",
    "complex": "unsupported dtype complex64",
    "nan": "contains NaN or infinite values",
    "suffix": r"unsupported file type '\.xyz'",
    "missing": "no such file or folder",
    "text_gif": "not a readable GIF image",
    "text_png": "not a readable PNG image",
    "text_avi": "not a readable video",
    "empty_video": "video contains zero frames|not a readable video",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_gives_one_clear_line(tmp_path, case):
    path = _write_bad(tmp_path, case)
    with pytest.raises(InputError, match=BAD_CASES[case]) as info:
        read_file(path)
    message = str(info.value)
    assert message.startswith(str(path) + ": ")  # names the file
    assert "\n" not in message and len(message) < 400
    assert info.value.path == str(path)


# ---------------------------------------------------------------------------------------- folders


def _folder(tmp_path):
    root = tmp_path / "data"
    (root / "b" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    tifffile.imwrite(root / "a.tif", np.zeros((2, 8, 8), np.uint8))
    tifffile.imwrite(root / "b" / "deeper" / "c.tif", np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    tifffile.imwrite(root / ".hidden" / "x.tif", np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    (root / "README.md").write_text("# notes")
    (root / "LICENSE").write_text("MIT")
    (root / "b" / "event_db.yaml").write_text("a: 1")
    for i in (10, 2, 1):  # natural order must be 1, 2, 10
        iio.imwrite(root / "b" / f"frame{i}.png", np.full((6, 6), i, np.uint8))
    return root


def test_folder_recursive_sorted_grouped(tmp_path):
    root = _folder(tmp_path)
    skipped = []
    videos = read_inputs([root], on_skip=lambda p, m: skipped.append(p))
    assert skipped == []  # README/LICENSE/yaml/hidden are ignored, not reported
    sources = [v.source for v in videos]
    assert sources == [str(root / "a.tif"), str(root / "b" / "deeper" / "c.tif"), str(root / "b")]
    frames = videos[2]
    assert frames.frames.shape == (3, 6, 6)  # the PNG frames of one folder become one video
    assert list(frames.frames[:, 0, 0]) == [1, 2, 10]
    assert frames.meta["files"] == [str(root / "b" / f"frame{i}.png") for i in (1, 2, 10)]


def test_stills_of_different_shapes_are_not_grouped(tmp_path):
    iio.imwrite(tmp_path / "a.png", np.zeros((6, 6), np.uint8))
    iio.imwrite(tmp_path / "b.png", np.zeros((6, 8), np.uint8))
    videos = read_inputs(tmp_path)
    assert [v.frames.shape for v in videos] == [(1, 6, 6), (1, 6, 8)]


def test_bad_file_in_folder_is_reported_and_skipped(tmp_path, caplog):
    root = _folder(tmp_path)
    (root / "b" / "broken.tif").write_text("not a tiff")
    skipped = []
    with caplog.at_level(logging.WARNING, logger="mitogan.io"):
        videos = read_inputs([root], on_skip=lambda p, m: skipped.append((p, m)))
    assert len(videos) == 3
    assert skipped == [(str(root / "b" / "broken.tif"), skipped[0][1])]
    assert "not a readable TIFF image" in skipped[0][1]
    assert "broken.tif" in caplog.text
    with pytest.raises(InputError, match=r"broken\.tif: not a readable TIFF"):
        read_inputs([root], strict=True)


def test_nothing_readable_names_the_inputs(tmp_path):
    (tmp_path / "x.tif").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match=r"no readable images found \(1 unreadable file\(s\) skipped") as info:
        read_inputs([tmp_path])
    assert str(tmp_path) in str(info.value)
    (tmp_path / "x.tif").unlink()
    with pytest.raises(InputError, match="no supported files"):
        read_inputs(str(tmp_path))


def test_named_files_raise_and_are_read_once(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 8, 8), np.uint8))
    assert len(read_inputs([tmp_path / "a.tif", tmp_path, str(tmp_path / "a.tif")])) == 1
    with pytest.raises(InputError, match="no such file or folder"):
        read_inputs([tmp_path / "a.tif", tmp_path / "missing.tif"])
    with pytest.raises(InputError, match="file is empty"):
        (tmp_path / "e.tif").write_bytes(b"")
        read_inputs([tmp_path / "e.tif"])  # a file named explicitly raises even without strict


def test_supported_suffixes_cover_the_formats():
    assert {".tif", ".tiff", ".gif", ".avi", ".mp4", ".png", ".jpg", ".jpeg"} <= set(SUPPORTED_SUFFIXES)
    assert all(s.startswith(".") and s == s.lower() for s in SUPPORTED_SUFFIXES)


# -------------------------------------------------------------------------------------- real data


def test_all_shared_data_loads(shared_data):
    skipped = []
    videos = read_inputs([shared_data], on_skip=lambda p, m: skipped.append((p, m)))
    assert skipped == []
    by_name = {v.source.replace(str(shared_data) + "/", ""): v for v in videos}
    assert len(by_name) == 6 + 9 + 2
    for v in videos:
        assert v.frames.ndim == 3 and v.frames.dtype in (np.uint8, np.uint16, np.float32)
    # mitosplit: both channel orders give the mitochondria channel (0), one 128x128 frame
    for name in ("mitosplit/sample_input_v1.tif", "mitosplit/sample_input_v2.tif"):
        v = by_name[name]
        assert v.frames.shape == (1, 128, 128) and v.meta["channel"] == 0 and v.meta["n_channels"] == 2
    np.testing.assert_array_equal(
        by_name["mitosplit/sample_input_v2.tif"].frames[0],
        tifffile.imread(shared_data / "mitosplit/sample_input_v2.tif")[0])
    # deep-events: float16 camera counts widened to float32 with the ~75 offset intact
    deep = [v for n, v in by_name.items() if n.startswith("deep-events/")]
    assert sum(v.n_frames for v in deep) == 64
    for v in deep:
        assert v.frames.dtype == np.float32 and v.frames.shape[1:] == (256, 256)
        assert 70 <= float(v.frames.min()) and float(v.frames.max()) >= 140
    # ats: RGB GIFs with grey content collapse to one channel
    ats = [v for n, v in by_name.items() if n.startswith("ats/")]
    assert sum(v.n_frames for v in ats) == 308
    assert all(v.meta["colour"].startswith("grey") and v.frames.dtype == np.uint8 for v in ats)
    assert by_name["ats/bigframe_mito_slow_only_nopeak.gif"].frames.shape == (24, 273, 273)


def test_shared_mitosplit_second_channel(shared_data):
    v1 = one(shared_data / "mitosplit/sample_input_v1.tif", channel=1)
    raw = tifffile.imread(shared_data / "mitosplit/sample_input_v1.tif")  # (1, 128, 128, 2)
    np.testing.assert_array_equal(v1.frames, raw[..., 1])
    with pytest.raises(InputError, match="has 2 channels"):
        read_file(shared_data / "mitosplit/sample_input_v2.tif", channel=2)


# ------------------------------------------------------------------------ nothing dropped without a word


def _truncated_avi(path, n=60):
    rng = np.random.default_rng(0)
    write_avi(path, [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(n)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 45 // 100])  # a copy cut short


def test_truncated_video_keeps_its_frames_with_a_warning_and_fails_under_strict(tmp_path, caplog):
    _truncated_avi(tmp_path / "t.avi")
    with caplog.at_level(logging.WARNING, logger="mitogan.io"):
        video, = read_inputs([tmp_path / "t.avi"])
    assert 0 < video.n_frames < 60 and "of the 60 frames its header announces" in video.meta["frames_note"]
    assert "t.avi" in caplog.text and "60 frames" in caplog.text
    with pytest.raises(InputError, match=r"t\.avi: decoded \d+ of the 60 frames"):
        read_inputs([tmp_path], strict=True)


def test_complete_video_has_no_frames_note(tmp_path):
    write_avi(tmp_path / "v.avi", [np.full((24, 32, 3), v, np.uint8) for v in (30, 90)])
    assert "frames_note" not in one(tmp_path / "v.avi").meta


def test_links_dangling_and_looping_are_reported_and_fail_under_strict(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    tifffile.imwrite(root / "sub" / "a.tif", np.zeros((2, 8, 8), np.uint8))
    (root / "gone.tif").symlink_to(tmp_path / "nowhere.tif")
    (root / "sub" / "loop").symlink_to(root)  # data/sub/loop -> data
    (root / "alias").symlink_to(root / "sub")  # a link to a folder is followed (not a loop)
    skipped = []
    videos = read_inputs([root], on_skip=lambda p, m: skipped.append((p, m)))
    assert [v.source for v in videos] == [str(root / "alias" / "a.tif")]  # one file, reached twice, read once
    problems = dict(skipped)
    assert "dangling symbolic link" in problems[str(root / "gone.tif")]
    assert "symbolic link loop" in problems[str(root / "sub" / "loop")]
    with pytest.raises(InputError, match="dangling symbolic link|symbolic link loop"):
        read_inputs([root], strict=True)
    with pytest.raises(InputError, match=r"gone\.tif: dangling symbolic link"):
        read_inputs([root / "gone.tif"])


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root can list a folder without permissions")
def test_unlistable_subfolder_is_reported_and_fails_under_strict(tmp_path):
    import os

    root = tmp_path / "data"
    (root / "locked").mkdir(parents=True)
    tifffile.imwrite(root / "a.tif", np.zeros((2, 8, 8), np.uint8))
    tifffile.imwrite(root / "locked" / "b.tif", np.zeros((2, 8, 8), np.uint8))
    os.chmod(root / "locked", 0)
    try:
        skipped = []
        assert len(read_inputs([root], on_skip=lambda p, m: skipped.append((p, m)))) == 1
        assert skipped[0][0] == str(root / "locked") and "cannot list this folder" in skipped[0][1]
        with pytest.raises(InputError, match="cannot list this folder"):
            read_inputs([root], strict=True)
    finally:
        os.chmod(root / "locked", 0o755)


# ----------------------------------------------------------------------------------------- physical scale
def test_physical_scale_from_ome_imagej_plain_tiff_and_the_simulator(tmp_path):
    from mitogan.io import common_scale, physical_scale
    from mitogan.simulate import PIXEL_SIZE_UM, SimParams, save_video, simulate_video

    frames = np.zeros((3, 16, 16), np.uint16)
    tifffile.imwrite(tmp_path / "ome.ome.tif", frames, ome=True, metadata={
        "axes": "TYX", "PhysicalSizeX": 80, "PhysicalSizeXUnit": "nm", "TimeIncrement": 500, "TimeIncrementUnit": "ms"})
    tifffile.imwrite(tmp_path / "ij.tif", frames, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"unit": "um", "axes": "TYX", "finterval": 2.5})
    tifffile.imwrite(tmp_path / "inch.tif", frames, photometric="minisblack", resolution=(72, 72))  # screen dpi
    assert physical_scale(tmp_path / "ome.ome.tif") == pytest.approx({"pixel_size_um": 0.08, "frame_interval_s": 0.5})
    assert physical_scale(tmp_path / "ij.tif") == pytest.approx({"pixel_size_um": 0.2, "frame_interval_s": 2.5})
    assert physical_scale(tmp_path / "inch.tif") == {"pixel_size_um": None, "frame_interval_s": None}
    # the simulator writes its own scale into every TIFF it saves, even alone in a folder
    f, truth = simulate_video(SimParams(size=32, frames=2), 0)
    alone = save_video(f, truth, tmp_path / "alone" / "v.tif")
    assert physical_scale(alone)["pixel_size_um"] == pytest.approx(PIXEL_SIZE_UM)
    assert read_file(alone)[0].meta["pixel_size_um"] == pytest.approx(PIXEL_SIZE_UM)
    # sources that disagree have no one pixel size
    assert common_scale([tmp_path / "ij.tif", tmp_path / "ome.ome.tif"])["pixel_size_um"] is None
    assert common_scale([tmp_path / "ij.tif", tmp_path / "ij.tif"])["frame_interval_s"] == pytest.approx(2.5)
