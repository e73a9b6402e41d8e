"""What a path on the command line stands for, and the preprocessing and pixel size behind it.

One answer for every command, so that any output is the input of the next command without hand-editing:

* :func:`kind_of` names what a path is (tiles, a movie, a folder of movies, a bundle, a run, a search
  trial, a search, a synth output — complete or not — ...), from its files and MitoGAN's folder markers;
* :func:`provenance` answers "the preprocessing (and pixel size) of X" for X = a bundle, a run folder or its
  checkpoint, a search trial folder, a search folder (its ``best/`` bundle, else its best trial through the
  search layer's ``explain_source`` plugin: ``mitogan`` never imports ``search``), a synth output (its
  bundle), or a tiles file/folder (the preprocessing that made it);
* :func:`real_tiles` turns real data given as tiles, a movie or a folder of movies into tiles, applying a
  source's own preprocessing to raw data (and saying so in one line);
* :func:`wrong_input` is the one-line error, naming the command to run instead, for a path of the wrong kind.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from mitogan.errors import InputError, MitoganError

__all__ = ["kind_of", "Provenance", "provenance", "real_tiles", "wrong_input", "check_complete", "describe",
           "synth_bundle",
           "SOURCE_KINDS", "RAW_KINDS", "TILES_KINDS"]

SOURCE_KINDS = ("bundle", "run", "checkpoint", "trial", "search")  # things with a preprocessing of their own
RAW_KINDS = ("movie", "raw-folder")
TILES_KINDS = ("tiles", "preprocess")

_DESCRIBE = {
    "missing": "does not exist",
    "tiles": "is a tiles file",
    "preprocess": "is the tiles folder `mitogan preprocess` wrote",
    "movie": "is a movie/image file (raw data)",
    "raw-folder": "is a folder of raw movies/images",
    "bundle": "is a generator bundle (from `mitogan export`)",
    "run": "is a training run (from `mitogan train`)",
    "checkpoint": "is a training checkpoint (from `mitogan train`)",
    "trial": "is a search trial folder",
    "search": "is a search folder (from `mitogan search`)",
    "synth": "holds synthetic images (from `mitogan synth`)",
    "synth-incomplete": "is an incomplete `mitogan synth` output",
    "evaluate": "is an evaluation (from `mitogan evaluate`)",
    "explain": "is an explanation (from `mitogan explain`)",
    "other-file": "is a file MitoGAN cannot read (not a movie, image or tiles file)",
    "other-folder": "is a folder with no movies, images or MitoGAN output in it",
}


def describe(kind: str) -> str:
    return _DESCRIBE[kind]


def kind_of(path) -> str:
    """What ``path`` is, as one of the keys of :data:`_DESCRIBE` (cheap: names and small files only)."""
    from mitogan.fsutil import read_marker
    from mitogan.io import SUPPORTED_SUFFIXES

    p = Path(path)
    if not p.exists():
        return "missing"
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix in (".npz", ".npy"):
            return "tiles"
        if suffix == ".pt" and p.name != "generator.pt":
            return "checkpoint"
        if p.name == "config.json" and (p.parent / "checksums.sha256").is_file():
            return "bundle"
        return "movie" if suffix in SUPPORTED_SUFFIXES else "other-file"
    marker = (read_marker(p) or {}).get("kind")
    if marker == "synth" or (p / ".synth-run.json").is_file():
        return "synth" if (p / "synth.json").is_file() else "synth-incomplete"
    if marker == "bundle" or ((p / "checksums.sha256").is_file() and (p / "config.json").is_file()):
        return "bundle"
    if (p / "search.json").is_file() or marker == "search" or kind_of(p / "best") == "bundle":
        return "search"
    if (p / "params.json").is_file() and ((p / "checkpoint.pt").is_file() or any(p.glob("checkpoint_*"))):
        return "trial"
    if marker == "run" or (p / "checkpoint.pt").is_file():
        return "run"
    if marker == "preprocess" or (p / "tiles.npz").is_file():
        return "preprocess"
    if marker in ("evaluate", "explain"):
        return marker
    return "raw-folder" if _has_media(p, SUPPORTED_SUFFIXES) else "other-folder"


def _has_media(folder: Path, suffixes, limit: int = 5000) -> bool:
    for i, f in enumerate(folder.rglob("*")):
        if i >= limit:
            return False
        if f.suffix.lower() in suffixes and not any(part.startswith(".") for part in f.relative_to(folder).parts):
            return True
    return False


# ------------------------------------------------------------------------------------------ provenance


@dataclass
class Provenance:
    """The preprocessing, tile size and physical scale a run / trial / search / bundle / tiles stands for."""

    kind: str
    path: Path
    preprocess: object  # mitogan.config.PreprocessConfig
    image_size: int
    pixel_size_um: float | None = None  # of the input frames (µm)
    frame_interval_s: float | None = None
    bundle: Path | None = None  # the bundle, when there is one (a bundle, a search's best/, a synth's)
    checkpoint: Path | None = None  # the training checkpoint, when there is one
    train_steps: int | None = None  # the generator steps its training was planned for

    @property
    def label(self) -> str:
        return f"{self.kind} {self.path}"

    @property
    def tile_pixel_size_um(self) -> float | None:
        """µm per tile pixel: the frames' pixel size over the tile scale (tiles cut at scale 0.5 are coarser)."""
        return self.pixel_size_um / self.preprocess.tile.scale if self.pixel_size_um else None

    def steps(self) -> str:
        from mitogan.preprocess import Pipeline

        return " → ".join(Pipeline(self.preprocess).steps)


