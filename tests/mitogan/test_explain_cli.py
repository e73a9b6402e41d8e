"""`mitogan explain` end to end on a real tiny training run and on its exported bundle, and its one-line
refusals (bundle without a discriminator, tiles of another size, folders it must not write into)."""

import hashlib
import json

import numpy as np
import pytest

from mitogan.cli import main
from mitogan.explain.validate import simulated_tiles
from mitogan.tiles import TileSet, save_tiles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """preprocess-like tiles (simulated, 32 px) -> `mitogan train --smoke` -> `mitogan export`."""
    d = tmp_path_factory.mktemp("explain")
    tiles = simulated_tiles({"bead_prob": 0.5, "branch_prob": 0.5}, videos=2, frames=3, frame_size=128, tile=32, seed=0)
    save_tiles(d / "data" / "tiles.npz", TileSet.from_array(tiles))
    assert main(["train", "--smoke", "--no-eval", "-q", "--set", "preprocess.tile.size=32", "--data",
                 str(d / "data"), "--out", str(d / "run")]) == 0
    assert main(["export", str(d / "run"), "--out", str(d / "bundle")]) == 0
    return d


def _explain(chain, src, out, *extra):
    return main(["explain", str(chain / src), "--data", str(chain / "data"), "--out", str(out), "--max-tiles", "24",
                 "-q", *extra])


