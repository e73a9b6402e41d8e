"""synth --format tar: one PNG tar shard per batch, the same images as --format png, resumable."""

import tarfile

import numpy as np

from mitogan.synth import SynthOptions, synthesize
from tests.mitogan.test_export import trained  # noqa: F401  (module fixture: a real tiny training run)
from tests.mitogan.test_synth import bundle  # noqa: F401, F811  (its exported bundle)
from tests.mitogan.test_synth import read_manifest as _rows


def _member_bytes(out, file):
    shard, member = file.split("/")[1:]
    with tarfile.open(out / "images" / shard) as tar:
        return tar.extractfile(member).read()


def test_tar_shards_hold_the_same_pngs_as_png_files(bundle, tmp_path):  # noqa: F811
    synthesize(bundle, tmp_path / "t", SynthOptions(n=20, batch_size=8, format="tar"), progress=False)
    synthesize(bundle, tmp_path / "p", SynthOptions(n=20, batch_size=8), progress=False)
    rows = _rows(tmp_path / "t")
    # one shard per batch, rows name their member, and each member is byte for byte the PNG file
    assert sorted(p.name for p in (tmp_path / "t" / "images").iterdir()) == [f"shard_{b:06d}.tar" for b in range(3)]
    assert rows[9]["file"] == "images/shard_000001.tar/img_00000009.png"
    assert [r["latent_index"] for r in rows] == [r["latent_index"] for r in _rows(tmp_path / "p")]
    for r, p in zip(rows, _rows(tmp_path / "p")):
        assert _member_bytes(tmp_path / "t", r["file"]) == (tmp_path / "p" / p["file"]).read_bytes()
    assert not list((tmp_path / "t").rglob("*.tmp"))


def test_tar_resume_rewrites_unpublished_shards_and_matches_a_straight_run(bundle, tmp_path):  # noqa: F811
    out = tmp_path / "s"
    synthesize(bundle, out, SynthOptions(n=24, batch_size=8, format="tar", min_set_distance=1e-6), progress=False)
    # a kill during batch 1: its manifest part never written, its shard half written, batch 2 left a temp file
    (out / "parts" / "batch_000001.csv").unlink()
    (out / "parts" / "batch_000002.csv").unlink()
    (out / "images" / "shard_000001.tar").write_bytes(b"torn")
    (out / "images" / "shard_000002.tar").rename(out / "images" / "shard_000002.tar.tmp")
    (out / "synth.json").unlink()
    s = synthesize(bundle, out, SynthOptions(n=24, batch_size=8, format="tar", min_set_distance=1e-6), progress=False)
    straight = tmp_path / "straight"
    synthesize(bundle, straight, SynthOptions(n=24, batch_size=8, format="tar", min_set_distance=1e-6), progress=False)
    assert s["resumed_batches"] == 1 and _rows(out) == _rows(straight)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"shard_{b:06d}.tar" for b in range(3)]
    assert all(_member_bytes(out, r["file"]) == _member_bytes(straight, r["file"]) for r in _rows(out))


def test_tar_resume_of_an_old_run_rebuilds_the_duplicate_bank_from_the_shards(bundle, tmp_path):  # noqa: F811
    from PIL import Image
    import io

    out = tmp_path / "s"
    opts = SynthOptions(n=16, batch_size=8, format="tar", min_set_distance=1e-6)
    synthesize(bundle, out, opts, progress=False)
    (out / "parts" / "batch_000000.feat.npy").unlink()  # as a MitoGAN that kept no features left it
    from mitogan.synth import _read_images, TiffSpec

    rows = _rows(out)[:8]
    got = _read_images(out, rows, opts, out / "parts" / "batch_000000.csv", TiffSpec())
    want = np.stack([np.asarray(Image.open(io.BytesIO(_member_bytes(out, r["file"]))), np.float32) for r in rows])
    np.testing.assert_array_equal(got, want / 255 * 2 - 1)


def test_evaluate_reads_tar_shards_as_it_reads_the_png_files(bundle, tmp_path):  # noqa: F811
    """`mitogan evaluate REAL SYNTH` on a --format tar folder: the same tiles, in the same order, as on the same
    images written as PNG files (so every metric is the same)."""
    from mitogan.cli.evaluate import load_images

    synthesize(bundle, tmp_path / "t", SynthOptions(n=20, batch_size=8, format="tar"), progress=False)
    synthesize(bundle, tmp_path / "p", SynthOptions(n=20, batch_size=8), progress=False)
    tar, png = load_images(tmp_path / "t", 32, progress=False), load_images(tmp_path / "p", 32, progress=False)
    assert len(tar) == len(png) >= 20 and np.array_equal(tar.tiles, png.tiles)


def test_a_tar_without_images_or_not_a_tar_is_one_line(tmp_path):
    import io

    import pytest

    from mitogan.errors import InputError
    from mitogan.io import read_file

    with tarfile.open(tmp_path / "notes.tar", "w") as tar:
        info = tarfile.TarInfo("README.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "torn.tar").write_bytes(b"torn" * 100)
    for name, problem in (("notes.tar", "no image members"), ("torn.tar", "not a readable tar of images")):
        with pytest.raises(InputError, match=problem) as e:
            read_file(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)
