"""bench/probe_fine_detail.py: its input checks, and that each probe's view keeps what it is named for."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.bench import load_bench


@pytest.fixture(scope="module")
def pf():
    mod = load_bench("probe_fine_detail")
    yield mod
    sys.modules.pop("probe_fine_detail", None)


def test_bad_input_is_one_line_naming_the_field(pf, capsys, tmp_path):
    assert pf.main(["--work", str(tmp_path)]) == 2
    assert "--work" in capsys.readouterr().err
    (tmp_path / "tiles").mkdir()
    np.savez(tmp_path / "tiles" / "tiles.npz", tiles=np.zeros((2, 1, 8, 8), np.float32))
    for argv, field in ((["--runs", ","], "--runs"), (["--runs", "fine-s9"], "fine-s9")):
        assert pf.main(["--work", str(tmp_path), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and field in err


def test_the_views_keep_what_they_are_named_for(pf):
    rng = np.random.default_rng(0)
    x = np.full((3, 1, 16, 16), -0.95, np.float32)
    x[:, :, :, 8:] = 0.5  # a dark half and a bright half, with faint texture in both
    x += (0.01 * rng.standard_normal(x.shape)).astype(np.float32)
    x[0, :, :, :8] = -1.0  # tile 0: an exact black floor on its dark half
    dark, bright = pf.in_range(x, *pf.RANGES["dark"]), pf.in_range(x, *pf.RANGES["bright"])
    assert not dark[:, :, :, 10:].any() and not bright[:, :, :, :6].any()  # each range only where its blur is
    assert dark[1:, :, :, :6].std() > 0.005 and bright[:, :, :, 10:].std() > 0.005
    assert pf.floored(x).tolist() == [True, False, False]
    turned = pf.dihedral(x, np.random.default_rng(1))
    assert turned.shape == x.shape and np.allclose(np.sort(turned.ravel()), np.sort(x.ravel()))
    assert all(any(np.array_equal(t[0], np.rot90(v[0], k)[:, ::f]) for k in range(4) for f in (1, -1))
               for t, v in zip(turned, x))  # every tile is its original turned and maybe flipped
