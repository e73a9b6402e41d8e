"""The tiles file: the one array file that preprocessing writes and training/metrics read.

Format: a NumPy ``.npz`` (no pickles) with
    tiles    (N, 1, S, S) float32 in [-1, 1]   the training images
    source   (N,) int32                          index into ``meta["sources"]`` (the file each tile came from)
    frame    (N,) int32                          frame index inside that file
    yx       (N, 2) int32                        top-left corner of the tile in the (resized) frame
    meta     0-d unicode array                   JSON: {"version", "sources", "config", "intensity",
                                                 "pixel_size_um" (of the input frames, when known), ...}

``load_tiles`` validates all of it and raises ``InputError`` naming the file and the problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mitogan.errors import InputError, one_line
from mitogan.fsutil import atomic_write

__all__ = ["TileSet", "save_tiles", "write_tiles", "load_tiles", "tiles_path", "tile_pixel_size", "input_pixel_size",
           "TILES_FORMAT_VERSION", "TILES_NAME"]

TILES_FORMAT_VERSION = 1
TILES_NAME = "tiles.npz"  # what `mitogan preprocess --out DIR` writes inside DIR


def tiles_path(path) -> Path:
    """``path`` itself, or ``path/tiles.npz`` when ``path`` is the folder `mitogan preprocess --out` wrote."""
    path = Path(path)
    if path.is_dir():
        if not (path / TILES_NAME).is_file():
            from mitogan.resolve import kind_of, wrong_input

            raise wrong_input(path, kind_of(path), "tiles", option="")
        return path / TILES_NAME
    return path


def tile_pixel_size(meta: dict) -> float | None:
    """Pixel size of the tiles in µm: ``meta["pixel_size_um"]`` (of the input frames) / the tile scale.

    None when the inputs carried no pixel size. Tiles cut at ``preprocess.tile.scale`` 0.5 have pixels
    twice as large as the frames'.
    """
    px = meta.get("pixel_size_um")
    if not px:
        return None
    scale = float((meta.get("config") or {}).get("preprocess.tile.scale", 1.0) or 1.0)
    return float(px) / scale


def input_pixel_size(sources) -> float | None:
    """The pixel size in µm shared by the input files ``sources`` (``mitogan.io.physical_scale``: OME or
    ImageJ metadata, a TIFF resolution in pixels per centimetre, or the simulator's own scale), or None when
    any source has none or they disagree (>1 %)."""
    from mitogan.io import common_scale

    return common_scale(sources)["pixel_size_um"]


@dataclass
class TileSet:
    """Training tiles with provenance. ``tiles`` is (N, 1, S, S) float32 in [-1, 1]."""

    tiles: np.ndarray
    source: np.ndarray
    frame: np.ndarray
    yx: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Tile side S in pixels."""
        return int(self.tiles.shape[-1])

    def __len__(self) -> int:
        return int(self.tiles.shape[0])

    def subset(self, index) -> "TileSet":
        """A TileSet of the selected rows (same meta)."""
        return TileSet(self.tiles[index], self.source[index], self.frame[index], self.yx[index], dict(self.meta))

    @classmethod
    def from_array(cls, tiles: np.ndarray, meta: dict | None = None) -> "TileSet":
        """Wrap bare tiles (N, 1, S, S) with unknown provenance."""
        n = tiles.shape[0]
        return cls(tiles, np.zeros(n, np.int32), np.arange(n, dtype=np.int32), np.zeros((n, 2), np.int32),
                   dict(meta or {}))


def save_tiles(path, tileset: TileSet) -> Path:
    """Write ``tileset`` to ``path`` (.npz) atomically (``fsutil.atomic_write``): a reader never sees a
    half-written file, and an existing file is replaced only by a complete one."""
    path = Path(path)
    _check_tiles(path, tileset.tiles)
    return atomic_write(path, lambda f: write_tiles(tileset, f))


def write_tiles(tileset: TileSet, f) -> None:
    """Write ``tileset`` in the tiles format to the binary file object ``f`` (see ``save_tiles``)."""
    meta = dict(tileset.meta)
    meta.setdefault("version", TILES_FORMAT_VERSION)
    np.savez(f, tiles=tileset.tiles.astype(np.float32, copy=False), source=tileset.source.astype(np.int32),
             frame=tileset.frame.astype(np.int32), yx=tileset.yx.astype(np.int32), meta=np.array(json.dumps(meta)))


def load_tiles(path) -> TileSet:
    """Read a tiles file written by ``save_tiles`` (or any .npz/.npy holding (N, 1, S, S) or (N, S, S)).

    ``path`` may also be the folder `mitogan preprocess --out DIR` wrote (its ``tiles.npz`` is read).
    """
    path = tiles_path(path)
    if not path.is_file():
        raise InputError(path, "no such tiles file (make one with `mitogan preprocess MOVIES --out TILES`)")
    if path.stat().st_size == 0:
        raise InputError(path, "the tiles file is empty")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # corrupt zip, truncated file, pickled content
        raise InputError(path, f"not a readable tiles file ({type(e).__name__}: {e})") from None
    if isinstance(data, np.ndarray):  # a bare .npy
        return TileSet.from_array(_as_nchw(path, data))
    with data:
        if "tiles" not in data.files:
            raise InputError(path, f"has no 'tiles' array (found {sorted(data.files)})")
        try:  # members are read (and their CRC checked) only here
            tiles = data["tiles"]
            n = tiles.shape[0]
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
            parts = (data["source"] if "source" in data.files else np.zeros(n, np.int32),
                     data["frame"] if "frame" in data.files else np.arange(n, dtype=np.int32),
                     data["yx"] if "yx" in data.files else np.zeros((n, 2), np.int32))
        except Exception as e:  # a damaged member: bad CRC, truncated data, broken JSON
            raise InputError(path, one_line(f"not a readable tiles file ({type(e).__name__}: {e})")) from None
        if not isinstance(meta, dict):
            raise InputError(path, "not a readable tiles file (its meta is not a JSON object)")
        ts = TileSet(_as_nchw(path, tiles), *parts, meta)
    version = meta.get("version", TILES_FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(path, f"not a readable tiles file (format version {version!r} is not an integer)")
    if version > TILES_FORMAT_VERSION:
        raise InputError(path, f"tiles format version {meta['version']} is newer than this MitoGAN "
                               f"understands ({TILES_FORMAT_VERSION}); upgrade mitogan")
    return ts


def _as_nchw(path, tiles: np.ndarray) -> np.ndarray:
    if tiles.ndim == 3:
        tiles = tiles[:, None]
    _check_tiles(path, tiles)
    return tiles.astype(np.float32, copy=False)


def _check_tiles(path, tiles: np.ndarray) -> None:
    if tiles.ndim != 4 or tiles.shape[1] != 1 or tiles.shape[2] != tiles.shape[3]:
        raise InputError(path, f"tiles must have shape (N, 1, S, S), got {tiles.shape}")
    if tiles.shape[0] == 0:
        raise InputError(path, "holds zero tiles (were all tiles skipped as empty? lower "
                               "preprocess.tile.min_foreground)")
    if not np.issubdtype(tiles.dtype, np.floating):
        raise InputError(path, f"tiles must be float in [-1, 1], got dtype {tiles.dtype}")
    if not np.isfinite(tiles).all():
        raise InputError(path, "tiles contain NaN or Inf values")
    lo, hi = float(tiles.min()), float(tiles.max())
    if lo < -1.001 or hi > 1.001:
        raise InputError(path, f"tiles must lie in [-1, 1], found [{lo:.3g}, {hi:.3g}]")
