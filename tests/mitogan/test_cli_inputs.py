"""Every command that expects one kind of input and gets another (a movie, a raw folder, tiles, a bundle, a run,
a search trial, a search, a synth output — complete or not) refuses in one line, exit 2, no traceback, nothing
written, and names the command to run instead; a few suggested commands are run as written."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from mitogan.cli import main

SMOKE = ["--smoke", "--no-eval", "-q"]


@pytest.fixture
def ws(outputs):
    return outputs


# (command with {placeholders}, what the one line must name: the command to run instead)
ROWS = [
    # commands that expect tiles, given something else
    ("train --data {raw} --out {out} --smoke", "`mitogan preprocess {raw} --out TILES`"),
    ("train --data {movie} --out {out} --smoke", "`mitogan preprocess {movie} --out TILES`"),
    ("train --data {bundle} --out {out} --smoke", "`mitogan preprocess MOVIES --config {bundle} --out TILES`"),
    ("train --data {run} --out {out} --smoke", "`mitogan preprocess MOVIES --config {run} --out TILES`"),
    ("train --data {search} --out {out} --smoke", "`mitogan preprocess MOVIES --config {search} --out TILES`"),
    ("train --data {trial} --out {out} --smoke", "`mitogan preprocess MOVIES --config {trial} --out TILES`"),
    ("train --data {synth} --out {out} --smoke", "`mitogan preprocess MOVIES --out TILES`"),
    ("train --data {partial} --out {out} --smoke", "--resume`"),
    # commands that expect real data (tiles or movies) beside a source, given something else
    ("explain {bundle} --data {run} --out {out}", "`mitogan explain {bundle} --data MOVIES --out {out}`"),
    ("explain {bundle} --data {search} --out {out}", "`mitogan explain {bundle} --data MOVIES --out {out}`"),
    ("explain {bundle} --data {partial} --out {out}", "`mitogan synth {bundle} -n 8 --out {partial} --format npy --resume`"),
    ("synth {bundle} -n 4 --reference {bundle} --out {out}", "takes real data"),
    ("synth {bundle} -n 4 --reference {partial} --out {out}", "--resume`"),
    ("evaluate {bundle} {synth} --out {out}", "`mitogan evaluate MOVIES_OR_TILES {synth} --out {out}`"),
    ("evaluate {run} {synth} --out {out}", "`mitogan evaluate MOVIES_OR_TILES {synth} --out {out}`"),
    # commands that expect a source (run, bundle, search), given data: the arguments swapped
    ("explain {tiles} --data {bundle} --out {out}", "`mitogan explain {bundle} --data {tiles} --out {out}`"),
    ("explain {movie} --data {tiles} --out {out}", "`mitogan explain BUNDLE --data {movie} --out {out}`"),
    # commands that expect generated images
    ("evaluate {tiles} {bundle} --out {out}", "`mitogan synth {bundle} -n 1000 --format npy --out SYNTH`"),
    ("evaluate {tiles} {search} --out {out}", "`mitogan synth {search} -n 1000 --format npy --out SYNTH`"),
    ("evaluate {tiles} {run} --out {out}", "`mitogan export {run} --out BUNDLE`"),
    ("evaluate {tiles} {partial} --out {out}", "incomplete `mitogan synth` output"),
    # commands that expect a bundle
    ("synth {run} -n 4 --out {out}", "`mitogan export {run} --out BUNDLE`"),
    ("synth {tiles} -n 4 --out {out}", "`mitogan export RUN_OR_SEARCH --out BUNDLE`"),
    ("synth {movie} -n 4 --out {out}", "`mitogan export RUN_OR_SEARCH --out BUNDLE`"),
    ("synth {trial} -n 4 --out {out}", "`mitogan export {search} --trial trial_0001 --out BUNDLE`"),
    # the reverse: a command that expects raw movies, given tiles or a source
    ("preprocess {tiles} --out {out}", "`mitogan train --data {tiles} --out RUN`"),
    ("preprocess {tilesfile} --out {out}", "`mitogan train --data {tilesfile} --out RUN`"),
    ("preprocess {bundle} --out {out}", "`mitogan preprocess MOVIES --config {bundle} --out TILES`"),
    ("preprocess {search} --out {out}", "`mitogan preprocess MOVIES --config {search} --out TILES`"),
    ("preprocess {synth} --out {out}", "`mitogan evaluate REAL {synth} --out OUT`"),
    # export expects a run or a search
    ("export {bundle} --out {out}", "`mitogan synth {bundle} -n 1000 --out SYNTH`"),
    ("export {tiles} --out {out}", "`mitogan train --data {tiles} --out RUN`"),
    ("export {movie} --out {out}", "`mitogan preprocess {movie} --out TILES`"),
    ("export {trial} --out {out}", "`mitogan export {search} --trial trial_0001 --out BUNDLE`"),
]


def _suggested(err: str) -> str:
    """The first command line a message names (a backticked `mitogan ... --option ...`)."""
    return next(span for span in err.split("`")[1::2] if span.startswith("mitogan ") and " --" in span)


def _run(ws, template: str, capsys, out: Path):
    argv = shlex.split(template.format(out=out, **{k: v for k, v in ws.items() if k != "root"}))
    before = sorted(p.relative_to(ws["root"]) for p in ws["root"].rglob("*"))
    rc = main(argv)
    err = capsys.readouterr().err
    after = sorted(p.relative_to(ws["root"]) for p in ws["root"].rglob("*"))
    return rc, err, before, after


@pytest.mark.parametrize("template,names", ROWS, ids=[r[0].split(" --out")[0] for r in ROWS])
def test_wrong_kind_of_input_is_one_line_naming_the_next_command(ws, template, names, capsys, tmp_path):
    out = tmp_path / "out"
    rc, err, before, after = _run(ws, template, capsys, out)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("mitogan: error: "), err
    expected = names.format(out=out, **{k: v for k, v in ws.items() if k != "root"})
    assert expected in lines[0], lines[0]
    assert not out.exists() and before == after  # validated before any work: nothing written anywhere


def test_the_train_suggestion_never_writes_into_the_users_data(ws, capsys, tmp_path):
    # the old message said `mitogan preprocess --out RAW_FOLDER`, which would write into the data folder
    rc, err, *_ = _run(ws, "train --data {raw} --out {out}", capsys, tmp_path / "r")
    assert rc == 2 and f"--out {ws['raw']}" not in err


def test_incomplete_synth_is_refused_with_the_resume_that_finishes_it(ws, capsys, tmp_path):
    rc, err, *_ = _run(ws, "evaluate {tiles} {partial} --out {out} --no-c2st", capsys, tmp_path / "ev")
    assert rc == 2 and "no synth.json" in err and "8 images written of 8" in err
    resume = err.split("finish it with `", 1)[1].split("`", 1)[0]
    partial = tmp_path / "partial"
    shutil.copytree(ws["partial"], partial)
    resume = resume.replace(ws["partial"], str(partial))
    assert main(shlex.split(resume)[1:] + ["-q"]) == 0  # the named command, as written, completes it
    assert (partial / "synth.json").is_file()
    assert main(["evaluate", ws["tiles"], str(partial), "--out", str(tmp_path / "ev"), "--no-c2st", "-q"]) == 0
    import json

    inputs = json.loads((tmp_path / "ev" / "metrics.json").read_text())["inputs"]
    assert inputs["fake"] == str(partial) and inputs["real"] == ws["tiles"]
    assert inputs["synth"]["kept"] == 8 and inputs["synth"]["truncation"] == 1.0 and "seed" in inputs["synth"]


def test_evaluate_records_how_a_synth_output_was_drawn(ws, capsys, tmp_path):
    """metrics.json says which synth options drew FAKE (here the truncation, also said in one line); a file of
    images that no synth wrote has the paths only."""
    import json

    out = tmp_path / "s"
    assert main(["synth", ws["bundle"], "-n", "16", "--format", "npy", "--truncation", "0.5", "--out", str(out),
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", ws["tiles"], str(out), "--out", str(tmp_path / "ev"), "--no-c2st", "-q"]) == 0
    assert "--truncation 0.5" in capsys.readouterr().err
    synth = json.loads((tmp_path / "ev" / "metrics.json").read_text())["inputs"]["synth"]
    assert synth["truncation"] == 0.5 and synth["kept"] == 16 and synth["bundle"] == ws["bundle"]
    shutil.copy(out / "images.npy", tmp_path / "plain.npy")
    assert main(["evaluate", ws["tiles"], str(tmp_path / "plain.npy"), "--out", str(tmp_path / "ev2"), "--no-c2st",
                 "-q"]) == 0
    assert "truncation" not in capsys.readouterr().err
    assert json.loads((tmp_path / "ev2" / "metrics.json").read_text())["inputs"] == {
        "real": ws["tiles"], "fake": str(tmp_path / "plain.npy")}


@pytest.mark.slow
def test_suggested_commands_run_as_written(ws, capsys, tmp_path):
    """The command a refusal names, run as written (placeholders filled in), does the job."""
    # train on a raw folder -> preprocess it (the data folder stays untouched), then train on the tiles
    rc, err, *_ = _run(ws, "train --data {raw} --out {out}", capsys, tmp_path / "run")
    suggested = _suggested(err).replace("TILES", str(tmp_path / "tiles"))
    assert main(shlex.split(suggested)[1:] + ["--set", "tile.size=32", "-q"]) == 0
    assert main(["train", "--data", str(tmp_path / "tiles"), "--out", str(tmp_path / "run"), *SMOKE]) == 0
    # preprocess given tiles -> train on them (the tiles' own 32 px size, as the suggestion has no --set)
    rc, err, *_ = _run(ws, "preprocess {tiles} --out {out}", capsys, tmp_path / "p")
    suggested = _suggested(err).replace("RUN", str(tmp_path / "run2"))
    assert main(shlex.split(suggested)[1:] + SMOKE) == 0
    # explain with its arguments swapped -> the swapped command explains
    rc, err, *_ = _run(ws, "explain {tiles} --data {bundle} --out {out}", capsys, tmp_path / "ex")
    suggested = _suggested(err)
    assert main(shlex.split(suggested)[1:] + ["--max-tiles", "8", "-q"]) == 0
    assert (tmp_path / "ex" / "index.html").is_file()
    # evaluate given a bundle as FAKE -> synth from it (tiny -n), then evaluate the synth folder
    rc, err, *_ = _run(ws, "evaluate {tiles} {bundle} --out {out}", capsys, tmp_path / "ev")
    suggested = _suggested(err).replace("-n 1000", "-n 32").replace("SYNTH", str(tmp_path / "s"))
    assert main(shlex.split(suggested)[1:] + ["-q"]) == 0
    assert main(["evaluate", ws["tiles"], str(tmp_path / "s"), "--out", str(tmp_path / "ev"), "--no-c2st",
                 "-q"]) == 0
