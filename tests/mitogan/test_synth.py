"""synth: N images with a manifest, reproducible from the seed, resumable, filters counted."""

import csv

import numpy as np
import pytest
import torch

from mitogan.errors import MitoganError
from mitogan.export import export_bundle
from mitogan.synth import SynthOptions, synthesize
from tests.mitogan.test_export import trained  # noqa: F401  (module fixture: a real tiny training run)


@pytest.fixture
def bundle(trained, tmp_path):  # noqa: F811
    return export_bundle(trained, tmp_path / "bundle")


def read_manifest(out):
    with open(out / "manifest.csv") as f:
        return list(csv.DictReader(f))


def test_writes_n_images_and_manifest(bundle, tmp_path):
    s = synthesize(bundle, tmp_path / "s", SynthOptions(n=70, batch_size=32), progress=False)
    rows = read_manifest(tmp_path / "s")
    assert s["kept"] == 70 and len(rows) == 70
    assert [int(r["latent_index"]) for r in rows] == list(range(70))
    assert all((tmp_path / "s" / r["file"]).stat().st_size > 0 for r in rows)
    assert not list((tmp_path / "s").rglob("*.tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize("fmt", ["png", "tiff", "npy"])
def test_same_seed_same_images_other_seed_other_images(bundle, tmp_path, fmt):
    def run(name, seed):
        synthesize(bundle, tmp_path / name, SynthOptions(n=10, batch_size=8, seed=seed, format=fmt), progress=False)
        return _load_all(tmp_path / name, fmt)

    a, b, c = run("a", 1), run("b", 1), run("c", 2)
    assert a.shape[0] == 10
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def _load_all(out, fmt):
    if fmt == "npy":
        return np.load(out / "images.npy")
    from PIL import Image
    import tifffile
    files = [out / r["file"] for r in read_manifest(out)]
    return np.stack([np.asarray(Image.open(f)) if fmt == "png" else tifffile.imread(f) for f in files])


def test_resume_after_interruption_skips_done_batches_and_matches(bundle, tmp_path):
    full = tmp_path / "full"
    synthesize(bundle, full, SynthOptions(n=40, batch_size=8), progress=False)
    part = tmp_path / "part"
    synthesize(bundle, part, SynthOptions(n=40, batch_size=8, max_batches=2), progress=False)  # "interrupted"
    (part / "parts" / "batch_000001.csv").unlink()  # the second batch's marker was never written
    s = synthesize(bundle, part, SynthOptions(n=40, batch_size=8), progress=False)
    assert s["resumed_batches"] == 1
    assert read_manifest(part) == read_manifest(full)
    assert np.array_equal(_load_all(part, "png"), _load_all(full, "png"))


def test_resume_refuses_a_different_run(bundle, tmp_path):
    synthesize(bundle, tmp_path / "s", SynthOptions(n=4, batch_size=4, seed=0), progress=False)
    with pytest.raises(MitoganError, match="different seed"):
        synthesize(bundle, tmp_path / "s", SynthOptions(n=4, batch_size=4, seed=5), progress=False)


def test_filters_drop_and_count(bundle, tmp_path):
    # against a reference made of the generator's own first images, those images are "memorised"
    synthesize(bundle, tmp_path / "ref", SynthOptions(n=16, batch_size=16, format="npy"), progress=False)
    reference = np.load(tmp_path / "ref" / "images.npy")
    s = synthesize(bundle, tmp_path / "f", SynthOptions(n=16, batch_size=16, min_train_distance=1e-4),
                   reference=reference, progress=False)
    assert s["dropped_memorised"] >= 16  # latents 0..15 reproduce the reference exactly
    assert all(float(r["nn_train"]) >= 1e-4 for r in read_manifest(tmp_path / "f"))
    d = synthesize(bundle, tmp_path / "d", SynthOptions(n=8, batch_size=8, min_set_distance=0.5, max_batches=3),
                   progress=False)
    assert d["dropped_duplicate"] > 0 and "warning" in d  # a huge threshold drops nearly everything


@pytest.fixture
def bundle_with_units(trained, tmp_path):  # noqa: F811
    # what a search trial records: per-video percentile ranges of uint16 data, pixel size of the frames
    data = {"intensity": [{"source": "a", "mapping": "percentile", "range": [100.0, 900.0], "dtype": "uint16"},
                          {"source": "b", "mapping": "percentile", "range": [120.0, 1100.0], "dtype": "uint16"}],
            "pixel_size_um": 0.08}
    return export_bundle(trained, tmp_path / "bundle-units", data=data)


def test_tiff_stack_is_one_imagej_stack_with_pixel_size_and_data_units(bundle_with_units, tmp_path):
    import tifffile

    s = synthesize(bundle_with_units, tmp_path / "s", SynthOptions(n=20, batch_size=8, format="tiff", stack=True),
                   progress=False)
    path = tmp_path / "s" / "images.tif"
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and len(tif.series) == 1 and tif.series[0].shape == (20, 32, 32)
        assert tif.imagej_metadata["unit"] == "um"
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(1 / 0.08, rel=1e-4)  # pixels per µm: tiles at scale 1 of 0.08 µm
        stack = tif.asarray()
    assert stack.dtype == np.uint16 and 110 <= stack.min() and stack.max() <= 1000  # lo/hi: medians 110, 1000
    assert s["pixel_size_um"] == pytest.approx(0.08) and "data units" in s["units"]
    assert {r["file"] for r in read_manifest(tmp_path / "s")} == {"images.tif"}
    # the stack holds the same images as the float output, mapped to the data's units
    synthesize(bundle_with_units, tmp_path / "n", SynthOptions(n=20, batch_size=8, format="npy"), progress=False)
    u = (np.load(tmp_path / "n" / "images.npy")[:, 0] + 1) / 2
    assert np.abs(stack - (110 + u * 890)).max() <= 0.5 + 1e-3


def test_interrupted_tiff_stack_resumes_to_the_same_stack(bundle_with_units, tmp_path):
    import tifffile

    opts = SynthOptions(n=12, batch_size=4, format="tiff", stack=True)
    synthesize(bundle_with_units, tmp_path / "full", opts, progress=False)
    synthesize(bundle_with_units, tmp_path / "part", SynthOptions(**{**opts.__dict__, "max_batches": 1}),
               progress=False)  # "interrupted" after one batch
    s = synthesize(bundle_with_units, tmp_path / "part", opts, progress=False)
    assert s["resumed_batches"] == 1
    assert np.array_equal(tifffile.imread(tmp_path / "part" / "images.tif"),
                          tifffile.imread(tmp_path / "full" / "images.tif"))


def test_tiff_files_are_imagej_and_ome_when_asked(bundle_with_units, tmp_path):
    import tifffile

    synthesize(bundle_with_units, tmp_path / "i", SynthOptions(n=3, batch_size=4, format="tiff"), progress=False)
    first = tmp_path / "i" / read_manifest(tmp_path / "i")[0]["file"]
    with tifffile.TiffFile(first) as tif:
        assert tif.is_imagej and tif.series[0].shape == (32, 32)
    synthesize(bundle_with_units, tmp_path / "o", SynthOptions(n=5, batch_size=4, format="tiff", stack=True, ome=True,
                                                               pixel_size_um=0.2), progress=False)
    with tifffile.TiffFile(tmp_path / "o" / "images.ome.tif") as tif:
        assert tif.is_ome and tif.series[0].shape == (5, 32, 32)
        assert 'PhysicalSizeX="0.2"' in tif.ome_metadata


def test_tiff_without_known_units_stretches_to_uint16_and_resumes(bundle, tmp_path):
    import tifffile

    opts = SynthOptions(n=12, batch_size=4, format="tiff", min_set_distance=1e-6)
    synthesize(bundle, tmp_path / "full", opts, progress=False)
    synthesize(bundle, tmp_path / "part", SynthOptions(**{**opts.__dict__, "max_batches": 2}), progress=False)
    s = synthesize(bundle, tmp_path / "part", opts, progress=False)  # resumes, rebuilding the dedup bank
    assert s["resumed_batches"] == 2 and "pixel_size_um" in s and s["pixel_size_um"] is None
    assert read_manifest(tmp_path / "part") == read_manifest(tmp_path / "full")
    with tifffile.TiffFile(tmp_path / "full" / read_manifest(tmp_path / "full")[0]["file"]) as tif:
        assert tif.is_imagej and tif.pages[0].dtype == np.uint16 and "XResolution" in tif.pages[0].tags


def test_bad_options(bundle, tmp_path):
    with pytest.raises(MitoganError, match="--format"):
        synthesize(bundle, tmp_path / "x", SynthOptions(format="jpeg"), progress=False)
    with pytest.raises(MitoganError, match="at least one"):
        synthesize(bundle, tmp_path / "x", SynthOptions(n=0), progress=False)
    with pytest.raises(MitoganError, match="--stack needs --format tiff"):
        synthesize(bundle, tmp_path / "x", SynthOptions(stack=True), progress=False)
    with pytest.raises(MitoganError, match="--pixel-size"):
        synthesize(bundle, tmp_path / "x", SynthOptions(format="tiff", pixel_size_um=-1.0), progress=False)


def test_tiff_mapping_from_bundles_that_kept_per_video_intensity_lists():
    # bundles exported before the mapping was summarised carry the tiles' per-video list: still readable
    from mitogan.synth import TiffSpec

    per_video = [{"source": "a.tif", "range": [100.0, 900.0], "dtype": "uint16"},
                 {"source": "b.tif", "range": [120.0, 1100.0], "dtype": "uint16"}]
    spec = TiffSpec.from_bundle({"output": {"intensity": per_video}}, SynthOptions())
    assert spec.dtype == "uint16" and spec.lo < spec.hi
    assert TiffSpec.from_bundle({"output": {"intensity": None}}, SynthOptions()).hi == 65535.0


def test_image_i_is_the_same_whatever_the_batch_size(bundle, tmp_path):
    # latent i is one fixed vector: batches of 7, 64 and 100 (not multiples of each other) give the same images,
    # to float rounding: with more than one torch thread the convolutions split a batch by its size, so the last
    # bits of a float32 image may differ (seen: 1e-10 on 2 threads; bit-equal on one). The same batch size
    # gives the same bits.
    runs = {}
    for bs in (7, 64, 100):
        synthesize(bundle, tmp_path / f"b{bs}", SynthOptions(n=130, batch_size=bs, format="npy"), progress=False)
        runs[bs] = np.load(tmp_path / f"b{bs}" / "images.npy")
        assert [int(r["latent_index"]) for r in read_manifest(tmp_path / f"b{bs}")] == list(range(130))
    np.testing.assert_allclose(runs[7], runs[64], rtol=0, atol=1e-6)
    np.testing.assert_allclose(runs[64], runs[100], rtol=0, atol=1e-6)
    synthesize(bundle, tmp_path / "again", SynthOptions(n=130, batch_size=64, format="npy"), progress=False)
    assert np.array_equal(np.load(tmp_path / "again" / "images.npy"), runs[64])
    assert not np.allclose(runs[7][0], runs[7][1], atol=1e-3)  # and the images differ from one another


def test_latents_do_not_depend_on_how_they_are_asked_for():
    from mitogan.synth import latents

    whole = latents(8, seed=3, start=0, n=200)
    assert torch.equal(torch.cat([latents(8, 3, s, 25) for s in range(0, 200, 25)]), whole)
    assert torch.equal(latents(8, 3, 63, 2), whole[63:65])  # across a chunk boundary


def test_truncation_draws_each_latent_pulled_towards_the_centre(bundle, tmp_path):
    from mitogan.export import load_generator
    from mitogan.synth import latents

    def run(name, **kw):
        synthesize(bundle, tmp_path / name, SynthOptions(n=20, batch_size=8, format="npy", **kw), progress=False)
        return np.load(tmp_path / name / "images.npy")

    plain, off, half = run("plain"), run("off", truncation=1.0), run("half", truncation=0.5)
    assert np.array_equal(plain, off)  # 1 is off: the images of a run without the option
    gen = load_generator(bundle)
    with torch.inference_mode():
        want = torch.cat([gen(0.5 * latents(gen.config["latent_dim"], 0, s, 8)) for s in (0, 8, 16)])[:20]
    np.testing.assert_allclose(half, want.numpy(), rtol=0, atol=1e-6)  # image i from 0.5 x latent i
    assert not np.allclose(half, plain, atol=1e-3)
    with pytest.raises(MitoganError, match="different truncation"):  # a resume keeps the run's factor
        synthesize(bundle, tmp_path / "half", SynthOptions(n=20, batch_size=8, format="npy"), progress=False)
    import json

    assert json.loads((tmp_path / "half" / "synth.json").read_text())["truncation"] == 0.5


def test_a_bundle_draws_at_the_truncation_its_search_trial_chose(trained, bundle, tmp_path, capsys):  # noqa: F811
    import hashlib
    import json

    from mitogan.cli import main
    from mitogan.errors import InputError

    chosen = export_bundle(trained, tmp_path / "chosen", metrics={
        "primary": 0.3, "truncation": 0.8, "truncation_by": "judged", "truncation_judged_100": 0.41,
        "truncation_judged_90": 0.35, "truncation_judged_80": 0.32, "truncation_primary": 0.21,
        "truncation_copy_share": 0.06})
    assert json.loads((chosen / "config.json").read_text())["truncation"] == 0.8
    assert "truncation" not in json.loads((bundle / "config.json").read_text())  # none chosen: none recorded
    card = (chosen / "README.md").read_text()
    assert "draws every latent as 0.8 × z" in card and "the best judged_gap" in card
    assert "(1: 0.410, 0.9: 0.350, 0.8: 0.320)" in card and "primary 0.210, copy share 6.0%" in card
    assert "--truncation 1" in card and "x = G(0.8 * torch.randn(16, " in card and "0.8 by default" in card
    assert "x = G(torch.randn(16, " in (bundle / "README.md").read_text()

    def run(b, name, *flags):
        assert main(["synth", str(b), "-n", "12", "--batch-size", "8", "--format", "npy", "-q", "--out",
                     str(tmp_path / name), *flags]) == 0
        return np.load(tmp_path / name / "images.npy"), capsys.readouterr().out

    default, said = run(chosen, "default")
    explicit, quiet = run(bundle, "explicit", "--truncation", "0.8")  # the same weights, the factor given
    off, _ = run(chosen, "off", "--truncation", "1")
    plain, _ = run(bundle, "plain")
    np.testing.assert_array_equal(default, explicit)
    np.testing.assert_array_equal(off, plain)
    assert not np.allclose(default, plain, atol=1e-3)
    assert "truncation 0.8: every latent drawn as 0.8 x z" in said and "truncation" not in quiet
    assert json.loads((tmp_path / "default" / "synth.json").read_text())["truncation"] == 0.8
    # a factor outside (0, 1] in config.json (signed again, so the checksums pass) is one line naming the file
    config = json.loads((chosen / "config.json").read_text())
    config["truncation"] = 1.5
    (chosen / "config.json").write_text(json.dumps(config))
    sums = {line.split("  ")[1]: line.split("  ")[0] for line in (chosen / "checksums.sha256").read_text().splitlines()}
    sums["config.json"] = hashlib.sha256((chosen / "config.json").read_bytes()).hexdigest()
    (chosen / "checksums.sha256").write_text("".join(f"{v}  {k}\n" for k, v in sums.items()))
    with pytest.raises(InputError, match=r"config.json: truncation 1.5 is not a factor above 0 and at most 1"):
        synthesize(chosen, tmp_path / "bad", SynthOptions(n=4, batch_size=4), progress=False)
    assert not (tmp_path / "bad").exists()


def test_npy_manifest_names_real_files(bundle, tmp_path):
    synthesize(bundle, tmp_path / "n", SynthOptions(n=5, batch_size=3, format="npy"), progress=False)
    rows = read_manifest(tmp_path / "n")
    assert {r["file"] for r in rows} == {"images.npy"} and (tmp_path / "n" / "images.npy").is_file()
    assert len(np.load(tmp_path / "n" / "images.npy")) == len(rows)  # row k is images.npy[k]


def test_a_folder_of_other_files_is_refused_untouched(bundle, tmp_path):
    out = tmp_path / "mine"
    (out / "images").mkdir(parents=True)
    (out / "images" / "img_00000000.png").write_bytes(b"my own picture")
    (out / "manifest.csv").write_text("mine\n")
    with pytest.raises(MitoganError, match="files MitoGAN did not write"):
        synthesize(bundle, out, SynthOptions(n=2, batch_size=2), progress=False)
    assert (out / "images" / "img_00000000.png").read_bytes() == b"my own picture"
    assert (out / "manifest.csv").read_text() == "mine\n" and sorted(p.name for p in out.iterdir()) == [
        "images", "manifest.csv"]


@pytest.mark.parametrize("opts, message", [
    (SynthOptions(batch_size=0), "--batch-size 0"), (SynthOptions(batch_size=10**9), "--batch-size"),
    (SynthOptions(device="tpu"), "--device 'tpu'"), (SynthOptions(min_set_distance=float("nan")), "--min-set"),
    (SynthOptions(min_train_distance=-1.0), "--min-novelty"), (SynthOptions(seed=-1), "--seed -1"),
    (SynthOptions(format="tiff", pixel_size_um=float("inf")), "--pixel-size"),
    (SynthOptions(truncation=0.0), "--truncation 0.0"), (SynthOptions(truncation=1.5), "--truncation 1.5"),
    (SynthOptions(truncation=float("nan")), "--truncation nan"),
])
def test_impossible_options_are_refused_before_any_work(bundle, tmp_path, opts, message):
    with pytest.raises(MitoganError, match=message):
        synthesize(bundle, tmp_path / "x", opts, progress=False)
    assert not (tmp_path / "x").exists()


def test_stop_leaves_a_folder_that_resumes_to_the_same_images(bundle, tmp_path):
    synthesize(bundle, tmp_path / "full", SynthOptions(n=30, batch_size=8), progress=False)
    calls = iter(range(100))
    s = synthesize(bundle, tmp_path / "part", SynthOptions(n=30, batch_size=8), progress=False,
                   stop=lambda: next(calls) >= 2)  # stop after two batches
    assert s["stopped"] and s["kept"] == 16 and not (tmp_path / "part" / "manifest.csv").exists()
    s = synthesize(bundle, tmp_path / "part", SynthOptions(n=30, batch_size=8), progress=False)
    assert s["resumed_batches"] == 2 and read_manifest(tmp_path / "part") == read_manifest(tmp_path / "full")
    assert np.array_equal(_load_all(tmp_path / "part", "png"), _load_all(tmp_path / "full", "png"))


@pytest.mark.parametrize("change, message", [
    ({"generator": {"latent_dim": float("nan")}}, "generator.latent_dim: expected an integer"),
    ({"generator": {"width": -3}}, "generator.width: -3 is below the minimum"),
    ({"generator": {"arch": "vit"}}, "generator.arch: 'vit' is not one of"),
    ({"generator": {"bogus": 1}}, "unknown: bogus"),
    ({"trial_config": {"optim.lr_g": float("nan")}}, "trial_config: optim.lr_g: nan is not a finite number"),
    ({"output": {"intensity": {"lo": 5.0, "hi": 1.0}}}, "need finite lo < hi"),
    ({"pixel_size_um": float("inf")}, "pixel_size_um inf is not a positive number"),
])
def test_a_bundle_config_is_validated_like_a_config(bundle, change, message):
    import json

    from mitogan.errors import InputError
    from mitogan.synth import check_bundle_config

    config = json.loads((bundle / "config.json").read_text())
    check_bundle_config(bundle, config)  # the exported one is valid
    for key, value in change.items():
        config[key] = {**config[key], **value} if key == "generator" else value
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        check_bundle_config(bundle, config)


@pytest.mark.slow
def test_resume_with_the_duplicate_filter_is_exact_counts_included(bundle, tmp_path):
    # the filter's features of kept images are saved per batch: PNG rounding cannot change a resumed decision
    opts = dict(n=40, batch_size=8, min_set_distance=0.02, max_batches=40)
    full = synthesize(bundle, tmp_path / "full", SynthOptions(**opts), progress=False)
    calls = iter(range(100))
    synthesize(bundle, tmp_path / "part", SynthOptions(**opts), progress=False, stop=lambda: next(calls) >= 3)
    s = synthesize(bundle, tmp_path / "part", SynthOptions(**opts), progress=False)
    assert full["dropped_duplicate"] > 0  # the filter was at work
    assert s["resumed_batches"] == 3 and read_manifest(tmp_path / "part") == read_manifest(tmp_path / "full")
    assert {k: s[k] for k in ("kept", "dropped_duplicate", "batches")} == {
        k: full[k] for k in ("kept", "dropped_duplicate", "batches")}


def test_a_synth_folder_from_before_markers_still_resumes(bundle, tmp_path):
    import json

    out = tmp_path / "old"
    synthesize(bundle, out, SynthOptions(n=8, batch_size=4, max_batches=1), progress=False)  # "interrupted"
    (out / ".mitogan.json").unlink()  # as the previous version left it: recognised by its .synth-run.json
    s = synthesize(bundle, out, SynthOptions(n=8, batch_size=4), progress=False)
    assert s["resumed_batches"] == 1 and s["kept"] == 8
    assert json.loads((out / ".mitogan.json").read_text())["kind"] == "synth"


def test_a_refused_bundle_leaves_no_folder_that_a_correct_rerun_refuses(bundle, tmp_path, capsys):
    import hashlib
    import pickle

    from mitogan.cli import main

    good = (bundle / "generator.pt").read_bytes()
    sums = (bundle / "checksums.sha256").read_text()
    (bundle / "generator.pt").write_bytes(pickle.dumps(print))  # re-signed: only loading it can tell
    (bundle / "checksums.sha256").write_text(sums.replace(hashlib.sha256(good).hexdigest(),
                                                          hashlib.sha256(pickle.dumps(print)).hexdigest()))
    argv = ["synth", str(bundle), "-n", "3", "--batch-size", "3", "--out", str(tmp_path / "s"), "-q"]
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "s").exists()
    (bundle / "generator.pt").write_bytes(good)
    (bundle / "checksums.sha256").write_text(sums)
    assert main(argv) == 0 and len(read_manifest(tmp_path / "s")) == 3


def test_novelty_filter_defaults_to_the_held_out_real_distances(bundle, tiles, tmp_path, capsys):
    # "real" tiles: 3 movies of blob tiles (conftest) and, as a 4th movie, the generator's own first 16 images;
    # with --reference the default filter drops images nearer to a real tile than 95 % of held-out ones are
    import json

    from mitogan.cli import main
    from mitogan.synth import novelty_threshold
    from mitogan.tiles import TileSet, save_tiles

    synthesize(bundle, tmp_path / "ref", SynthOptions(n=16, batch_size=16, format="npy"), progress=False)
    own = np.load(tmp_path / "ref" / "images.npy").reshape(16, 1, 32, 32)
    real = np.concatenate([tiles, own]).astype(np.float32)
    source = np.repeat([0, 1, 2, 3], [8, 8, 8, 16]).astype(np.int32)
    frame = np.concatenate([np.tile(np.arange(8), 3), np.arange(16)]).astype(np.int32)
    ts = TileSet(real, source, frame, np.zeros((len(real), 2), np.int32))
    save_tiles(tmp_path / "real.npz", ts)
    thr = novelty_threshold(ts)
    assert thr > 0
    assert main(["synth", str(bundle), "-n", "24", "--batch-size", "16", "--format", "npy", "--out",
                 str(tmp_path / "out"), "--reference", str(tmp_path / "real.npz")]) == 0
    captured = capsys.readouterr()
    assert f"novelty filter at {thr:.4g}" in captured.err
    summary = json.loads((tmp_path / "out" / "synth.json").read_text())
    assert summary["dropped_memorised"] >= 16  # latents 0..15 are in the reference
    assert f"{summary['dropped_memorised']} too close to training tiles" in captured.out
    assert all(float(r["nn_train"]) >= thr for r in read_manifest(tmp_path / "out"))
    # --min-novelty 0 turns it off: the copies are kept
    assert main(["synth", str(bundle), "-n", "16", "--batch-size", "16", "--format", "npy", "--out",
                 str(tmp_path / "off"), "--reference", str(tmp_path / "real.npz"), "--min-novelty", "0", "-q"]) == 0
    assert json.loads((tmp_path / "off" / "synth.json").read_text())["dropped_memorised"] == 0


# ----------------------------------------------------------------------------------------- a full disk
_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
from mitogan.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_full_disk_names_the_folder_and_the_resume_that_finishes_it(bundle, tmp_path):
    import shlex
    import subprocess
    import sys

    from mitogan.cli import main

    out = tmp_path / "s"
    argv = ["synth", str(bundle), "-n", "40", "--batch-size", "8", "--format", "npy", "--out", str(out), "-q"]
    # parts of 8 images (32 KB) fit under the limit; the assembled 40-image array (160 KB) does not
    r = subprocess.run([sys.executable, "-c", _FULL_DISK, str(100_000), *argv], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert r.stderr.startswith(f"mitogan: error: {out}: the disk is full (") and "after 40 of 40 images" in r.stderr
    assert "free at least 1.0 MB there" in r.stderr  # a size to act on, never "0.0 GiB"
    resume = r.stderr.split("continue with `", 1)[1].split("`", 1)[0]
    assert not (out / "synth.json").exists()  # incomplete: evaluate/explain/train refuse it (test_cli_inputs)
    assert main(["evaluate", str(out), str(out), "--out", str(tmp_path / "ev")]) == 2
    assert main(shlex.split(resume)[1:]) == 0  # once space is freed, the named command finishes it
    straight = tmp_path / "straight"
    assert main(argv[:-3] + ["--out", str(straight), "-q"]) == 0
    np.testing.assert_array_equal(np.load(out / "images.npy"), np.load(straight / "images.npy"))
    assert (out / "manifest.csv").read_text() == (straight / "manifest.csv").read_text()


def test_sizes_in_messages_are_in_units_a_user_can_act_on():
    from mitogan.synth import human_size

    assert [human_size(n) for n in (0, 3000, 50_000, 3 * 2**20, 700 * 2**20, 3 * 2**30)] == \
        ["0.1 KB", "2.9 KB", "49 KB", "3.0 MB", "700 MB", "3.00 GiB"]


def test_a_killed_batch_leaves_no_torn_or_extra_image_after_resume(bundle, tmp_path):
    from mitogan.synth import SynthOptions, synthesize

    out = tmp_path / "s"
    opts = SynthOptions(n=20, batch_size=8)
    synthesize(bundle, out, opts, progress=False)
    # as a kill in the middle of batch 1 leaves it: its manifest part gone, one image torn, synth.json gone
    (out / "parts" / "batch_000001.csv").unlink()
    (out / "parts" / "batch_000002.csv").unlink()
    (out / "images" / "img_00000009.png").write_bytes(b"\x89PNG torn")
    (out / "synth.json").unlink()
    synthesize(bundle, out, SynthOptions(n=12, batch_size=8), progress=False)  # resumed, asking for fewer
    files = sorted(p.name for p in (out / "images").iterdir())
    assert files == [f"img_{i:08d}.png" for i in range(12)]  # the torn one rewritten, none beyond the 12
    straight = tmp_path / "straight"
    synthesize(bundle, straight, SynthOptions(n=12, batch_size=8), progress=False)
    assert all((out / "images" / f).read_bytes() == (straight / "images" / f).read_bytes() for f in files)
