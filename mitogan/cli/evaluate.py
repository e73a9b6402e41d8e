"""``mitogan evaluate REAL FAKE --out DIR``: compare generated images with real ones.

REAL and FAKE are each a tiles file (.npz/.npy from ``mitogan preprocess``), an image folder or a
video/TIFF; FAKE may be the folder ``mitogan synth`` wrote (a complete one: an interrupted synth is refused,
with the ``--resume`` that finishes it). When REAL is raw movies and the generator's source is known (FAKE is
a synth output, whose bundle it names, or ``--source RUN_OR_BUNDLE_OR_SEARCH``), REAL goes through that
source's own preprocessing, as the generator's training data did. Otherwise frames are cut into
non-overlapping tiles of the other side's tile size (see docs/metrics.md); if both are frames, ``--size``
(default 64) sets the tile size. REAL is split into a
training part and a held-out part by whole videos (or time blocks of them): generated images are scored
against the held-out part, and memorisation looks at the training part.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mitogan.errors import InputError

__all__ = ["register", "run", "load_images"]


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="metrics of generated vs real images (metrics.json + PNGs)",
                              description=__doc__)
    p.add_argument("real", help="real tiles file or the folder `mitogan preprocess` wrote, image folder, or video/TIFF")
    p.add_argument("fake", help="generated images: .npy/.npz, the folder `mitogan synth --format npy` wrote, image folder, or TIFF")
    p.add_argument("--out", required=True, help="folder for metrics.json, histograms.png, nearest_neighbours.png "
                                                "(new or empty)")
    p.add_argument("--source", default=None, metavar="RUN_OR_BUNDLE_OR_SEARCH",
                   help="preprocess raw REAL movies as this run/bundle/search did (default: the bundle of a FAKE "
                        "synth folder, when REAL is raw)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier `mitogan evaluate` output in --out (once the new one is complete)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split, subsamples and bootstrap")
    p.add_argument("--k", type=int, default=5, help="neighbours for precision/recall/density/coverage")
    p.add_argument("--size", type=int, default=64, help="tile size when both inputs are frames (16-1024 px)")
    p.add_argument("--max-images", type=int, default=None, help="seeded random subset per side")
    p.add_argument("--holdout", type=float, default=0.25,
                   help="share of REAL held out (whole videos or time blocks) as the reference; the rest is "
                        "the training split that memorisation compares with (match train.holdout)")
    p.add_argument("--no-c2st", action="store_true",
                   help="skip the classifier two-sample test (a small CNN trained 3 times against the held-out "
                        "tiles and 3 times for its baseline: ~10-40 s on 2 cores; docs/c2st.md)")
    p.set_defaults(func=run)


def _is_tiles(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".npz", ".npy")


def _resolve(path: Path) -> Path:
    """The folder an earlier command wrote -> its array file: `mitogan preprocess --out DIR` (tiles.npz),
    `mitogan synth --format npy --out DIR` (images.npy). Anything else is read as images/videos."""
    if path.is_dir():
        for name in ("tiles.npz", "images.npy"):
            if (path / name).is_file():
                return path / name
    return path


def load_images(path, size: int | None, max_images: int | None = None, seed: int = 0, real: bool = False,
                progress: bool = True):
    """A tiles file as is, or frames (mitogan.io.read_inputs) cut into ``size`` tiles, as a ``TileSet``
    that remembers the video and frame of every tile (the real side is split by them). Real frames go
    through the same quality check as preprocessing: frames with no signal are left out (and said so)."""
    from mitogan.tiles import TileSet

    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist; give a tiles file, an image folder or a video/TIFF")
    if _is_tiles(path):
        from mitogan.tiles import load_tiles

        ts = load_tiles(path)
    else:
        from mitogan.io import read_inputs
        from mitogan.metrics.proof import videos_to_tiles

        videos = read_inputs(path, progress=progress)
        frames = [_quality_checked(v) if real else v.frames for v in videos]
        kept = [(v, f) for v, f in zip(videos, frames) if len(f)]
        if not kept:
            raise InputError(path, "every frame was flagged as having no signal; nothing to compare with")
        ts = videos_to_tiles([f for _, f in kept], size or 64, [str(v.source) for v, _ in kept])
    if max_images is not None and len(ts) > max_images:
        ts = ts.subset(np.sort(np.random.default_rng(seed).choice(len(ts), max_images, replace=False)))
    return ts if isinstance(ts, TileSet) else TileSet.from_array(ts)


def _subset(ts, max_images, seed):
    if max_images is not None and len(ts) > max_images:
        return ts.subset(np.sort(np.random.default_rng(seed).choice(len(ts), max_images, replace=False)))
    return ts


def _quality_checked(video) -> np.ndarray:
    from mitogan.preprocess import quality_report

    flagged = quality_report(video)["flagged"]
    if flagged:
        print(f"{video.source}: {len(flagged)} of {len(video.frames)} frames have no signal and are left out",
              file=sys.stderr)
    return np.delete(video.frames, flagged, axis=0)


def _check_args(args) -> None:
    """Every option in range, and --out usable, before any image is read (one line naming the option)."""
    from mitogan.errors import MitoganError
    from mitogan.fsutil import claim_output_dir

    checks = [("--k", args.k, 1, 1000), ("--size", args.size, 16, 1024), ("--seed", args.seed, 0, 2**31 - 1)]
    if args.max_images is not None:
        checks.append(("--max-images", args.max_images, 2, 10**9))
    for flag, value, lo, hi in checks:
        if not lo <= value <= hi:
            raise MitoganError(f"{flag} {value}: give a whole number from {lo} to {hi}")
    if not (0.05 <= args.holdout <= 0.5):  # also refuses NaN
        raise MitoganError(f"--holdout {args.holdout}: give a share from 0.05 to 0.5")
    claim_output_dir(Path(args.out), "evaluate", overwrite=args.overwrite, create=False, legacy=("metrics.json",))


def _check_kinds(args):
    """REAL is real data, FAKE generated images (a complete synth output, if one), --source a run/bundle/search;
    returns the provenance whose preprocessing raw REAL data gets, or None."""
    import shlex

    from mitogan.resolve import RAW_KINDS, SOURCE_KINDS, check_complete, kind_of, provenance, wrong_input

    real_k, fake_k = kind_of(args.real), kind_of(args.fake)
    example = f"mitogan evaluate MOVIES_OR_TILES {shlex.quote(str(args.fake))} --out {shlex.quote(str(args.out))}"
    if real_k in (*SOURCE_KINDS, "synth", "synth-incomplete", "evaluate", "explain", "other-file", "missing"):
        raise wrong_input(Path(args.real), real_k, "real", option="REAL", command="mitogan evaluate", example=example)
    check_complete(args.fake, option="FAKE")
    if fake_k in (*SOURCE_KINDS, "evaluate", "explain", "other-file", "missing"):
        raise wrong_input(Path(args.fake), fake_k, "images", option="FAKE", command="mitogan evaluate")
    if args.source is not None:
        kind = kind_of(args.source)
        if kind not in SOURCE_KINDS:
            raise wrong_input(Path(args.source), kind, "source", option="--source", command="mitogan evaluate")
        return provenance(args.source, option="--source")
    if real_k in RAW_KINDS and fake_k == "synth":
        from mitogan.resolve import synth_bundle

        if synth_bundle(args.fake) is not None:
            return provenance(args.fake, option="FAKE")
        # the bundle that made FAKE is gone (moved, or on another machine): the note below names --source
    if real_k in RAW_KINDS:  # said even with -q: it decides what the numbers mean
        print(f"mitogan: REAL {args.real}: raw frames, cut into tiles without preprocessing (pass --source "
              "RUN_OR_BUNDLE_OR_SEARCH to preprocess them as the generator's training data was)", file=sys.stderr)
    return None


SYNTH_KEYS = ("bundle", "seed", "truncation", "min_set_distance", "min_train_distance", "kept", "dropped_duplicate",
              "dropped_memorised")  # what of a synth output's synth.json says how FAKE was drawn


def _inputs(args) -> dict:
    """The paths as given, and for a synth output (FAKE is its folder or a file in it) how it was drawn."""
    from mitogan.resolve import synth_summary

    out = {"real": str(args.real), "fake": str(args.fake)}
    synth = synth_summary(args.fake)
    if synth:
        out["synth"] = {k: synth[k] for k in SYNTH_KEYS if k in synth}
    return out


def run(args) -> int:
    from mitogan.fsutil import atomic_dir
    from mitogan.metrics.evaluate import DEFAULT_METRICS, evaluate

    _check_args(args)
    prov = _check_kinds(args)
    real_p, fake_p = _resolve(Path(args.real)), _resolve(Path(args.fake))
    # a tiles file fixes the tile size; frames on the other side are cut to match it
    if prov is not None and not _is_tiles(real_p):  # raw REAL: the generator's own preprocessing
        from mitogan.resolve import real_tiles

        real = _subset(real_tiles(real_p, prov, option="REAL", quiet=args.quiet), args.max_images, args.seed)
        fake = load_images(fake_p, real.size, args.max_images, args.seed, progress=not args.quiet)
    elif _is_tiles(real_p):
        real = load_images(real_p, None, args.max_images, args.seed, real=True, progress=not args.quiet)
        fake = load_images(fake_p, real.size, args.max_images, args.seed, progress=not args.quiet)
    else:
        fake = load_images(fake_p, args.size, args.max_images, args.seed, progress=not args.quiet)
        real = load_images(real_p, fake.size, args.max_images, args.seed, real=True, progress=not args.quiet)
    if real.size != fake.size:
        raise InputError(fake_p, f"tiles are {fake.size} px but {real_p} has {real.size} px tiles; "
                                 f"evaluate tiles of one size")
    _check_args(args)
    with atomic_dir(Path(args.out), "evaluate") as tmp:  # an earlier output (--overwrite) is replaced once this one is complete
        if (Path(args.out) / "metrics.jsonl").is_file():  # keep the history of evaluations into this folder
            import shutil

            shutil.copyfile(Path(args.out) / "metrics.jsonl", tmp / "metrics.jsonl")
        metrics = tuple(m for m in DEFAULT_METRICS if not (args.no_c2st and m == "c2st"))
        inputs = _inputs(args)
        result = evaluate(real, fake.tiles, seed=args.seed, k=args.k, out_dir=tmp, progress=not args.quiet,
                          holdout=args.holdout, metrics=metrics, inputs=inputs)
    if inputs.get("synth", {}).get("truncation", 1) != 1:  # said: it changes what the numbers are about
        print(f"mitogan: FAKE {args.fake} was drawn with --truncation {inputs['synth']['truncation']} (synth.json)",
              file=sys.stderr)
    prim, proto = result["primary"], result["protocol"]
    print(f"{prim['name']} = {_num(prim['value'])} ({prim['mode']}; fidelity {_num(prim['components']['fidelity'], 3)}, "
          f"diversity gap {_num(prim['components']['diversity_gap'], 3)}, authenticity gap "
          f"{_num(prim['components'].get('authenticity_gap'), 3)}, structure gap "
          f"{_num(prim['components'].get('structure_gap'), 3)}; generated {result['n_fake']} vs "
          f"{proto['n_heldout']} held-out real tiles, split by {proto['split']}) -> {Path(args.out) / 'metrics.json'}")
    _print_c2st(result)
    if result.get("judged"):
        print(f"{result['judged']['name']} = {_num(result['judged']['value'])} ({prim['name']} with the C2ST's gap "
              "folded in: what ranks a search's finished trials)")
    m = result["metrics"]
    if m.get("copy_share") is not None:
        print(f"copying: {_num(m['copy_share'], 3)} of generated tiles copy a training tile, whole or in part, more "
              f"closely than 95 % of real frames of other times do (whole {_num(m.get('whole_copy_share'), 3)}, "
              f"part {_num(m.get('part_copy_share'), 3)}; real frames themselves: {_num(m.get('copy_null_share'), 3)})"
              f"{'; FLAGGED as copying' if m.get('copying') else ''}")
    top = ", ".join(f"{t['feature']} {100 * t['share']:.0f}%" for t in result["top_features"][:4])
    print(f"largest differences: {top}")
    if not args.quiet:
        from mitogan.fsutil import json_safe

        print(json.dumps(json_safe({k: (round(v, 4) if isinstance(v, float) else v)
                                    for k, v in result["metrics"].items()})))
    return 0


def _print_c2st(result: dict) -> None:
    """One line for the classifier two-sample test, when it ran: accuracy next to its baseline."""
    m, s = result["metrics"], result["sample_sizes"].get("c2st", {})
    if m.get("c2st_accuracy") is None:
        if "skipped" in s:
            print(f"classifier two-sample test skipped: {s['skipped']}")
        return
    print(f"classifier two-sample test: accuracy {_num(m['c2st_accuracy'], 3)} ± {_num(m['c2st_accuracy_sd'], 3)} "
          f"(0.5 = indistinguishable; baseline, training vs held-out real split: {_num(m['c2st_baseline'], 3)} ± "
          f"{_num(m['c2st_baseline_sd'], 3)}; c2st_gap {_num(m['c2st_gap'], 3)}; information "
          f"{_num(m.get('c2st_information'), 3)} bits vs {_num(m.get('c2st_information_baseline'), 3)}; {s['n_per_side']} tiles a side, "
          f"{s['folds']} folds x {s['batches']} batches of {s['batch_size']})")


def _num(v, digits: int = 4) -> str:
    """A metric for the summary line: n/a when it has no finite value."""
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and np.isfinite(v) else "n/a"