@pytest.mark.parametrize("src", ["run", "bundle"])
def test_explain_writes_tables_overlays_and_html(chain, tmp_path, src):
    out = tmp_path / "ex"
    assert _explain(chain, src, out) == 0
    for name in ("ranked.csv", "ranked.md", "geometry.csv", "features.csv", "edits.csv", "summary.json",
                 "index.html", "overlay_real.png", "overlay_generated.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_real"] == 24 and summary["n_fake"] == 24 and summary["image_size"] == 32
    checks = {c["method"]: c["passed"] for c in summary["sanity"]}
    assert set(checks) == {"integrated_gradients", "grad_cam", "gradient"}
    # a method that failed the sanity check appears nowhere in the table
    lines = (out / "ranked.csv").read_text().splitlines()
    header = lines[0].split(",")
    methods = {row.split(",")[header.index("method")] for row in lines[1:]}
    assert not {m for m, ok in checks.items() if not ok} & methods
    assert {"geometry", "feature", "edit"} <= {row.split(",")[header.index("level")] for row in lines[1:]}
    assert (out / "overlay_real.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _resign(bundle):
    lines = [line.split("  ")[1] for line in (bundle / "checksums.sha256").read_text().splitlines()]
    names = [n for n in lines if (bundle / n).exists()]
    (bundle / "checksums.sha256").write_text("".join(
        f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()}  {n}\n" for n in names))


def test_bundle_without_discriminator_is_one_line(chain, tmp_path, capsys):
    import shutil

    old = tmp_path / "old-bundle"
    shutil.copytree(chain / "bundle", old)
    (old / "discriminator.safetensors").unlink()
    cfg = json.loads((old / "config.json").read_text())
    cfg.pop("discriminator")
    (old / "config.json").write_text(json.dumps(cfg))
    _resign(old)
    rc = main(["explain", str(old), "--data", str(chain / "data"), "--out", str(tmp_path / "ex")])
    err = capsys.readouterr().err
    assert rc == 2 and "has no discriminator" in err and err.count("\n") == 1 and "Traceback" not in err


def test_tiles_of_another_size_are_one_line(chain, tmp_path, capsys):
    save_tiles(tmp_path / "t64.npz", TileSet.from_array(np.zeros((4, 1, 64, 64), np.float32)))
    rc = main(["explain", str(chain / "run"), "--data", str(tmp_path / "t64.npz"), "--out", str(tmp_path / "ex")])
    err = capsys.readouterr().err
    assert rc == 2 and "64x64 px" in err and "32x32" in err and err.count("\n") == 1
    assert not (tmp_path / "ex").exists()  # refused before anything was written


def test_not_a_source_is_one_line(chain, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["explain", str(tmp_path / "empty"), "--data", str(chain / "data"), "--out", str(tmp_path / "ex")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_out_is_never_a_folder_of_others_files_and_overwrite_replaces_its_own(chain, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert _explain(chain, "run", mine) == 2 and (mine / "notes.txt").read_text() == "keep"
    out = tmp_path / "ex"
    assert _explain(chain, "run", out) == 0
    assert _explain(chain, "run", out) == 2 and "--overwrite" in capsys.readouterr().err
    assert _explain(chain, "run", out, "--overwrite") == 0
    assert json.loads((out / ".mitogan.json").read_text())["kind"] == "explain"


def test_wandb_offline_run_gets_the_images_and_table(chain, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    out = tmp_path / "ex"
    assert _explain(chain, "run", out, "--wandb") == 0
    runs = list(out.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
    media = list(out.glob("wandb/offline-run-*/files/media/images/**/*.png"))
    tables = list(out.glob("wandb/offline-run-*/files/media/table/**/*.table.json"))
    assert len(media) >= 2 and tables


def test_a_search_folder_is_explained_through_its_best_trial(chain, tmp_path, capsys):
    """The search layer's `explain_source` plugin picks the best finished trial (folders laid out as Ray
    Tune writes them: params.json, result.json lines, the trainer's checkpoint.pt)."""
    import shutil

    search = tmp_path / "search"
    for name, primary in (("trial_a", 0.9), ("trial_b", 0.2)):
        t = search / name
        t.mkdir(parents=True)
        (t / "params.json").write_text(json.dumps({"train.steps": 12}))
        (t / "result.json").write_text(json.dumps({"step": 12, "primary": primary, "trial_id": name}) + "\n")
        shutil.copy(chain / "run" / "checkpoint.pt", t / "checkpoint.pt")
    (search / "search.json").write_text("{}")
    out = tmp_path / "ex"
    assert _explain(chain, "run", out) == 0  # warm: the same checkpoint explained directly
    rc = main(["explain", str(search), "--data", str(chain / "data"), "--out", str(tmp_path / "ex2"),
               "--max-tiles", "24", "-q"])
    assert rc == 0
    summary = json.loads((tmp_path / "ex2" / "summary.json").read_text())
    from mitogan.metrics import PRIMARY_MODE
    assert summary["source_trial_id"] == ("trial_b" if PRIMARY_MODE == "min" else "trial_a")
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "search.json").write_text("{}")
    capsys.readouterr()
    rc = main(["explain", str(tmp_path / "nothing"), "--data", str(chain / "data"), "--out", str(tmp_path / "ex3")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_generated_tiles_are_those_synth_draws_at_the_bundles_truncation(chain, tmp_path):
    """A bundle whose search trial kept a truncation factor: explain's generated tiles are synth's images i, drawn at
    that factor (latent i x 0.5), and the summary says the factor."""
    import torch

    from mitogan.cli.explain import _generated
    from mitogan.explain.source import load_source
    from mitogan.export import export_bundle

    bundle = export_bundle(chain / "run", tmp_path / "half", metrics={"truncation": 0.5})
    src = load_source(bundle)
    assert src.truncation == 0.5 and load_source(chain / "bundle").truncation == 1.0
    assert main(["synth", str(bundle), "-n", "6", "--format", "npy", "--seed", "3", "--out", str(tmp_path / "s"),
                 "-q"]) == 0
    drawn = _generated(src.g, 6, 3, torch.device("cpu"), src.truncation)
    np.testing.assert_allclose(drawn[:, 0], np.load(tmp_path / "s" / "images.npy").reshape(6, 32, 32), atol=1e-6)
    out = tmp_path / "ex"
    assert main(["explain", str(bundle), "--data", str(chain / "data"), "--out", str(out), "--max-tiles", "8",
                 "-q"]) == 0
    assert json.loads((out / "summary.json").read_text())["generated_truncation"] == 0.5
