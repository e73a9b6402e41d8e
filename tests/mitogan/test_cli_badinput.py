"""Bad input to every command (simulate, preprocess, train, evaluate, synth): exit status 2, exactly one line on
stderr, no traceback, and nothing in the folder changed (every file and folder hashed before and after).

The cases are built by category, not one per bug: output paths that are files, under files, dangling links,
folders of someone else's files, MitoGAN outputs of another kind or of this kind without --overwrite/--resume;
NaN/Inf/negative/huge values for every numeric option (read off the parser, so a new option is covered) and for
config values; missing, empty, corrupt, wrong-type and dangling-link inputs. Then the safe paths: --resume,
--overwrite (the earlier output is replaced only when the new one is complete), legacy folders, and
interrupts (SIGINT/SIGTERM → 130/143, one line, a state that resumes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitogan.cli import build_parser, main

COMMANDS = ("simulate", "preprocess", "train", "evaluate", "synth")
KINDS = {"simulate": "simulation", "preprocess": "preprocess", "train": "run", "evaluate": "evaluate",
         "synth": "synth"}
HUGE = "1" + "0" * 30


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace of valid inputs, bad inputs and existing outputs (MitoGAN's and a user's)."""
    from mitogan.config import Config, apply_overrides
    from mitogan.export import export_bundle
    from mitogan.fsutil import write_marker
    from mitogan.train import train
    from tests.mitogan.test_export import TINY

    d = tmp_path_factory.mktemp("ws")
    rng = np.random.default_rng(0)
    tiles = rng.uniform(-1, 1, (40, 1, 32, 32)).astype(np.float32)
    np.save(d / "tiles.npy", tiles)
    np.save(d / "fake.npy", rng.uniform(-1, 1, (40, 1, 32, 32)).astype(np.float32))
    np.save(d / "tiles64.npy", rng.uniform(-1, 1, (8, 1, 64, 64)).astype(np.float32))
    tifffile.imwrite(d / "stack.tif", rng.integers(0, 4000, (3, 64, 64)).astype(np.uint16), photometric="minisblack")
    (d / "empty.npy").write_bytes(b"")
    np.save(d / "pickled.npy", np.array([{"a": 1}, os.getpid], dtype=object), allow_pickle=True)  # never unpickled
    np.save(d / "flat.npy", np.zeros(10, np.float32))  # not images
    np.save(d / "nan.npy", np.full((40, 1, 32, 32), np.nan, np.float32))
    (d / "empty.tif").write_bytes(b"")
    (d / "corrupt.npy").write_bytes(b"\x93NUMPY" + rng.bytes(200))
    (d / "corrupt.tif").write_bytes(b"II*\x00" + rng.bytes(200))
    (d / "afile.txt").write_text("a user's file\n")
    (d / "dangling.npy").symlink_to(d / "nowhere.npy")
    (d / "withlink" / "sub").mkdir(parents=True)  # a data folder with one good stack, a dead link and a loop
    shutil.copy(d / "stack.tif", d / "withlink" / "stack.tif")
    (d / "withlink" / "gone.tif").symlink_to(d / "nowhere.tif")
    (d / "withlink" / "sub" / "up").symlink_to(d / "withlink")
    (d / "dangling_out").symlink_to(d / "no_such_folder")
    (d / "bad.yaml").write_text("train: [1, 2\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "nan.yaml").write_text("optim:\n  lr_g: .nan\n")
    mine = d / "mine"  # a folder of the user's own files, named like ours
    (mine / "images").mkdir(parents=True)
    (mine / "images" / "img_00000000.png").write_bytes(b"my picture")
    (mine / "manifest.csv").write_text("mine\n")
    (mine / "checkpoint.pt").write_bytes(b"my checkpoint")
    for kind in KINDS.values():  # an earlier MitoGAN output of each kind
        write_marker(d / f"out_{kind}", kind)
        (d / f"out_{kind}" / "result.txt").write_text(kind)
    write_marker(d / "evilrun", "run")  # a run whose checkpoint is a pickle that would call a function
    import pickle

    (d / "evilrun" / "checkpoint.pt").write_bytes(pickle.dumps({"version": 1, "step": os.getpid}))
    (d / "evilrun" / "config.yaml").write_text("{}\n")
    (d / "legacy").mkdir()  # a run folder from before markers
    (d / "legacy" / "checkpoint.pt").write_bytes(b"old")
    (d / "legacy" / "config.yaml").write_text("{}\n")
    run = d / "_run"
    train(apply_overrides(Config(), TINY), tiles, out_dir=run)
    export_bundle(run / "checkpoint.pt", d / "bundle")
    import torch  # the run as another MitoGAN version would leave it: its discriminator takes a setting unknown here

    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["discriminator_config"]["dark_view"] = True
    torch.save(ckpt, run / "checkpoint.pt")
    run.rename(d / "newerrun")
    _bad_bundle(d / "bundle", d / "badbundle", latent_dim=float("nan"))
    _bad_bundle(d / "bundle", d / "badbundle2", arch="vit")
    _bad_bundle(d / "bundle", d / "badbundle3", top={"output": {"intensity": {"lo": float("nan"), "hi": 1.0}}})
    _bad_bundle(d / "bundle", d / "badbundle4", top={"pixel_size_um": -1})
    _bad_bundle(d / "bundle", d / "badbundle5", style_mixing=0.5)  # a generator setting this MitoGAN does not know
    broken = d / "brokenbundle"
    shutil.copytree(d / "bundle", broken)
    with open(next(broken.glob("generator.*")), "r+b") as f:
        f.seek(200)
        f.write(b"\xff\xfe")
    return d


def _bad_bundle(src: Path, dst: Path, top: dict | None = None, **generator) -> None:
    """A bundle whose config.json has bad settings, with matching checksums (validated, not corrupt)."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["generator"].update(generator)
    cfg.update(top or {})
    (dst / "config.json").write_text(json.dumps(cfg))
    lines = []
    for line in (dst / "checksums.sha256").read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name == "config.json":
            digest = hashlib.sha256((dst / name).read_bytes()).hexdigest()
        lines.append(f"{digest}  {name}")
    (dst / "checksums.sha256").write_text("\n".join(lines) + "\n")


def tree_state(root: Path) -> dict:
    """Every path under root (links not followed) with its type, mode and content hash."""
    state = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                state[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                state[str(p)] = ("dir", st.st_mode)
            else:
                state[str(p)] = ("file", st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return state


# ------------------------------------------------------------------------------------------------ cases

# a valid command line for each command, with OUT where the output goes: each case changes one thing
VALID = {
    "simulate": ["simulate", "--out", "OUT", "--videos", "1", "--frames", "2", "--size", "32", "-q"],
    "preprocess": ["preprocess", "WS/stack.tif", "--out", "OUT", "--no-cache", "-q", "--set", "tile.size=32"],
    "train": ["train", "--data", "WS/tiles.npy", "--out", "OUT", "--smoke", "--no-eval", "-q",
              "--set", "preprocess.tile.size=32"],
    "evaluate": ["evaluate", "WS/tiles.npy", "WS/fake.npy", "--out", "OUT", "-q", "--k", "3"],
    "synth": ["synth", "WS/bundle", "--out", "OUT", "-n", "4", "-q"],
}


def _set(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with ``option``'s value replaced (or the option added)."""
    argv = list(argv)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv


def _numeric_options(command: str) -> list[str]:
    """Options of ``command`` that take a number (read off the parser), plus string options that hold one."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    opts = [a.option_strings[-1] if a.option_strings[-1].startswith("--") else a.option_strings[0]
            for a in sub._actions if a.option_strings and a.type in (int, float)]
    return opts + {"preprocess": ["--channel"]}.get(command, [])


def _cases():
    out_cases = {  # where OUT points: (path, what the message says)
        "a file": ("WS/afile.txt", "is a file"),
        "under a file": ("WS/afile.txt/sub", "is a file"),
        "a dangling link": ("WS/dangling_out", "dangling symbolic link"),
        "a user's folder": ("WS/mine", "did not write"),
        "where nothing can be written": ("/proc/mitogan-test-out", "cannot write in /proc"),  # refused even as root
    }
    for cmd in COMMANDS:
        for what, (path, msg) in out_cases.items():
            yield f"{cmd}: OUT is {what}", _set(VALID[cmd], "--out", path), msg
        other = "run" if cmd != "train" else "synth"
        yield f"{cmd}: OUT is another kind of output", _set(VALID[cmd], "--out", f"WS/out_{other}"), "not a"
        yield (f"{cmd}: OUT is an earlier output, no --overwrite", _set(VALID[cmd], "--out", f"WS/out_{KINDS[cmd]}"),
               "--overwrite")
        for option in _numeric_options(cmd):
            for value in ("nan", "inf", "-inf", "-1", HUGE):
                yield f"{cmd}: {option} {value}", _set(VALID[cmd], option, value), None
    config_values = {"train": ["optim.lr_g=nan", "train.seed=1e23", "preprocess.tile.scale=nan", "train.steps=-1",
                               "optim.lr_d=inf", "train.batch_size=" + HUGE, "model.arch=vit", "nokey=1"],
                     "preprocess": ["tile.scale=nan", "denoise.h=inf", "tile.stride=-5", "normalize.low=1e400"],
                     "simulate": ["bead_prob=nan", "gain=inf", "max_branches=" + HUGE]}
    for cmd, values in config_values.items():
        for v in values:
            yield f"{cmd}: --set {v}", VALID[cmd] + ["--set", v], v.split("=")[0]
    for cfg in ("bad.yaml", "list.yaml", "nan.yaml", "missing.yaml", "afile.txt"):
        yield f"train: --config {cfg}", VALID["train"] + ["--config", f"WS/{cfg}"], None
    inputs = ["missing.npy", "empty.npy", "corrupt.npy", "dangling.npy", "afile.txt", "mine", "tiles64.npy",
              "pickled.npy", "flat.npy", "nan.npy"]
    for name in inputs:
        yield f"train: --data {name}", _set(VALID["train"], "--data", f"WS/{name}"), None
        yield f"evaluate: REAL {name}", ["evaluate", f"WS/{name}", "WS/fake.npy", "--out", "OUT"], None
        yield f"evaluate: FAKE {name}", ["evaluate", "WS/tiles.npy", f"WS/{name}", "--out", "OUT"], None
        yield f"synth: --reference {name}", VALID["synth"] + ["--reference", f"WS/{name}"], None
    yield "train: --data a TIFF stack, not tiles", _set(VALID["train"], "--data", "WS/stack.tif"), None
    yield ("preprocess: --strict over a dead link",
           [a.replace("WS/stack.tif", "WS/withlink") for a in VALID["preprocess"]] + ["--strict"], "symbolic link")
    for name in ("missing.tif", "empty.tif", "corrupt.tif", "dangling.npy", "afile.txt", "mine"):
        yield f"preprocess: INPUT {name}", ["preprocess", f"WS/{name}", "--out", "OUT", "-q"], None
    for name in ("missing", "afile.txt", "mine", "badbundle", "badbundle2", "badbundle3", "badbundle4", "brokenbundle",
                 "dangling.npy"):
        yield f"synth: BUNDLE {name}", _set(VALID["synth"][:1], "--out", "OUT") + [f"WS/{name}"], None
    unknown = "does not know (style_mixing)"  # a bundle or run from another MitoGAN version: named, before any work
    yield "synth: BUNDLE from another version", _set(VALID["synth"][:1], "--out", "OUT") + ["WS/badbundle5"], unknown
    unknown = "does not know (dark_view)"
    yield "export: a run from another version", ["export", "WS/newerrun", "--out", "OUT", "-q"], unknown
    yield "train: --resume a run from another version", _set(VALID["train"], "--out", "WS/newerrun") + ["--resume"], \
        unknown
    for option, value in (("--device", "tpu"), ("--device", "cuda:99"), ("--format", "jpeg")):
        yield f"synth: {option} {value}", _set(VALID["synth"], option, value), None
    yield "synth: --stack without tiff", VALID["synth"] + ["--stack"], "--stack"
    yield "synth: more npy than memory", _set(VALID["synth"], "-n", "100000000") + ["--format", "npy"], "-n 100000000"
    yield "synth: --min-novelty without --reference", VALID["synth"] + ["--min-novelty", "0.1"], "--reference"
    yield "evaluate: --holdout 0.9", _set(VALID["evaluate"], "--holdout", "0.9"), "--holdout"
    yield "preprocess: --preview is a folder", VALID["preprocess"] + ["--preview", "WS/mine"], "--preview"
    yield "preprocess: --preview unwritable", VALID["preprocess"] + ["--preview", "/proc/x/p.png"], "--preview"
    yield "simulate: --preview unwritable", VALID["simulate"] + ["--preview", "/proc/x/p.png"], "--preview"
    yield "simulate: absurd size", _set(_set(VALID["simulate"], "--frames", "10000"), "--size", "4096"), "GiB"
    yield ("train: --resume from a pickle that calls code", _set(VALID["train"], "--out", "WS/evilrun") + ["--resume"],
           "checkpoint")
    import torch

    if not torch.cuda.is_available():
        yield "train: cuda without a GPU", VALID["train"] + ["--set", "train.device=cuda"], "no CUDA GPU"
        yield "synth: cuda without a GPU", _set(VALID["synth"], "--device", "cuda"), "no CUDA GPU"
    yield "train: --resume where nothing ran", VALID["train"] + ["--resume"], "no run to resume"
    yield "train: --resume and --overwrite", VALID["train"] + ["--resume", "--overwrite"], "one of them"
    yield "no such command", ["nosuch"], None
    yield "unknown option", VALID["train"] + ["--stepz", "3"], None


CASES = list(_cases())


@pytest.mark.parametrize("argv, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(ws, tmp_path, capsys, argv, message):
    out = tmp_path / "new_out"
    argv = [a.replace("WS/", f"{ws}/").replace("OUT", str(out)) for a in argv]
    before = tree_state(ws)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(("mitogan: error: ", "mitogan ")), err
    if message:
        assert message in lines[0]
    assert tree_state(ws) == before  # nothing created, changed or removed
    assert not out.exists()  # refused before any output was made


def test_every_numeric_option_of_every_command_is_in_the_table():
    covered = {(c[0].partition(": ")[0], c[0].partition(": ")[2].split(" ")[0]) for c in CASES}
    for cmd in COMMANDS:
        for option in _numeric_options(cmd):
            assert (cmd, option) in covered
    assert len(_numeric_options("synth")) >= 5 and len(_numeric_options("evaluate")) >= 5  # the scan finds them


def test_config_rejects_non_finite_and_huge_values_for_every_field():
    from mitogan.config import Config, apply_overrides, to_flat
    from mitogan.errors import ConfigError

    for key, value in to_flat(Config()).items():
        kind = type(value) if value is not None else int
        if kind in (float, int) and not isinstance(value, bool):
            for bad in ("nan", "inf", "-inf", HUGE, "1e23"):
                if kind is float and bad in (HUGE, "1e23"):
                    continue  # a huge float may be in range (e.g. no upper bound); NaN/Inf never are
                with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                    apply_overrides(Config(), [f"{key}={bad}"])


# ---------------------------------------------------------------------------------- the safe paths


# three steps, one checkpoint: the shortest real run
SHORT = ["--set", "train.steps=3", "--set", "train.checkpoint_every=3", "--set", "train.sample_every=3",
         "--set", "train.report_every=3"]


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr()


@pytest.mark.slow
def test_train_refuses_a_finished_run_then_resumes_or_overwrites_it(ws, tmp_path, capsys):
    run = tmp_path / "run"
    base = VALID["train"][:2] + [ws / "tiles.npy"] + ["--smoke", "--no-eval", "-q", "--set",
                                                      "preprocess.tile.size=32", "--out", run] + SHORT
    assert _run(base, capsys)[0] == 0
    first = (run / "checkpoint.pt").read_bytes()
    rc, cap = _run(base, capsys)
    assert rc == 2 and "--resume" in cap.err and "--overwrite" in cap.err
    assert (run / "checkpoint.pt").read_bytes() == first  # untouched
    assert _run(base + ["--resume", "--set", "train.steps=5"], capsys)[0] == 0
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()][-1] == 5
    assert _run(base + ["--overwrite"], capsys)[0] == 0
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()][-1] == 3
    assert not list(tmp_path.glob(".run.*"))  # no temporary or old folder left beside it


@pytest.mark.slow
def test_a_legacy_run_folder_resumes_and_gets_its_marker(ws, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--data", ws / "tiles.npy", "--smoke", "--no-eval", "-q", "--set", "preprocess.tile.size=32",
            "--out", run] + SHORT
    assert _run(base, capsys)[0] == 0
    (run / ".mitogan.json").unlink()  # as written by the previous version
    rc, cap = _run(base, capsys)
    assert rc == 2 and "--resume" in cap.err  # recognised as a run, not as someone else's folder
    assert _run(base + ["--resume", "--set", "train.steps=4"], capsys)[0] == 0
    assert json.loads((run / ".mitogan.json").read_text())["kind"] == "run"


@pytest.mark.slow
def test_overwrite_that_fails_keeps_the_earlier_output(ws, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = ["evaluate", ws / "tiles.npy", ws / "fake.npy", "--out", out, "-q", "--k", "3"]
    assert _run(argv, capsys)[0] == 0
    before = tree_state(out)
    rc, cap = _run(["evaluate", ws / "tiles.npy", ws / "tiles64.npy", "--out", out, "-q", "--overwrite"], capsys)
    assert rc == 2 and tree_state(out) == before  # the new output failed: the old one is intact
    assert _run(argv + ["--overwrite", "--seed", "1"], capsys)[0] == 0
    strict = json.loads((out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert strict["seed"] == 1  # and no NaN/Infinity anywhere in it
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # the history of evaluations is kept


def test_synth_overwrite_replaces_only_a_complete_output(ws, tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["synth", ws / "bundle", "-n", "6", "--batch-size", "4", "-q", "--out", out]
    assert _run(argv, capsys)[0] == 0
    first = tree_state(out)
    assert _run(argv + ["--overwrite", "--reference", ws / "tiles64.npy"], capsys)[0] == 2  # fails: old kept
    assert tree_state(out) == first
    assert _run(argv + ["--overwrite", "--seed", "1", "--format", "npy"], capsys)[0] == 0
    assert (out / "images.npy").is_file() and not (out / "images").exists()  # the old PNGs went with the old output
    assert json.loads((out / "synth.json").read_text())["out"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary or old folder left


def test_preprocess_lists_what_it_skipped(ws, tmp_path, capsys):
    out = tmp_path / "pre"
    argv = [a.replace("WS/stack.tif", str(ws / "withlink")).replace("OUT", str(out)) for a in VALID["preprocess"]]
    rc, cap = _run(argv + ["--set", "tile.min_foreground=0", "--set", "quality.drop_flagged=false"], capsys)
    assert rc == 0, cap.err
    assert f"skipped {ws / 'withlink' / 'gone.tif'}: dangling symbolic link" in cap.out
    assert f"skipped {ws / 'withlink' / 'sub' / 'up'}: symbolic link loop" in cap.out
    assert (out / "tiles.npz").is_file() and json.loads((out / ".mitogan.json").read_text())["kind"] == "preprocess"


# ------------------------------------------------------------------------------------------- interrupts


def _signal_when(path: Path, signum: int, timeout: float = 60.0) -> threading.Thread:
    """Send ``signum`` to this process as soon as ``path`` exists (the command runs in the main thread)."""
    def watch():
        end = time.monotonic() + timeout
        while not path.exists() and time.monotonic() < end:
            time.sleep(0.001)
        os.kill(os.getpid(), signum)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.slow
def test_sigterm_stops_train_with_143_keeping_a_checkpoint_that_resumes(ws, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", ws / "tiles.npy", "--smoke", "--no-eval", "-q", "--out", run,
            "--set", "preprocess.tile.size=32", "--set", "train.steps=100000", "--set", "train.checkpoint_every=3"]
    watcher = _signal_when(run / "checkpoint.pt", signal.SIGTERM)
    rc, cap = _run(argv, capsys)
    watcher.join()
    lines = cap.err.strip().splitlines()
    assert rc == 143 and len(lines) == 1 and "Resume with: mitogan train" in lines[0] and "--resume" in lines[0]
    from mitogan.train import load_checkpoint

    step = load_checkpoint(run / "checkpoint.pt")["step"]
    assert 3 <= step < 100000
    assert _run(argv[:-6] + ["--set", "preprocess.tile.size=32", "--set", f"train.steps={step + 2}", "--resume"],
                capsys)[0] == 0
    assert load_checkpoint(run / "checkpoint.pt")["step"] == step + 2


@pytest.mark.slow
def test_sigint_stops_synth_with_130_and_resume_gives_the_uninterrupted_images(ws, tmp_path, capsys):
    argv = ["synth", ws / "bundle", "-n", "120", "--batch-size", "4", "-q"]
    assert _run(argv + ["--out", tmp_path / "full"], capsys)[0] == 0
    part = tmp_path / "part"
    watcher = _signal_when(part / "parts" / "batch_000001.csv", signal.SIGINT)
    rc, cap = _run(argv + ["--out", part], capsys)
    watcher.join()
    lines = cap.err.strip().splitlines()
    assert rc == 130 and len(lines) == 1 and "--resume" in lines[0]
    assert not (part / "manifest.csv").exists()
    rc, cap = _run(argv + ["--out", part], capsys)
    assert rc == 2 and "--resume" in cap.err  # not silently resumed nor overwritten
    assert _run(argv + ["--out", part, "--resume"], capsys)[0] == 0
    assert (part / "manifest.csv").read_text() == (tmp_path / "full" / "manifest.csv").read_text()
    full = sorted((tmp_path / "full" / "images").iterdir())
    assert [p.read_bytes() for p in full] == [(part / "images" / p.name).read_bytes() for p in full]


def test_an_interrupted_simulate_leaves_nothing_half_written(tmp_path, capsys):
    out = tmp_path / "sim"

    def watch():  # interrupt once the first video is written into the temporary folder
        end = time.monotonic() + 60
        while not list(tmp_path.glob(".sim.*/video_000.json")) and time.monotonic() < end:
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGINT)

    # the command runs as it does in its own process: Python's own SIGINT handler (an earlier test in this
    # process, e.g. one that ran Ray Tune in-process, may have left another one installed)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        rc, cap = _run(["simulate", "--out", out, "--videos", "200", "--frames", "3", "--size", "64", "-q"], capsys)
        t.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert rc == 130 and cap.err.strip() == "mitogan: interrupted"
    assert list(tmp_path.iterdir()) == []  # neither a partial output nor the temporary folder is left


def test_quiet_hides_the_reading_bar_of_a_large_folder(tmp_path, capsys):
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(50):  # 50 files: the size at which the "reading" bar appears
        cv2.imwrite(str(frames / f"f{i:02d}.png"), rng.integers(0, 255, (64, 64), dtype=np.uint8))
    rc, out = _run(["preprocess", frames, "--out", tmp_path / "p", "-q", "--set", "tile.size=32", "--no-cache",
                    "--set", "quality.min_snr=0", "--set", "tile.min_foreground=0",
                    "--samples", "1"], capsys)
    assert rc == 0, out.err
    assert "reading" not in out.err and "it/s" not in out.err and "file/s" not in out.err