def provenance(path, *, option: str = "SOURCE", command: str | None = None) -> Provenance:
    """The preprocessing (and pixel size) of ``path``: a bundle, a run folder or checkpoint, a search trial
    folder, a search folder or its best/, a synth output, or a tiles file/folder. Anything else is a one-line
    :func:`wrong_input` error naming what to give instead."""
    p = Path(path)
    kind = kind_of(p)
    if kind == "bundle":
        return _from_bundle(p.parent if p.is_file() else p)
    if kind == "run":
        return _from_run(p)
    if kind in ("checkpoint", "trial"):
        return _from_checkpoint(p, kind)
    if kind == "search":
        return _from_search(p)
    if kind in ("synth", "synth-incomplete"):
        bundle = _synth_info(p).get("bundle")
        if bundle and Path(bundle).exists():
            return provenance(bundle, option=option, command=command)
    if kind in TILES_KINDS:
        return _from_tiles(p)
    raise wrong_input(p, kind, "source", option=option, command=command)


def _config_from_flat(flat: dict, where: Path):
    from mitogan.config import Config, from_flat
    from mitogan.errors import ConfigError

    try:
        return from_flat(Config, {k: v for k, v in flat.items() if k.split(".")[0] in _SECTIONS})
    except ConfigError as e:
        raise InputError(where, f"its recorded config is not one this MitoGAN reads ({e})") from None


_SECTIONS = ("preprocess", "model", "loss", "init", "optim", "augment", "train", "stop")


def _from_bundle(bundle: Path) -> Provenance:
    from mitogan.export import load_bundle_config

    config = load_bundle_config(bundle)
    cfg = _config_from_flat(config.get("trial_config") or {}, bundle / "config.json")
    tile_px = config.get("pixel_size_um")
    frames_px = tile_px * cfg.preprocess.tile.scale if tile_px else None
    interval = None
    try:
        data = json.loads((bundle / "metrics.json").read_text()).get("data") or {}
        interval = data.get("frame_interval_s")
        frames_px = frames_px or data.get("pixel_size_um")
    except (OSError, ValueError, AttributeError):
        pass
    return Provenance("bundle", bundle, cfg.preprocess, int(config["image_size"]), frames_px, interval,
                      bundle=bundle)


