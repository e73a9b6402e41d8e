"""Everything about the real data that does not depend on the generated tiles, computed once per dataset.

``Reference.build(real)`` splits the real tiles (``protocol.split_real``: whole videos or time blocks),
decides the mask threshold on the real data, computes the features of both sides, fits the robust feature
space on the held-out side and calibrates the fidelity scale (0 = a disjoint real split, 1 = the same data
damaged into noise) for the sample size it is asked about. It can be saved to and loaded from one .npz.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mitogan.errors import InputError
from mitogan.fsutil import atomic_write, cache_root, cached_file
from mitogan.metrics import distances as D
from mitogan.metrics.features import FEATURES_VERSION, FeatureSpace, describe, feature_names
from mitogan.metrics.scattering import SCATTER_VERSION
from mitogan.metrics.protocol import RealSplit, duplicate_groups, split_real

PART_COPY_TILES = 400  # training tiles the partial-copy test indexes (set-up ~ their number squared)

__all__ = ["Reference", "CALIBRATION_DRAWS", "fidelity_distance"]

CALIBRATION_DRAWS = 1000  # subsamples whose mean FD is used (calibration, and sets larger than it)
_REFERENCE_VERSION = 2  # 2: train_groups (the copy null), twin videos merged in the split


def fidelity_distance(space: FeatureSpace, ref: np.ndarray, raw: np.ndarray, n: int, seed: int,
                      draws: int = CALIBRATION_DRAWS) -> float:
    """Mean Fréchet distance between the reference and ``draws`` seeded subsets of ``n`` rows of ``raw``.

    Every set is scored at the same n as the calibration, so FD's small-sample bias (it grows as n
    shrinks) cancels in the calibrated score instead of favouring bigger sets.
    """
    rng = np.random.default_rng(seed)
    z = space(raw)
    if len(z) <= n:
        return D.frechet_distance(ref, z)
    vals = [D.frechet_distance(ref, z[rng.choice(len(z), n, replace=False)]) for _ in range(draws)]
    return float(np.mean(vals))


@dataclass
class Reference:
    """The real side of every comparison. Build with ``Reference.build``; arrays are float64 unless noted."""

    heldout: np.ndarray  # (H, 1, S, S) float32: the reference generated tiles are compared with
    train: np.ndarray  # (T, 1, S, S) float32: what a generator trains on; memorisation looks here
    threshold: float  # mask threshold in tile units, decided on the real data
    f_heldout: np.ndarray  # (H, F) raw features
    f_train: np.ndarray  # (T, F) raw features
    split: dict  # protocol.RealSplit.describe() + duplicates
    seed: int = 0
    train_groups: np.ndarray | None = None  # (T,) time block / video of each training tile (the copy null)
    _cal: dict = field(default_factory=dict)  # (n, seed) -> (d0, d1)
    cache_file: Path | None = None  # the cache entry this reference came from (``cached``): its copy nulls go beside it

    @property
    def size(self) -> int:
        return int(self.heldout.shape[-1])

    @property
    def names(self) -> list[str]:
        return feature_names(self.size)

    @property
    def space(self) -> FeatureSpace:
        if not hasattr(self, "_space"):
            self._space = FeatureSpace(self.f_heldout, self.names)
            self._z_heldout = self._space(self.f_heldout)
        return self._space

    @property
    def copies(self):
        """The ``copying.CopyIndex`` of the training tiles (built once)."""
        if not hasattr(self, "_copies"):
            from mitogan.metrics.copying import CopyIndex

            self._copies = CopyIndex(self.train)
        return self._copies

    @property
    def copy_groups(self) -> np.ndarray:
        """The time block / video of every training tile: what the copy nulls compare across."""
        return self.train_groups if self.train_groups is not None else np.arange(len(self.train)) * 4 // len(self.train)

    @property
    def copy_null(self) -> np.ndarray:
        """Each training tile's distance to the training tiles of other time blocks / videos (the copy null)."""
        if not hasattr(self, "_copy_null"):
            self._copy_nulls()
        return self._copy_null

    @property
    def part_copies(self):
        """The ``copying.PatchIndex`` of at most ``PART_COPY_TILES`` training tiles (a seeded subset: its null
        costs the square of their number; whole-tile copies are still looked for among all of them)."""
        if not hasattr(self, "_part_copies"):
            self._copy_nulls()
        return self._part_copies

    @functools.cached_property
    def structure(self):
        """The ``structure.StructureReference`` of the held-out and training tiles (the surrogate test), once; for
        a reference read from the cache (``cached``) it is kept beside its entry, like the copy nulls."""
        from mitogan.metrics.structure import STRUCTURE_VERSION, StructureReference

        build = lambda: StructureReference(self.heldout, self.train, self.seed)  # noqa: E731
        if self.cache_file is None:
            return build()
        key = self.cache_file.stem.removeprefix("reference-")
        path = self.cache_file.with_name(f"structure-{key}-v{STRUCTURE_VERSION}.npz")

        def load(p: Path) -> StructureReference:
            with np.load(p, allow_pickle=False) as z:
                return StructureReference(None, None, state={k: z[k] for k in z.files})

        return cached_file(path, build, lambda ref, f: np.savez(f, **ref.state()), load, label="structure-test scores")

    @functools.cached_property
    def part_copy_tiles(self) -> np.ndarray:
        """Which training tiles the partial-copy index holds (their whole-tile null: the union rate)."""
        pick = np.arange(len(self.train))
        if len(pick) > PART_COPY_TILES:
            pick = np.sort(np.random.default_rng(23).choice(len(pick), PART_COPY_TILES, replace=False))
        return pick

    def _copy_nulls(self) -> None:
        """Both copy tests' nulls (most of the copy test's set-up), once; for a reference read from the cache
        (``cached``) they are kept beside its entry, so the next search trial on the same data reads them."""
        from mitogan.metrics.copying import COPY_NULL_VERSION, PatchIndex

        pick = self.part_copy_tiles
        if self.cache_file is None:
            self._part_copies = PatchIndex(self.train[pick], self.copy_groups[pick])
            self._copy_null = self.copies.null(self.copy_groups, self.train)
            return
        key = self.cache_file.stem.removeprefix("reference-")
        path = self.cache_file.with_name(f"copy-nulls-{key}-v{COPY_NULL_VERSION}-{PART_COPY_TILES}.npz")

        def compute() -> dict:
            self._part_copies = PatchIndex(self.train[pick], self.copy_groups[pick])
            return {"whole": self.copies.null(self.copy_groups, self.train), **self._part_copies.state()}

        def load(p: Path) -> dict:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}

        nulls = cached_file(path, compute, lambda v, f: np.savez(f, **v), load, label="copy-test nulls")
        self._copy_null = nulls["whole"]
        if not hasattr(self, "_part_copies"):  # read back: the index is rebuilt around the stored null
            self._part_copies = PatchIndex(self.train[pick], self.copy_groups[pick], state=nulls)

    @property
    def z_heldout(self) -> np.ndarray:
        self.space  # noqa: B018 (fits the space once)
        return self._z_heldout

    @classmethod
    def build(cls, tiles: np.ndarray, source=None, frame=None, *, holdout: float = 0.25, seed: int = 0,
              progress: bool = False, split: RealSplit | None = None, max_tiles: int | None = None) -> "Reference":
        """Split ``tiles`` (N, 1, S, S) in [-1, 1] and compute the real side (see module docstring).

        ``source``/``frame`` (N,) say which video and frame each tile came from; without them the tile
        order is taken as time order of one video (split into time blocks). ``split`` overrides the split
        (its indices must cover only tiles meant for this reference). ``max_tiles`` caps each side at a
        seeded random subset (the in-training evaluator: the set-up cost stays bounded on big datasets).
        """
        from mitogan.metrics.morphology import dataset_threshold

        tiles = np.asarray(tiles, np.float32)
        n = len(tiles)
        source = np.zeros(n, np.int64) if source is None else np.asarray(source)
        frame = np.arange(n) if frame is None else np.asarray(frame)
        from mitogan.metrics.copying import merge_twins
        from mitogan.metrics.protocol import _time_blocks

        n_videos = len(np.unique(source))
        source, frame = merge_twins(tiles, source, frame)  # the same field in two files is one video, one clock
        sp = split or split_real(source, frame, holdout, seed)
        for name, idx in (("held-out", sp.heldout), ("training", sp.train)):
            if len(idx) < 6:
                raise InputError("real tiles", f"the {name} split has {len(idx)} tiles ({sp.how}); "
                                               f"metrics need at least 6 on each side: supply more real data")
        info = sp.describe()
        if max_tiles is not None:
            rng = np.random.default_rng(seed + 17)
            cap = lambda idx: np.sort(rng.choice(idx, max_tiles, replace=False)) if len(idx) > max_tiles else idx  # noqa: E731
            sp = RealSplit(cap(sp.train), cap(sp.heldout), sp.how, sp.groups)
            info.update(n_train_used=len(sp.train), n_heldout_used=len(sp.heldout))
        # one threshold for the whole dataset, decided frame by frame on the real tiles it uses
        use = np.concatenate([sp.train, sp.heldout])
        frame_id = np.unique(source[use].astype(np.int64) * 1_000_003 + frame[use], return_inverse=True)[1]
        thr = float(dataset_threshold(tiles[use], groups=frame_id))
        _, n_dup = duplicate_groups(tiles[use])
        f_train = describe(tiles[sp.train], threshold=thr, progress=progress)
        f_heldout = describe(tiles[sp.heldout], threshold=thr, progress=progress)
        groups = _time_blocks(source[sp.train].astype(np.int64), frame[sp.train].astype(np.int64), 4)
        info["twin_videos_merged"] = int(n_videos - len(np.unique(source)))
        return cls(tiles[sp.heldout], tiles[sp.train], thr, f_heldout, f_train,
                   {**info, "duplicate_tiles": n_dup, "threshold": thr}, seed, groups)

    def calibration(self, n: int, seed: int | None = None) -> tuple[float, float]:
        """(d0, d1) at sample size n: FD of a disjoint real split (train subsets) and of pure noise."""
        n = int(min(n, len(self.f_train)))
        seed = self.seed if seed is None else seed
        if (n, seed) not in self._cal:
            d0 = fidelity_distance(self.space, self.z_heldout, self.f_train, n, seed)
            noise = np.random.default_rng(seed + 1).uniform(-1, 1, (n, 1, self.size, self.size))
            d1 = D.frechet_distance(self.z_heldout, self.space(describe(noise.astype(np.float32), self.threshold)))
            self._cal[(n, seed)] = (max(d0, 1e-9), max(d1, d0 * 1.001, 1e-9))
        return self._cal[(n, seed)]

    # --- persistence (the in-training evaluator caches one per dataset) ---
    @staticmethod
    def cache_path(tiles: np.ndarray, source, frame, holdout: float, seed: int, max_tiles=None) -> Path:
        h = hashlib.sha256(np.ascontiguousarray(tiles).tobytes())
        for a in (source, frame):
            h.update(b"-" if a is None else np.ascontiguousarray(np.asarray(a, np.int64)).tobytes())
        h.update(f"{tiles.shape}|{holdout}|{seed}|{max_tiles}|{FEATURES_VERSION}|{SCATTER_VERSION}|{_REFERENCE_VERSION}"
                 .encode())
        return cache_root() / "metrics" / f"reference-{h.hexdigest()[:16]}.npz"

    def save(self, path: Path) -> Path:
        """Write this reference to ``path`` (.npz, no pickles) atomically."""
        return atomic_write(path, self.write)

    def write(self, f) -> None:
        """Write this reference in the ``save`` format to the binary file object ``f``."""
        groups = self.train_groups if self.train_groups is not None else np.zeros(0, np.int64)
        np.savez(f, heldout=self.heldout, train=self.train, f_heldout=self.f_heldout, f_train=self.f_train,
                 train_groups=groups, meta=np.array(json.dumps({"threshold": self.threshold, "split": self.split, "seed": self.seed})))

    @classmethod
    def load(cls, path: Path) -> "Reference":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            groups = z["train_groups"] if "train_groups" in z.files and len(z["train_groups"]) else None
            return cls(z["heldout"], z["train"], meta["threshold"], z["f_heldout"], z["f_train"], meta["split"],
                       meta["seed"], groups)

    @classmethod
    def cached(cls, tiles, source=None, frame=None, *, holdout: float = 0.25, seed: int = 0,
               max_tiles: int | None = None) -> "Reference":
        """``build`` once per dataset and node, then read back from ``<cache root>/metrics`` (a damaged entry
        is warned about and rebuilt; see ``fsutil.cached_file``)."""
        tiles = np.asarray(tiles, np.float32)
        path = cls.cache_path(tiles, source, frame, holdout, seed, max_tiles)
        build = lambda: cls.build(tiles, source, frame, holdout=holdout, seed=seed, max_tiles=max_tiles)  # noqa: E731
        ref = cached_file(path, build, lambda ref, f: ref.write(f), cls.load, label="metrics reference")
        ref.cache_file = path
        return ref
