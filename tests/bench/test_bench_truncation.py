"""bench/bench_truncation.py: its input checks, one line each, before anything is drawn."""

from __future__ import annotations

import sys

import pytest

from tests.bench import load_bench


@pytest.fixture(scope="module")
def bt():
    mod = load_bench("bench_truncation")
    yield mod
    for name in ("bench_truncation", "bench_resample", "bench_fine_detail"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("argv, field", [(["--psis", "0"], "--psis"), (["--psis", "1.2"], "--psis"),
                                         (["--psis", "a"], "--psis"), (["--runs", ""], "--runs"),
                                         (["--n", "10"], "--n"), (["--judge-seeds", "0"], "--judge-seeds"),
                                         (["--chosen", "0"], "--chosen"), (["--chosen", "1.5"], "--chosen")])
def test_bad_input_is_one_line_naming_the_field(bt, tmp_path, capsys, argv, field):
    assert bt.main(["--work", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and field in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_runs_never_trained_are_named(bt, tmp_path, capsys):
    assert bt.main(["--work", str(tmp_path)]) == 2
    assert "tiles.npz" in capsys.readouterr().err
    (tmp_path / "tiles").mkdir()
    (tmp_path / "tiles" / "tiles.npz").write_bytes(b"")
    (tmp_path / "fine-s0-synth-psi1").mkdir()  # drawn for one factor only: the others would need the run
    (tmp_path / "fine-s0-synth-psi1" / "images.npy").write_bytes(b"")
    assert bt.main(["--work", str(tmp_path), "--runs", "fine-s0", "--psis", "1,0.8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "fine-s0" in err
    assert bt.main(["--work", str(tmp_path), "--runs", "fine-s0", "--psis", "1", "--chosen", "0.8"]) == 2
    err = capsys.readouterr().err.strip()  # the factor a trial would keep is chosen on the run's own generator
    assert "\n" not in err and "fine-s0" in err
