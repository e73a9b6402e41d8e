"""One answer to "what does this path stand for, with which preprocessing and pixel size" for every output of
one chain of commands (simulate -> preprocess -> train -> export -> synth, and a search's trial and best/)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitogan.cli import main
from mitogan.config import to_dict
from mitogan.resolve import kind_of, provenance, real_tiles
from mitogan.simulate import PIXEL_SIZE_UM
from mitogan.tiles import load_tiles


def test_kind_of_names_every_output(outputs):
    expected = {"raw": "raw-folder", "movie": "movie", "tiles": "preprocess", "tilesfile": "tiles", "run": "run",
                "bundle": "bundle", "synth": "synth", "partial": "synth-incomplete", "search": "search",
                "trial": "trial"}
    assert {k: kind_of(outputs[k]) for k in expected} == expected
    assert kind_of(Path(outputs["bundle"]) / "config.json") == "bundle"  # the file the user passed
    assert kind_of(Path(outputs["root"]) / "nothing") == "missing"


@pytest.mark.parametrize("name", ["tiles", "tilesfile", "run", "bundle", "search", "trial", "synth", "partial"])
def test_every_output_resolves_to_the_preprocessing_and_pixel_size_of_its_data(outputs, name):
    made = provenance(outputs["tiles"])  # the preprocessing the chain's tiles were made with
    prov = provenance(outputs[name])
    assert to_dict(prov.preprocess) == to_dict(made.preprocess) and prov.preprocess.tile.size == 32
    assert prov.image_size == 32
    assert prov.pixel_size_um == pytest.approx(PIXEL_SIZE_UM)  # the simulator's own scale, carried along


def test_raw_data_goes_through_the_sources_own_preprocessing(outputs, capsys):
    ts = real_tiles(outputs["raw"], provenance(outputs["bundle"]), option="--data", quiet=True)
    # the very tiles `mitogan preprocess` made for training, from the same movies
    np.testing.assert_array_equal(ts.tiles, load_tiles(outputs["tiles"]).tiles)
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and "raw data, preprocessed as the bundle" in line and "32 px" in line


def test_preprocess_config_takes_the_bundles_config_json(outputs, tmp_path, capsys):
    # the command: `mitogan preprocess MOVIE --config BUNDLE/config.json` failed on `discriminator`
    bundle_json = str(Path(outputs["bundle"]) / "config.json")
    assert main(["preprocess", outputs["raw"], "--config", bundle_json, "--out", str(tmp_path / "t"), "-q"]) == 0
    np.testing.assert_array_equal(load_tiles(tmp_path / "t").tiles, load_tiles(outputs["tiles"]).tiles)
    assert main(["preprocess", outputs["movie"], "--config", outputs["search"], "--out", str(tmp_path / "s"),
                 "-q"]) == 0
    assert load_tiles(tmp_path / "s").size == 32 and "preprocessing as the search" in capsys.readouterr().out


def test_pixel_size_reaches_bundle_card_and_synthetic_tiff(outputs, tmp_path, capsys):
    config = json.loads((Path(outputs["bundle"]) / "config.json").read_text())
    assert config["pixel_size_um"] == pytest.approx(PIXEL_SIZE_UM) and config["frame_interval_s"] == 1.0
    assert f"{PIXEL_SIZE_UM:.4g} µm per generated pixel" in (Path(outputs["bundle"]) / "README.md").read_text()
    assert main(["synth", outputs["bundle"], "-n", "3", "--format", "tiff", "--stack", "--out",
                 str(tmp_path / "s"), "-q"]) == 0
    assert f"pixel size {PIXEL_SIZE_UM:.4g} µm" in capsys.readouterr().out  # not "unknown" any more
    from mitogan.io import physical_scale

    assert physical_scale(tmp_path / "s" / "images.tif")["pixel_size_um"] == pytest.approx(PIXEL_SIZE_UM)


def test_a_search_trial_bundle_finds_the_pixel_size_from_its_sources(outputs, tmp_path):
    from mitogan.export import export_bundle

    trial = Path(outputs["trial"])
    data = json.loads((trial / "data.json").read_text())
    assert "pixel_size_um" not in data  # as search trials write it
    bundle = export_bundle(trial / "checkpoint.pt", tmp_path / "b", source={"data": data["sources"]})
    assert json.loads((bundle / "config.json").read_text())["pixel_size_um"] == pytest.approx(PIXEL_SIZE_UM)


def test_preprocess_pixel_size_option_for_data_that_does_not_say(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = (rng.poisson(50, (3, 64, 64)) + 400 * (rng.random((3, 64, 64)) > 0.8)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "plain.tif", frames, photometric="minisblack")  # no resolution at all
    args = ["preprocess", str(tmp_path / "plain.tif"), "--out", str(tmp_path / "t"), "--set", "tile.size=32",
            "--set", "tile.min_foreground=0", "-q", "--no-cache"]
    assert main(args) == 0
    assert load_tiles(tmp_path / "t").meta.get("pixel_size_um") is None
    assert "pixel size unknown (pass --pixel-size UM)" in capsys.readouterr().out
    assert main(args[:3] + [str(tmp_path / "t2")] + args[4:] + ["--pixel-size", "0.11", "--frame-interval", "2"]) == 0
    meta = load_tiles(tmp_path / "t2").meta
    assert meta["pixel_size_um"] == 0.11 and meta["frame_interval_s"] == 2.0


def test_an_interrupted_run_is_not_exported_as_finished(outputs, tmp_path, capsys):
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(outputs["run"], run)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["step"] = 6  # of 12: stopped half way
    torch.save(ckpt, run / "checkpoint.pt")
    assert main(["export", str(run), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "stopped at step 6 of 12" in err and not (tmp_path / "b").exists()
    resume = err.split("finish it with `", 1)[1].split("`", 1)[0]
    assert shlex.split(resume)[:5] == ["mitogan", "train", "--out", outputs["run"], "--resume"]
    assert main(["export", str(run), "--out", str(tmp_path / "b"), "--allow-incomplete"]) == 0


def test_mitogan_still_never_imports_the_search_layer_to_resolve():
    code = ("import sys, mitogan.resolve, mitogan.cli.preprocess, mitogan.cli.evaluate; "
            "assert not any(m == 'search' or m.startswith(('search.', 'ray', 'optuna')) for m in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_evaluate_preprocesses_raw_real_data_as_the_source_given(outputs, tmp_path, capsys):
    fake = str(Path(outputs["synth"]) / "images.npy")  # bare generated images: no bundle to find
    assert main(["evaluate", outputs["raw"], fake, "--source", outputs["run"], "--out", str(tmp_path / "e"),
                 "--no-c2st", "-q"]) == 0
    err = capsys.readouterr().err
    assert f"REAL {outputs['raw']}: raw data, preprocessed as the run {outputs['run']} was" in err
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    # the preprocessed movies (empty tiles skipped, as for training), not the raw frames cut up (9 per frame)
    assert metrics["n_real"] == len(load_tiles(outputs["tiles"])) != 9 * 18
    assert main(["evaluate", outputs["raw"], fake, "--source", outputs["tiles"], "--out", str(tmp_path / "f")]) == 2
    assert "--source" in capsys.readouterr().err


def test_train_resume_and_explain_take_raw_movies_through_the_runs_preprocessing(outputs, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(outputs["run"], run)
    assert main(["train", "--data", outputs["raw"], "--out", str(run), "--resume", "--smoke", "--no-eval", "-q",
                 "--set", "preprocess.tile.size=32", "--set", "train.steps=14"]) == 0
    err = capsys.readouterr().err
    assert f"--data {outputs['raw']}: raw data, preprocessed as the run {run} was" in err
    import torch

    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 14
    assert main(["explain", outputs["bundle"], "--data", outputs["movie"], "--out", str(tmp_path / "ex"),
                 "--max-tiles", "8", "--no-generated", "-q"]) == 0
    assert f"--data {outputs['movie']}: raw data, preprocessed as the bundle" in capsys.readouterr().err
    assert json.loads((tmp_path / "ex" / "summary.json").read_text())["n_real"] == 8


def test_evaluate_says_when_raw_real_data_is_not_preprocessed(outputs, tmp_path, capsys):
    import shutil

    synth = tmp_path / "synth"
    shutil.copytree(outputs["synth"], synth)
    stamp = json.loads((synth / ".synth-run.json").read_text())
    (synth / ".synth-run.json").write_text(json.dumps({**stamp, "bundle": str(tmp_path / "gone")}))
    (synth / "synth.json").write_text(json.dumps({"bundle": str(tmp_path / "gone")}))
    assert main(["evaluate", outputs["raw"], str(synth), "--out", str(tmp_path / "e"), "--no-c2st", "-q"]) == 0
    err = capsys.readouterr().err
    assert "raw frames, cut into tiles without preprocessing (pass --source RUN_OR_BUNDLE_OR_SEARCH" in err
