"""Property-based tests (hypothesis) of the readers and the config parser on generated input.

The property each time: the result honours its contract, or the input is refused with one line (InputError /
ConfigError) — never another exception, never a silently wrong value.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mitogan.config import INT_LIMIT, Config, apply_overrides, from_flat, to_flat
from mitogan.errors import ConfigError, InputError
from mitogan.io import SUPPORTED_SUFFIXES, read_file, read_inputs

SETTINGS = settings(max_examples=60, deadline=None, database=None, derandomize=True,  # the same cases on every CI run
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check_videos(videos) -> None:
    """The readers' contract: (T, H, W) frames, T >= 1, H, W >= 2, uint8/uint16/finite float32."""
    assert videos
    for v in videos:
        assert v.frames.ndim == 3 and v.frames.shape[0] >= 1 and min(v.frames.shape[1:]) >= 2
        assert v.frames.dtype in (np.uint8, np.uint16, np.float32)
        if v.frames.dtype == np.float32:
            assert np.isfinite(v.frames).all()
        assert v.frame_index.shape == (v.n_frames,)


def _one_line(err: Exception) -> None:
    assert str(err) and "\n" not in str(err).strip(), repr(str(err))


# ---------------------------------------------------------------------------------------------- readers


@SETTINGS
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(SUPPORTED_SUFFIXES),
       header=st.sampled_from([b"", b"II*\x00", b"MM\x00*", b"GIF89a", b"\x89PNG\r\n\x1a\n", b"RIFF", b"\xff\xd8\xff"]))
def test_any_bytes_are_read_or_refused_in_one_line(data, suffix, header):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x{suffix}"
        path.write_bytes(header + data)
        try:
            videos = read_file(path)
        except InputError as e:
            _one_line(e)
            assert str(path) in str(e)
        else:
            _check_videos(videos)


_DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, np.float16, np.bool_])


@SETTINGS
@given(arr=hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=9)))
def test_any_tiff_array_is_read_faithfully_or_refused(arr):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "a.tif"
        tifffile.imwrite(path, arr, photometric="minisblack")
        try:
            videos = read_file(path)
        except InputError as e:
            _one_line(e)
            return
        _check_videos(videos)
        v = videos[0]
        assert v.frames.size <= arr.size  # a channel or z plane may be chosen, nothing is invented
        if arr.ndim == 2 and arr.dtype in (np.uint8, np.uint16, np.float32):
            assert np.array_equal(v.frames[0], arr)  # one plain frame comes back unchanged


@SETTINGS
@given(names=st.lists(st.tuples(st.sampled_from(["a", "b/c", "b/.h", "d/e/f", "g"]),
                                st.sampled_from([".tif", ".png", ".txt", ".avi"]),
                                st.sampled_from(["good", "empty", "junk"])), min_size=1, max_size=6, unique=True),
       strict=st.booleans())
def test_folders_read_every_good_file_and_report_every_bad_one(names, strict):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "data"
        expected_good, expected_bad = set(), set()
        for i, (sub, suffix, kind) in enumerate(names):
            path = root / sub / f"f{i}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            if kind == "good" and suffix == ".tif":
                tifffile.imwrite(path, np.full((2, 4, 4), i, np.uint16))
            elif kind == "good" and suffix == ".png":
                import imageio.v3 as iio

                iio.imwrite(path, np.full((4, 5 + i, 1), i, np.uint8)[..., 0])  # shapes differ: never grouped
            else:
                path.write_bytes(b"" if kind == "empty" else b"junk" * 10)
            if hidden or suffix == ".txt":
                continue  # ignored by design
            (expected_good if kind == "good" and suffix != ".avi" else expected_bad).add(str(path))
        skipped = []
        try:
            videos = read_inputs([root], strict=strict, on_skip=lambda p, m: skipped.append(p))
        except InputError as e:
            _one_line(e)
            assert (strict and expected_bad) or not expected_good
            return
        assert not (strict and expected_bad)
        assert {v.source for v in videos} == expected_good and set(skipped) == expected_bad


# ----------------------------------------------------------------------------------------- config parser

FLAT = to_flat(Config())
_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.integers(min_value=-(10**40), max_value=10**40).map(str),
                    st.sampled_from(["true", "false", "null", "nan", "inf", "-inf", "1e23", "1e-400", "", "[1, 2]",
                                     "{a: 1}", "dcgan", "wgan_gp", "0x10", "1_000"]),
                    st.text(max_size=12))


@SETTINGS
@given(items=st.lists(st.tuples(st.one_of(st.sampled_from(sorted(FLAT)), st.text(max_size=15)), _VALUES),
                      min_size=1, max_size=4))
@example(items=[("0\n0", "")])  # found by hypothesis in CI: a key with a line break echoed in the message
def test_overrides_give_a_valid_config_or_one_line(items):
    try:
        cfg = apply_overrides(Config(), [f"{k}={v}" for k, v in items])
    except ConfigError as e:
        _one_line(e)
        return
    flat = to_flat(cfg)
    for key, value in flat.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
        if isinstance(value, int) and not isinstance(value, bool):
            assert abs(value) <= INT_LIMIT, key
    assert from_flat(Config, flat) == cfg  # what was accepted round-trips


@SETTINGS
@given(key=st.sampled_from(sorted(k for k, v in FLAT.items() if isinstance(v, float))),
       value=st.floats(allow_nan=True, allow_infinity=True))
def test_a_float_field_takes_a_value_exactly_when_it_is_finite_and_in_range(key, value):
    try:
        cfg = from_flat(Config, {key: value})
    except ConfigError as e:
        _one_line(e)
        assert key.rsplit(".", 1)[0] in str(e)  # the field, or its section for a cross-field rule (low < high)
        return
    assert math.isfinite(value) and to_flat(cfg)[key] == value


def test_json_safe_writes_no_non_finite_numbers():
    import json

    from mitogan.fsutil import json_safe

    data = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": np.float32("nan"), "e": 2.5}
    text = json.dumps(json_safe(data), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [1.0, None, {"c": None}], "d": None, "e": 2.5}


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e23", str(10**30)])
def test_seed_and_rate_overrides_that_used_to_pass_are_refused(text):
    for key in ("train.seed", "optim.lr_g", "preprocess.tile.scale"):
        with pytest.raises(ConfigError, match=key):
            apply_overrides(Config(), [f"{key}={text}"])
