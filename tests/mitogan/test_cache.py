"""MitoGAN's caches (fsutil.cached_file / cached_dir): computed once per node under concurrency, damaged
entries detected, warned about and recomputed (never used), one cache root.

Real files and real processes throughout: the concurrency test starts separate Python processes that
preprocess the same data at the same moment and counts the computations each of them really ran.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mitogan import preprocess as pp
from mitogan.fsutil import CHECKSUM_SUFFIX, cache_root, cached_file
from mitogan.metrics.reference import Reference
from mitogan.simulate import default_dataset
from tests.mitogan.test_preprocess import all_on, make_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(root))
    return root


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _flip_byte(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------ concurrency

CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import numpy as np
    from mitogan.frames import Video
    from mitogan.preprocess import Pipeline
    from tests.mitogan.test_preprocess import all_on

    work, me = Path(sys.argv[1]), sys.argv[2]
    video = Video(np.load(work / "video.npy"), "shared.tif")
    pipeline = Pipeline(all_on())
    (work / f"ready-{me}").touch()
    while not (work / "go").exists():  # a barrier: every process asks for the tiles at the same moment
        time.sleep(0.002)
    ts = pipeline.run([video], progress=False)
    print(json.dumps({**pipeline.stats, "n": len(ts), "sum": float(ts.tiles.astype(np.float64).sum())}))
""")


@pytest.mark.parametrize("entry", ["absent", "damaged"])
def test_concurrent_processes_compute_the_tiles_once(cache, tmp_path, entry):
    # 4 processes preprocess the same video with the same config at once: exactly one computes, the
    # other three wait on the lock and load what it published (without the lock all four compute).
    # A damaged entry is likewise healed once, with one warning, and used by nobody.
    n = 4
    video = make_video(3, t=6, shape=(192, 192))
    np.save(tmp_path / "video.npy", video.frames)
    if entry == "damaged":
        from mitogan.frames import Video

        first = pp.Pipeline(all_on())
        first.run([Video(video.frames, "shared.tif")], progress=False)
        _flip_byte(first.last_cache_path)
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(i)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < n and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    (tmp_path / "go").touch()
    results, warned = [], 0
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
        warned += err.count("is damaged")
    assert warned == (entry == "damaged")
    assert sum(r["computed"] for r in results) == 1  # computed once on this node ...
    assert sum(r["cache_hits"] for r in results) == n - 1  # ... and loaded by the others
    assert len({(r["n"], r["sum"]) for r in results}) == 1  # all got the same tiles
    entries = list((cache / "tiles").iterdir())
    assert sorted(p.suffix for p in entries) == [".lock", ".npz", CHECKSUM_SUFFIX]  # no temporary left over


# ------------------------------------------------------------------------------------------ healing

@pytest.mark.parametrize("damage", ["flip", "truncate", "no checksum", "empty"])
def test_damaged_tiles_entry_is_warned_about_recomputed_and_healed(cache, caplog, damage):
    videos = [make_video(0)]
    first = pp.Pipeline(all_on())
    good = first.run(videos, progress=False)
    path = first.last_cache_path
    if damage == "flip":  # one flipped byte inside the tile data: np.load itself would not notice
        _flip_byte(path)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "no checksum":  # e.g. a crash between publishing the entry and its checksum
        path.with_name(path.name + CHECKSUM_SUFFIX).unlink()
    else:
        path.write_bytes(b"")
    caplog.set_level(logging.WARNING)
    again = pp.Pipeline(all_on())
    healed = again.run(videos, progress=False)
    assert again.stats == {"computed": 1, "cache_hits": 0}  # recomputed, the damaged entry not used
    np.testing.assert_array_equal(healed.tiles, good.tiles)
    (msg,) = _warnings(caplog)
    assert str(path) in msg and "damaged" in msg and "\n" not in msg  # one line naming the file
    caplog.clear()
    third = pp.Pipeline(all_on())  # the next run uses the healed entry, silently
    np.testing.assert_array_equal(third.run(videos, progress=False).tiles, good.tiles)
    assert third.stats == {"computed": 0, "cache_hits": 1} and not _warnings(caplog)