def _data_json(folder: Path) -> dict:
    try:
        data = json.loads((folder / "data.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _scale_of(data: dict) -> tuple[float | None, float | None]:
    """(frames' pixel size, frame interval) from a run's/trial's data.json, else from its source files."""
    px, dt = data.get("pixel_size_um"), data.get("frame_interval_s")
    if (px is None or dt is None) and data.get("sources"):
        from mitogan.io import common_scale

        found = common_scale([s for s in data["sources"] if isinstance(s, str)])
        px, dt = px or found["pixel_size_um"], dt or found["frame_interval_s"]
    return px, dt


def _from_run(run: Path) -> Provenance:
    from mitogan.config import Config, load_config

    if not (run / "config.yaml").is_file():
        return _from_checkpoint(run / "checkpoint.pt", "run")
    cfg = load_config(run / "config.yaml", Config)
    px, dt = _scale_of(_data_json(run))
    ckpt = run / "checkpoint.pt"
    return Provenance("run", run, cfg.preprocess, cfg.image_size, px, dt,
                      checkpoint=ckpt if ckpt.is_file() else None, train_steps=cfg.train.steps)


def _trial_checkpoint(trial: Path) -> Path:
    ckpt = trial / "checkpoint.pt"
    if ckpt.is_file():
        return ckpt
    found = sorted(trial.glob("checkpoint_*/checkpoint.pt"))
    if not found:
        raise InputError(trial, "the trial left no checkpoint (it ended before its first one)")
    return found[-1]


def _from_checkpoint(p: Path, kind: str) -> Provenance:
    from mitogan.export import checked_checkpoint

    ckpt = _trial_checkpoint(p) if p.is_dir() else p
    folder = p if p.is_dir() else p.parent
    cfg = _config_from_flat(checked_checkpoint(ckpt).get("config") or {}, ckpt)
    px, dt = _scale_of(_data_json(folder))
    return Provenance(kind, p, cfg.preprocess, cfg.image_size, px, dt, checkpoint=ckpt, train_steps=cfg.train.steps)


def _from_search(search: Path) -> Provenance:
    best = search / "best"
    if kind_of(best) == "bundle":
        prov = _from_bundle(best)
    else:
        from mitogan.cli import plugin

        find = plugin("explain_source")
        if find is None:
            raise MitoganError(f"{search}: reading a search folder needs MitoGAN's search layer; install the project "
                               "(make install), or give its best/ bundle")
        prov = _from_checkpoint(Path(find(search)["trial_dir"]), "trial")
    prov.kind, prov.path = "search", search
    return prov


def _from_tiles(p: Path) -> Provenance:
    from mitogan.config import PreprocessConfig, load_config
    from mitogan.tiles import load_tiles, tile_pixel_size

    ts = load_tiles(p)
    flat = {k.removeprefix("preprocess."): v for k, v in (ts.meta.get("config") or {}).items()
            if k.startswith("preprocess.")}
    if p.is_dir() and (p / "config.yaml").is_file():
        cfg = load_config(p / "config.yaml", PreprocessConfig, section="preprocess")
    else:
        from mitogan.config import from_flat

        cfg = from_flat(PreprocessConfig, flat) if flat else PreprocessConfig()
    px = ts.meta.get("pixel_size_um")
    if px is None and tile_pixel_size(ts.meta):
        px = tile_pixel_size(ts.meta) * cfg.tile.scale
    return Provenance("tiles", p, cfg, ts.size, px, ts.meta.get("frame_interval_s"))


# ------------------------------------------------------------------------------------------ real data


def real_tiles(path, prov: Provenance | None, *, option: str = "--data", command: str | None = None,
               quiet: bool = False, example: str | None = None):
    """Real data as a ``TileSet`` of ``prov``'s tile size: tiles as they are; raw movies (a file, or a folder
    of them) through ``prov``'s own preprocessing, said in one line on stderr. Anything else is a one-line
    error naming the command to run instead (``example``: the corrected command line, if known)."""
    from mitogan.tiles import load_tiles

    p = Path(path)
    kind = kind_of(p)
    if kind in TILES_KINDS:
        ts = load_tiles(p)
        if prov is not None and ts.size != prov.image_size:
            raise InputError(p, f"tiles are {ts.size}x{ts.size} px but the {prov.label} takes "
                                f"{prov.image_size}x{prov.image_size} px tiles; give the raw movies instead (they are "
                                f"preprocessed as it did), or make tiles with `mitogan preprocess MOVIES --config "
                                f"{_q(prov.path)} --out TILES`")
        return ts
    if kind in RAW_KINDS and prov is not None:
        from mitogan.io import read_inputs
        from mitogan.preprocess import Pipeline

        videos = read_inputs([p], progress=not quiet)
        ts = Pipeline(prov.preprocess).run(videos, progress=not quiet)
        print(f"mitogan: {option} {p}: raw data, preprocessed as the {prov.label} was ({prov.steps()}; "
              f"{len(ts)} tiles of {ts.size} px)", file=sys.stderr)
        return ts
    raise wrong_input(p, kind, "real", option=option, command=command, example=example)


# ------------------------------------------------------------------------------------------ errors


def _q(p) -> str:
    return shlex.quote(str(p))


def _qf(p) -> str:
    """``_q`` for a path put into a template that is ``.format``-ted afterwards (its braces kept literally)."""
    return _q(p).replace("{", "{{").replace("}", "}}")


def _json_dict(f: Path) -> dict | None:
    """The JSON object in ``f``; None when it is missing, unreadable or not an object."""
    try:
        info = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _synth_info(p: Path) -> dict:
    for name in (".synth-run.json", "synth.json"):  # the run stamp names the bundle by its absolute path
        info = _json_dict(p / name)
        if info is not None:
            return info
    return {}


def synth_summary(path) -> dict:
    """The summary a finished synth run wrote (synth.json: its options and how many images it kept and dropped) for
    the output folder ``path`` or the folder holding the file ``path``; {} when there is none."""
    p = Path(path)
    return _json_dict((p if p.is_dir() else p.parent) / "synth.json") or {}


def synth_bundle(path) -> Path | None:
    """The bundle a synth output was made by, when it is still where the output says."""
    bundle = _synth_info(Path(path)).get("bundle")
    return Path(bundle) if bundle and kind_of(bundle) == "bundle" else None


def check_complete(path, *, option: str = "") -> None:
    """Refuse, in one line, an output another command left incomplete (today: a synth output without its
    synth.json, e.g. the disk filled or the run was killed), naming the command that completes it."""
    p = Path(path)
    if kind_of(p) == "synth-incomplete":
        raise incomplete_synth(p, option)


def incomplete_synth(p: Path, option: str = "") -> InputError:
    info = _synth_info(p)
    done = sum(1 for part in (p / "parts").glob("batch_*.csv") for line in part.read_text().splitlines() if line)
    resume = f"mitogan synth {_q(info.get('bundle', 'BUNDLE'))} --out {_q(p)} --resume (with the options it was " \
             "started with)"
    if info.get("resume_command"):  # as recorded, with --out naming where the folder is now
        argv = shlex.split(info["resume_command"])
        if "--out" in argv[:-1]:
            argv[argv.index("--out") + 1] = str(p)
        resume = " ".join(_q(a) for a in argv)
    return InputError(f"{option + ' ' if option else ''}{p}", f"an incomplete `mitogan synth` output ({done} images "
                      f"written{' of ' + str(info['n']) if info.get('n') else ''}, no synth.json: it stopped before "
                      f"the end); finish it with `{resume}`, then use it")


# what to run instead, by (kind given, what was wanted); {p} is the path given, {o} the option
_NEXT_FOR_TILES = {
    "movie": "make tiles first: `mitogan preprocess {p} --out TILES`, then {then}",
    "raw-folder": "make tiles first: `mitogan preprocess {p} --out TILES`, then {then}",
    **{k: "tiles are real data; make them with its preprocessing: `mitogan preprocess MOVIES --config {p} "
          "--out TILES`, then {then}" for k in SOURCE_KINDS},
}
_NEXT_FOR_REAL = {k: "{o} takes real data (movies, a folder of them, or tiles){ex}" for k in
                  (*SOURCE_KINDS, "synth", "evaluate", "explain", "other-file", "other-folder", "missing")}
_NEXT_FOR_SOURCE = {
    **{k: "give a run, bundle or search first and this as the data{ex}" for k in (*TILES_KINDS, *RAW_KINDS)},
}


def wrong_input(p: Path, kind: str, wanted: str, *, option: str, command: str | None = None,
                example: str | None = None) -> InputError:
    """The one-line error for ``p`` (of ``kind``) given where ``wanted`` was expected: ``"tiles"``,
    ``"real"`` (tiles or raw movies), ``"source"`` (a run/trial/search/bundle), ``"bundle"``, ``"images"``
    (generated images to evaluate), ``"raw"`` (movies to preprocess) or ``"exportable"`` (a run or search).
    ``example``: the corrected command line, when the caller knows it."""
    if kind == "synth-incomplete":
        return incomplete_synth(p, option)
    where = f"{option} {p}" if option and option.startswith("-") else str(p)
    what = describe(kind)
    q = _q(p)
    ex = f": `{example}`" if example else ""
    if kind == "missing" and wanted == "bundle":
        return InputError(where, "does not exist; " + _next_for_bundle(p, kind).format(p=q))
    if kind == "missing":
        return InputError(where, "does not exist" + (f" (e.g. `{example}`)" if example else ""))
    nxt = None
    if wanted == "tiles":
        nxt = _NEXT_FOR_TILES.get(kind)
        if kind == "synth":
            nxt = "tiles are real data: `mitogan preprocess MOVIES --out TILES`, then {then}"
        elif nxt is None:
            nxt = "make tiles with `mitogan preprocess MOVIES --out TILES`, then {then}"
    elif wanted == "real":
        nxt = _NEXT_FOR_REAL.get(kind)
    elif wanted == "source":
        nxt = _NEXT_FOR_SOURCE.get(kind) if example else "give a run folder, a bundle or a search folder"
    elif wanted == "bundle":
        nxt = _next_for_bundle(p, kind)
    elif wanted == "images":
        nxt = _next_for_images(p, kind)
    elif wanted == "raw":
        nxt = _next_for_raw(kind)
    elif wanted == "exportable":
        nxt = _next_for_export(p, kind)
    nxt = nxt or "see `" + (command or "mitogan") + " --help`"
    then = f"pass {option} TILES" if option.startswith("-") else "use TILES"
    return InputError(where, f"{what}; " + nxt.format(p=q, o=option or "it", ex=ex, then=then))


def _bundle_of_search(p: Path) -> str | None:
    return str(p / "best") if kind_of(p / "best") == "bundle" else None


def _next_for_bundle(p: Path, kind: str) -> str:
    if kind in ("run", "checkpoint"):
        return "export it first: `mitogan export {p} --out BUNDLE`, then `mitogan synth BUNDLE ...`"
    if kind == "trial":
        return (f"export it first: `mitogan export {_qf(p.parent)} --trial {_qf(p.name)} --out BUNDLE`, then "
                "`mitogan synth BUNDLE ...`")
    if kind == "search":
        return "export its best trial first: `mitogan export {p}` (writes {p}/best), then `mitogan synth {p} ...`"
    if kind == "synth":
        bundle = _synth_info(p).get("bundle")
        return f"it was made by the bundle {_qf(bundle)}: `mitogan synth {_qf(bundle)} ...`" if bundle else None
    return "a bundle comes from `mitogan export RUN_OR_SEARCH --out BUNDLE` (train one first: `mitogan train " \
           "--data TILES --out RUN`)"


def _next_for_images(p: Path, kind: str) -> str | None:
    if kind == "bundle" or (kind == "search" and _bundle_of_search(p)):
        return "generate images first: `mitogan synth {p} -n 1000 --format npy --out SYNTH`, then evaluate SYNTH"
    if kind in ("run", "checkpoint", "search", "trial"):
        return _next_for_bundle(p, kind)
    return None


def _next_for_raw(kind: str) -> str | None:
    if kind in TILES_KINDS:
        return "it is already preprocessed; train on it: `mitogan train --data {p} --out RUN`"
    if kind in SOURCE_KINDS:
        return ("give raw movies; to preprocess them as it did: `mitogan preprocess MOVIES --config {p} --out "
                "TILES`")
    if kind == "synth":
        return "synthetic images need no preprocessing; compare them with real data: `mitogan evaluate REAL {p} " \
               "--out OUT`"
    return None


def _next_for_export(p: Path, kind: str) -> str | None:
    if kind == "bundle":
        return "it is already exported; use it: `mitogan synth {p} -n 1000 --out SYNTH`"
    if kind == "trial":
        return f"export it from its search: `mitogan export {_qf(p.parent)} --trial {_qf(p.name)} --out BUNDLE`"
    if kind in RAW_KINDS:
        return "train on it first: `mitogan preprocess {p} --out TILES`, `mitogan train --data TILES --out RUN`, " \
               "then `mitogan export RUN --out BUNDLE`"
    if kind in TILES_KINDS:
        return "train on it first: `mitogan train --data {p} --out RUN`, then `mitogan export RUN --out BUNDLE`"
    return None
