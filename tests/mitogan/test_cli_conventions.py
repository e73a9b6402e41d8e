"""CLI conventions: -v/-q everywhere, plain-text help with real defaults, every environment variable documented,
each command reading the folder the previous one wrote, and bad input as one line."""

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitogan.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return parser, sub.choices


def test_every_command_has_verbose_quiet_and_plain_help():
    _, commands = _subparsers()
    for name, p in commands.items():
        text = p.format_help()
        assert "-q, --quiet" in text and "-v, --verbose" in text, name
        assert "(default: None)" not in text and "``" not in text, name  # no raw reStructuredText


def test_help_shows_real_defaults():
    _, commands = _subparsers()
    assert "(default: 1000)" in commands["synth"].format_help()
    assert "(default: 20)" in commands["simulate"].format_help()


def test_old_spellings_still_work():
    parser = build_parser()
    assert parser.parse_args(["simulate", "--out", "x", "--no-progress"]).quiet
    assert parser.parse_args(["simulate", "--out", "x", "-q"]).quiet
    assert parser.parse_args(["synth", "b", "--out", "o", "--quiet"]).quiet
    assert parser.parse_args(["train", "--out", "r", "-vv"]).verbose == 2


def test_every_environment_variable_read_is_documented():
    # what the code reads: os.environ.get("X"), os.environ["X"] (reads), os.getenv("X")
    pattern = re.compile(r"""(?:environ\.get|getenv)\(\s*["']([A-Z0-9_]+)["']"""
                         r"""|environ\[["']([A-Z0-9_]+)["']\](?!\s*=)""")
    read = set()
    for folder in ("mitogan", "search"):
        for f in (REPO / folder).rglob("*.py"):
            read |= {a or b for a, b in pattern.findall(f.read_text())}
    assert {"MITOGAN_CACHE_DIR", "WANDB_MODE", "WANDB_PROJECT", "RAY_ADDRESS"} <= read  # the scan works
    text = build_parser().format_help()
    assert [v for v in sorted(read) if v not in text] == []


def test_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # an empty folder is no tiles: the line names the command that makes tiles (never writing into it)
    assert len(err) == 1 and err[0].startswith(f"mitogan: error: --data {tmp_path / 'empty'}: is a folder with no ")
    assert "`mitogan preprocess MOVIES --out TILES`" in err[0]
    assert main(["synth", str(tmp_path / "nothing"), "--out", str(tmp_path / "s"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and "`mitogan export RUN_OR_SEARCH --out BUNDLE`" in err[0]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """preprocess --out D → train --data D --out R → export R --out B, on ImageJ TIFFs of 0.1 µm pixels."""
    d = tmp_path_factory.mktemp("chain")
    rng = np.random.default_rng(0)
    for i in range(2):
        frames = (rng.poisson(50, (4, 128, 128)) + 400 * (rng.random((4, 128, 128)) > 0.8)).astype(np.uint16)
        tifffile.imwrite(d / f"v{i}.tif", frames, imagej=True, resolution=(10.0, 10.0),
                         metadata={"unit": "um", "axes": "TYX"})
    assert main(["preprocess", str(d / "v0.tif"), str(d / "v1.tif"), "--out", str(d / "D"), "--no-cache", "-q",
                 "--set", "tile.size=32", "--set", "tile.scale=0.5", "--set", "tile.min_foreground=0"]) == 0
    assert main(["train", "--data", str(d / "D"), "--out", str(d / "R"), "--smoke", "--no-eval", "-q",
                 "--set", "preprocess.tile.size=32"]) == 0
    assert main(["export", str(d / "R"), "--out", str(d / "B")]) == 0
    return d


def test_train_reads_the_preprocess_folder_and_export_keeps_the_pixel_size(chain):
    from mitogan.export import load_bundle_config
    from mitogan.tiles import load_tiles

    assert load_tiles(chain / "D").meta["pixel_size_um"] == pytest.approx(0.1)  # from the ImageJ TIFFs
    config = load_bundle_config(chain / "B")
    assert config["pixel_size_um"] == pytest.approx(0.2)  # tiles at scale 0.5
    assert config["output"]["intensity"]["dtype"] == "uint16"


def test_synth_tiff_stack_from_the_exported_bundle(chain):
    assert main(["synth", str(chain / "B"), "--out", str(chain / "S"), "--format", "tiff", "--stack", "-n", "6",
                 "-q"]) == 0
    with tifffile.TiffFile(chain / "S" / "images.tif") as tif:
        assert tif.is_imagej and tif.series[0].shape == (6, 32, 32) and tif.pages[0].dtype == np.uint16
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(5.0, rel=1e-4)  # 5 pixels per µm = 0.2 µm pixels
        assert tif.imagej_metadata["unit"] == "um"


def test_synth_takes_the_search_folder_export_wrote_best_into(chain, capsys):
    import shutil

    shutil.copytree(chain / "B", chain / "search" / "best")
    assert main(["synth", str(chain / "search"), "--out", str(chain / "S2"), "-n", "2", "-q"]) == 0
    assert len(list((chain / "S2" / "images").glob("*.png"))) == 2