def test_no_cache_neither_reads_nor_writes_the_cache(cache):
    # --no-cache (Pipeline.run(cache=False)) recomputes and leaves the cache as it is; a damaged entry
    # needs no flag: the next cached run heals it (test above).
    videos = [make_video(0)]
    pp.Pipeline(all_on()).run(videos, progress=False)
    path = next((cache / "tiles").glob("*.npz"))
    _flip_byte(path)
    before = path.read_bytes()
    p = pp.Pipeline(all_on())
    p.run(videos, progress=False, cache=False)
    assert p.stats == {"computed": 1, "cache_hits": 0} and path.read_bytes() == before
    other = make_video(1)
    pp.Pipeline(all_on()).run([other], progress=False, cache=False)
    assert len(list((cache / "tiles").glob("*.npz"))) == 1  # nothing new written


def test_unusable_cache_location_computes_without_it(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(blocker))
    caplog.set_level(logging.WARNING)
    p = pp.Pipeline(all_on())
    assert len(p.run([make_video(0)], progress=False)) > 0
    assert p.stats["computed"] == 1 and p.last_cache_path is None
    (msg,) = _warnings(caplog)
    assert str(blocker) in msg and "without" in msg


def test_entry_that_loads_badly_despite_its_checksum_is_recomputed(cache, caplog):
    # e.g. written by a MitoGAN whose format this one cannot read: the checksum is fine, load() fails
    path = cache / "thing.npz"
    calls = []
    compute = lambda: calls.append(1) or np.arange(3)  # noqa: E731
    save = lambda a, f: np.save(f, a)  # noqa: E731
    assert cached_file(path, compute, save, np.load, label="test").tolist() == [0, 1, 2]
    caplog.set_level(logging.WARNING)

    def picky(p):
        raise ValueError("format 9 is too new")

    assert cached_file(path, compute, save, picky, label="test") is not None and len(calls) == 2
    assert "format 9 is too new" in _warnings(caplog)[0]


# ------------------------------------------------------------------------------------------ other caches

def _real_tiles(n=48, size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(-0.6, 0.1, (n, 1, size, size)).astype(np.float32)
    x[:, :, 4:12, 6:10] += 1.0  # a bright bar on every tile
    return np.clip(x, -1, 1), np.repeat(np.arange(4), n // 4), np.tile(np.arange(n // 4), 4)


def test_reference_cache_heals(cache, caplog):
    tiles, source, frame = _real_tiles()
    ref = Reference.cached(tiles, source, frame)
    path = Reference.cache_path(tiles, source, frame, 0.25, 0)
    assert path.parent == cache / "metrics" and path.is_file()
    _flip_byte(path, 0.3)
    caplog.set_level(logging.WARNING)
    again = Reference.cached(tiles, source, frame)
    np.testing.assert_array_equal(again.f_heldout, ref.f_heldout)
    assert any(str(path) in m for m in _warnings(caplog))
    caplog.clear()
    Reference.cached(tiles, source, frame)
    assert not _warnings(caplog)


@pytest.mark.parametrize("damage", ["flip", "missing video", "partial folder"])
def test_simulated_dataset_cache_heals(cache, caplog, damage):
    first = default_dataset(videos=2, frames=2, size=40, progress=False)
    tif = first / "video_001.tif"
    good = tif.read_bytes()
    if damage == "flip":
        _flip_byte(tif, 0.9)
    elif damage == "missing video":
        tif.unlink()
    else:  # an older MitoGAN's crash: files but no checksum
        first.with_name(first.name + CHECKSUM_SUFFIX).unlink()
    caplog.set_level(logging.WARNING)
    assert default_dataset(videos=2, frames=2, size=40, progress=False) == first
    assert tif.read_bytes() == good  # simulated again, identically
    (msg,) = _warnings(caplog)
    assert str(first) in msg
    assert not [p for p in cache.iterdir() if ".tmp" in p.name or ".old-" in p.name]


# ------------------------------------------------------------------------------------------ the root

def test_empty_cache_variable_means_the_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for value in ("", "  "):
        monkeypatch.setenv("MITOGAN_CACHE_DIR", value)
        assert cache_root() == tmp_path / "home" / ".cache" / "mitogan"
    p = pp.Pipeline(all_on())
    p.run([make_video(0)], progress=False)
    assert p.last_cache_path.parent == tmp_path / "home" / ".cache" / "mitogan" / "tiles"
    tiles, source, frame = _real_tiles()
    assert Reference.cache_path(tiles, source, frame, 0.25, 0).parent.parent == cache_root()
    assert default_dataset(videos=1, frames=2, size=40, progress=False).parent == cache_root()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # nothing in the current folder
