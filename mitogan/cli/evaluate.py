"""``mitogan evaluate REAL FAKE --out DIR``: compare generated images with real ones.

REAL and FAKE are each a tiles file (.npz/.npy from ``mitogan preprocess``), an image folder or a
video/TIFF. Frames are cut into non-overlapping tiles of the other side's tile size (see
docs/metrics.md); if both are frames, ``--size`` (default 64) sets the tile size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mitogan.errors import InputError

__all__ = ["register", "run", "load_images"]


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="metrics of generated vs real images (metrics.json + PNGs)",
                              description=__doc__)
    p.add_argument("real", help="real (training) tiles file, image folder, or video/TIFF")
    p.add_argument("fake", help="generated tiles file, image folder, or video/TIFF")
    p.add_argument("--out", required=True, help="folder for metrics.json, histograms.png, nearest_neighbours.png")
    p.add_argument("--seed", type=int, default=0, help="seed of KID subsets, hold-out split and encoder")
    p.add_argument("--k", type=int, default=5, help="neighbours for precision/recall/density/coverage")
    p.add_argument("--size", type=int, default=64, help="tile size when both inputs are frames")
    p.add_argument("--max-images", type=int, default=None, help="seeded random subset per side")
    p.set_defaults(func=run)


def _is_tiles(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".npz", ".npy")


def load_images(path, size: int | None, max_images: int | None = None, seed: int = 0) -> np.ndarray:
    """A tiles file as is, or frames (mitogan.io.read_inputs) cut into ``size`` tiles: (N, 1, S, S)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist; give a tiles file, an image folder or a video/TIFF")
    if _is_tiles(path):
        from mitogan.tiles import load_tiles

        tiles = load_tiles(path).tiles
    else:
        from mitogan.io import read_inputs
        from mitogan.metrics.proof import frames_to_tiles

        videos = read_inputs(path)
        tiles = np.concatenate([frames_to_tiles(v.frames, size or 64) for v in videos])
    if max_images is not None and len(tiles) > max_images:
        tiles = tiles[np.sort(np.random.default_rng(seed).choice(len(tiles), max_images, replace=False))]
    return tiles


def run(args) -> int:
    from mitogan.metrics.evaluate import evaluate

    real_p, fake_p = Path(args.real), Path(args.fake)
    # a tiles file fixes the tile size; frames on the other side are cut to match it
    size = args.size
    if _is_tiles(real_p):
        real = load_images(real_p, None, args.max_images, args.seed)
        fake = load_images(fake_p, real.shape[-1], args.max_images, args.seed)
    else:
        fake = load_images(fake_p, size, args.max_images, args.seed)
        real = load_images(real_p, fake.shape[-1], args.max_images, args.seed)
    if real.shape[-1] != fake.shape[-1]:
        raise InputError(fake_p, f"tiles are {fake.shape[-1]} px but {real_p} has {real.shape[-1]} px tiles; "
                                 f"evaluate tiles of one size")
    result = evaluate(real, fake, seed=args.seed, k=args.k, out_dir=Path(args.out), progress=True)
    prim = result["primary"]
    print(f"{prim['name']} = {prim['value']:.4f} ({prim['mode']}; real {result['n_real']}, "
          f"generated {result['n_fake']}) -> {Path(args.out) / 'metrics.json'}")
    print(json.dumps({k: round(v, 4) for k, v in result["metrics"].items()}))
    return 0
