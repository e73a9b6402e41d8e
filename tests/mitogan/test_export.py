"""Generator bundles: round trip (bundle = torch.export = TorchScript = safetensors = checkpoint EMA), the model
card, permissions, and every bad-bundle case."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mitogan
from mitogan.config import Config, apply_overrides
from mitogan.errors import InputError
from mitogan.export import export_bundle, load_bundle_config, load_generator, sample_latents
from mitogan.models import generator_from_config
from mitogan.train import load_checkpoint, train

TINY = ["preprocess.tile.size=32", "model.g_width=8", "model.d_width=8", "model.latent_dim=16", "train.steps=4",
        "train.batch_size=8", "train.report_every=2", "train.checkpoint_every=2", "train.sample_every=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real (tiny) training run and its checkpoint."""
    out = tmp_path_factory.mktemp("run")
    tiles = np.random.default_rng(0).uniform(-1, 1, (32, 1, 32, 32)).astype(np.float32)
    train(apply_overrides(Config(), TINY), tiles, out_dir=out)
    return out / "checkpoint.pt"


@pytest.fixture
def bundle(trained, tmp_path):
    return export_bundle(trained, tmp_path / "bundle", metrics={"primary": 0.5}, source={"trial_id": "t1"},
                         intensity={"lo": 100.0, "hi": 900.0})


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_bundle_export_torchscript_and_checkpoint_give_identical_images(trained, bundle):
    z = sample_latents(16, 8, seed=3)
    ckpt = load_checkpoint(trained)
    ref = generator_from_config(ckpt["generator_config"])
    ref.load_state_dict(ckpt["EMA"])
    ref.eval()
    with torch.inference_mode():
        a = ref(z)
        b = mitogan.load_generator(bundle)(z)
        c = torch.jit.load(str(bundle / "generator.torchscript"))(z)
        d = torch.export.load(str(bundle / "generator.pt2")).module()(z)
    assert a.shape == (8, 1, 32, 32)
    assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(a, d)


# Runs in a fresh interpreter that cannot import MitoGAN: isolated mode (no PYTHONPATH, no cwd on the path),
# the editable-install finder removed, and ``mitogan`` blocked in sys.modules.
_STANDALONE = """
import sys
from pathlib import Path
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__ + repr(f)]
sys.modules["mitogan"] = None
import numpy as np, torch
from safetensors.torch import load_file
bundle, z, expected = sys.argv[1], torch.from_numpy(np.load(sys.argv[2])), np.load(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]))  # as the test's process: the order of a sum's terms depends on it
weights = load_file(bundle + "/generator.safetensors")
reference = torch.load(bundle + "/generator.pt", weights_only=True)
assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in weights)
G = torch.export.load(bundle + "/generator.pt2").module()
with torch.inference_mode():
    assert np.array_equal(G(z).numpy(), expected), "torch.export program differs from the bundle"
    assert G(z[:1]).shape == (1,) + expected.shape[1:]  # any batch size
assert not any(k.split(".")[0] == "mitogan" for k in sys.modules if sys.modules[k] is not None)
print("ok")
"""


def test_safetensors_and_torch_export_load_without_mitogan(bundle, tmp_path):
    z = sample_latents(16, 5, seed=7)
    with torch.inference_mode():
        expected = mitogan.load_generator(bundle)(z).numpy()
    np.save(tmp_path / "z.npy", z.numpy())
    np.save(tmp_path / "x.npy", expected)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-I", "-c", _STANDALONE, str(bundle), str(tmp_path / "z.npy"),
                          str(tmp_path / "x.npy"), str(torch.get_num_threads())], capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_standalone_check_really_cannot_import_mitogan(tmp_path):
    # guards the test above: the same isolation makes `import mitogan` fail
    code = _STANDALONE.split("import numpy")[0] + "import mitogan\n"
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0 and ("ModuleNotFoundError" in out.stderr or "ImportError" in out.stderr)


def test_bundle_modes_follow_the_umask(trained, tmp_path):
    old = os.umask(0o002)
    try:
        b = export_bundle(trained, tmp_path / "shared" / "bundle")
    finally:
        os.umask(old)
    assert stat.S_IMODE(b.stat().st_mode) == 0o775  # not mkdtemp's 0700
    assert {stat.S_IMODE(f.stat().st_mode) for f in b.iterdir()} == {0o664}


def test_model_card_layout_and_provenance(trained, tmp_path):
    cache = os.environ.get("MITOGAN_CACHE_DIR") or os.path.expanduser("~/.cache/mitogan")
    per_video = [{"source": f"v{i}", "mapping": "percentile", "range": [100.0 + i, 900.0 + i], "dtype": "uint16"}
                 for i in range(20)]
    b = export_bundle(trained, tmp_path / "search" / "best",
                      metrics={"primary": 0.5, "fidelity": 0.2, "pid": 123, "hostname": "h", "node_ip": "10.0.0.1",
                               "done": False, "iterations_since_restore": 3, "time_total_s": 9.0,
                               "copy_share": 0.04, "authenticity_gap": 0.0, "copying": 0.0, "c2st_accuracy": 0.91,
                               "c2st_accuracy_sd": 0.02, "c2st_baseline": 0.66, "c2st_baseline_sd": 0.03,
                               "structure_auc": 0.62, "structure_auc_null": 0.51, "structure_gap": 0.224,
                               "pairwise_correlation": 0.173, "pairwise_correlation_real": 0.012,
                               "pairwise_correlation_train": 0.016, "diversity_gap": 0.16,
                               "diversity_gap_features": 0.0, "diversity_gap_layout": 0.0,
                               "diversity_gap_correlation": 0.16},
                      source={"search": "search", "search_dir": str(tmp_path / "search"), "trial_id": "t1"},
                      data={"sources": [os.path.join(cache, "sim-abc", "video_000.tif")], "intensity": per_video,
                            "n_tiles": 32, "evaluation": {"split": "videos", "n_train": 30, "n_heldout": 10},
                            "pixel_size_um": 0.1})
    card = (b / "README.md").read_text()
    import yaml
    front = yaml.safe_load(card.split("---\n")[1])  # Hugging Face layout: YAML front matter first
    assert card.startswith("---\n") and front["library_name"] == "pytorch" and "mitochondria" in front["tags"]
    for section in ("## Model", "## Intended use", "## Training data", "## Preprocessing", "## Metrics",
                    "## Limitations"):
        assert section in card
    for key in ("pid", "hostname", "node_ip", "done", "iterations_since_restore", "time_total_s"):
        assert f"| {key} |" not in card and key not in json.loads((b / "metrics.json").read_text())["metrics"]
    assert str(tmp_path) not in card and cache not in card and str(tmp_path) not in (b / "metrics.json").read_text()
    assert "$MITOGAN_CACHE_DIR/sim-abc/video_000.tif" in card
    assert "10 held-out real tiles" in card  # metrics come with their sample sizes
    # the judges, each beside its baseline
    assert "4.0% of generated tiles" in card and "(baseline: 5 %)" in card and "not flagged as copying" in card
    assert "accuracy 0.910 ± 0.020, against a baseline of 0.660 ± 0.030" in card
    assert "in 62.0% of pairs, against 51.0% for the training tiles (baseline); structure gap 0.224" in card
    assert ("at 0.173 on average, against 0.016 for real tiles" in card
            and "diversity gap 0.160 (features 0.000, layout 0.000, correlation 0.160)" in card)
    config = load_bundle_config(b)
    # one mapping (medians over the 20 videos), not 20 pairs
    assert config["output"]["intensity"]["lo"] == pytest.approx(109.5)
    assert config["output"]["intensity"]["hi"] == pytest.approx(909.5)
    assert config["pixel_size_um"] == pytest.approx(0.1)  # tile scale 1.0


def test_bundle_contents(bundle):
    config = load_bundle_config(bundle)
    assert config["image_size"] == 32 and config["latent_dim"] == 16
    assert config["output"]["intensity"] == {"lo": 100.0, "hi": 900.0}
    assert json.loads((bundle / "metrics.json").read_text())["metrics"]["primary"] == 0.5
    card = (bundle / "README.md").read_text()
    assert "load_generator" in card and "Intended use" in card
    # weights are tensors only: a weights_only load works
    assert all(isinstance(v, torch.Tensor) for v in torch.load(bundle / "generator.pt", weights_only=True).values())


def test_latents_are_reproducible_per_index():
    full = sample_latents(16, 10, seed=1)
    assert torch.equal(sample_latents(16, 10, seed=1), full)
    assert not torch.equal(sample_latents(16, 10, seed=2), full)


def test_missing_file(bundle):
    (bundle / "generator.pt").unlink()
    with pytest.raises(InputError, match=r"generator.pt: missing: the bundle is incomplete"):
        load_generator(bundle)


def test_tampered_file(bundle):
    with open(bundle / "generator.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(InputError, match=r"generator.pt: checksum mismatch"):
        load_generator(bundle)


def test_unknown_format_version(bundle):
    config = json.loads((bundle / "config.json").read_text())
    config["format_version"] = 99
    (bundle / "config.json").write_text(json.dumps(config))
    # re-sign so that only the version is wrong
    import hashlib
    lines = [f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()}  {n}"
             for n in [line.split("  ")[1] for line in (bundle / "checksums.sha256").read_text().splitlines()]]
    (bundle / "checksums.sha256").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"config.json: unknown bundle format version 99"):
        load_generator(bundle)


def test_not_a_bundle(tmp_path):
    with pytest.raises(InputError, match="not a generator bundle directory"):
        load_generator(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"checksums.sha256: missing"):
        load_generator(tmp_path / "empty")


# ------------------------------------------------------------------------------ the discriminator in the bundle
def test_bundle_keeps_the_discriminator_weights_only(trained, bundle):
    from safetensors import safe_open

    from mitogan.export import load_discriminator
    from mitogan.models import discriminator_from_config

    ckpt = load_checkpoint(trained)
    ref = discriminator_from_config(ckpt["discriminator_config"])
    ref.load_state_dict(ckpt["D"])
    ref.eval()
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(ref(x), load_discriminator(bundle)(x))  # same critic values as the checkpoint's D
    config = load_bundle_config(bundle)
    assert config["discriminator"] == ckpt["discriminator_config"]
    assert "discriminator.safetensors" in (bundle / "checksums.sha256").read_text()
    with safe_open(str(bundle / "discriminator.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["mitogan_discriminator"]) == ckpt["discriminator_config"]
    assert "discriminator.safetensors" in (bundle / "README.md").read_text()


def test_bundle_without_a_discriminator_is_one_clear_line(bundle):
    from mitogan.export import load_discriminator

    config = json.loads((bundle / "config.json").read_text())
    del config["discriminator"]  # as bundles exported before they kept D
    (bundle / "config.json").write_text(json.dumps(config))
    (bundle / "discriminator.safetensors").unlink()
    import hashlib
    names = [n for n in (line.split("  ")[1] for line in (bundle / "checksums.sha256").read_text().splitlines())
             if (bundle / n).exists()]
    (bundle / "checksums.sha256").write_text("".join(f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()}  {n}\n"
                                                     for n in names))
    load_generator(bundle)  # the generator still loads
    with pytest.raises(InputError, match="the bundle has no discriminator") as e:
        load_discriminator(bundle)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------- export never destroys others' files
def _cli(argv, capsys):
    from mitogan.cli import main

    rc = main(argv)
    return rc, capsys.readouterr().err


def _tree(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_export_refuses_a_folder_of_user_files(trained, tmp_path, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("my thesis")
    rc, err = _cli(["export", str(trained.parent), "--out", str(user), "--overwrite"], capsys)
    assert rc == 2 and "MitoGAN did not write" in err and err.count("\n") == 1
    assert (user / "notes.txt").read_text() == "my thesis" and len(list(user.iterdir())) == 1


@pytest.mark.parametrize("where", ["run", "inside", "parent"])
def test_export_refuses_out_that_is_or_holds_the_run(trained, where, capsys):
    run = trained.parent
    out = {"run": run, "inside": run / "bundle", "parent": run.parent}[where]
    before = _tree(run)
    rc, err = _cli(["export", str(run), "--out", str(out), "--overwrite"], capsys)
    assert rc == 2 and "being exported" in err and err.count("\n") == 1
    assert _tree(run) == before and not (run / "bundle").exists()


def test_export_replaces_its_own_bundle_only_with_overwrite(trained, tmp_path, capsys):
    out = tmp_path / "b"
    assert _cli(["export", str(trained.parent), "--out", str(out)], capsys)[0] == 0
    assert json.loads((out / ".mitogan.json").read_text())["kind"] == "bundle"
    first = _tree(out)
    rc, err = _cli(["export", str(trained.parent), "--out", str(out)], capsys)
    assert rc == 2 and "--overwrite" in err and _tree(out) == first  # refused, untouched
    (out / "extra.txt").write_text("x")
    stale = _stale_tmp(out, _dead_pid())  # left by an export that was killed
    assert _cli(["export", str(trained.parent), "--out", str(out), "--overwrite"], capsys)[0] == 0
    assert not (out / "extra.txt").exists() and load_bundle_config(out)["image_size"] == 32
    assert not stale.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _stale_tmp(final, pid, host=None):
    from mitogan.fsutil import _HOST, write_marker

    d = final.parent / f".{final.name}.{host or _HOST}-{pid}.abcd_123.tmp"
    d.mkdir()
    write_marker(d, "bundle")
    (d / "generator.pt").write_bytes(b"half")
    return d


def test_only_temporary_folders_of_dead_runs_here_are_cleaned(tmp_path):
    from mitogan.fsutil import atomic_dir, proc_stat

    final = tmp_path / "b"
    dead = _stale_tmp(final, _dead_pid())
    alive = _stale_tmp(final, os.getpid())  # a run still writing
    elsewhere = _stale_tmp(final, _dead_pid(), host="another-node")  # shared storage: not ours to judge
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # ended, not reaped: a killed run whose parent
    deadline = time.monotonic() + 30  # is gone, on a host whose init does not reap orphans
    while time.monotonic() < deadline and proc_stat(zombie.pid)[0] != "Z":
        time.sleep(0.05)
    unreaped = _stale_tmp(final, zombie.pid)
    users = [tmp_path / ".b.notes.tmp", tmp_path / ".b.tmp", tmp_path / ".c.x-1.abcd_123.tmp"]
    for u in users:
        u.mkdir()
    with atomic_dir(final, "bundle") as tmp:
        assert f"-{os.getpid()}." in tmp.name  # its own name says whose it is
    zombie.wait()
    assert not dead.exists() and alive.exists() and elsewhere.exists() and all(u.exists() for u in users)
    assert not unreaped.exists()


def test_export_refuses_another_mitogan_output(trained, tmp_path, capsys):
    from mitogan.fsutil import write_marker

    other = tmp_path / "synth"
    other.mkdir()
    write_marker(other, "synth")
    (other / "manifest.csv").write_text("a\n")
    rc, err = _cli(["export", str(trained.parent), "--out", str(other), "--overwrite"], capsys)
    assert rc == 2 and "not a bundle" in err and (other / "manifest.csv").read_text() == "a\n"


def test_a_failed_export_keeps_the_old_bundle(trained, tmp_path, capsys):
    out = tmp_path / "b"
    export_bundle(trained, out)
    before = _tree(out)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc, err = _cli(["export", str(bad), "--out", str(out), "--overwrite"], capsys)
    assert rc == 2 and _tree(out) == before


# ------------------------------------------------------------ a bundle verifies completely or not at all
@pytest.fixture(scope="module")
def pristine(trained, tmp_path_factory):
    """One bundle exported once for the module; tests change copies of it (``fresh``)."""
    return export_bundle(trained, tmp_path_factory.mktemp("pristine") / "bundle")


@pytest.fixture
def fresh(pristine, tmp_path):
    import shutil

    return Path(shutil.copytree(pristine, tmp_path / "bundle"))


def _sign(bundle, names, extra=""):
    """Rewrite checksums.sha256 to list ``names`` (with their current sums), then ``extra`` lines."""
    import hashlib

    (bundle / "checksums.sha256").write_text("".join(
        f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()}  {n}\n" for n in names) + extra)


def _names(bundle):
    return [line.split("  ")[1] for line in (bundle / "checksums.sha256").read_text().splitlines()]


def _refused(bundle, match, load=load_generator):
    with pytest.raises(InputError, match=match) as e:
        load(bundle)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_list_without_the_weights_line_is_refused(fresh):
    # zeroed generator.pt whose line was dropped: before, it loaded (rc 0) with zero weights
    state = torch.load(fresh / "generator.pt", weights_only=True)
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, fresh / "generator.pt")
    _sign(fresh, [n for n in _names(fresh) if n != "generator.pt"])
    _refused(fresh, r"checksums.sha256: does not list generator.pt")


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_an_empty_list_is_refused(fresh, text):
    (fresh / "checksums.sha256").write_text(text)
    _refused(fresh, r"checksums.sha256: lists no files")


def test_an_unlisted_bundle_file_is_refused(fresh):
    _sign(fresh, [n for n in _names(fresh) if n != "metrics.json"])
    _refused(fresh, r"does not list metrics.json")


def test_a_list_naming_a_file_outside_the_bundle_is_refused_unread(fresh, tmp_path, monkeypatch):
    import hashlib

    import mitogan.export as ex

    outside = tmp_path / "secret"
    outside.write_text("x")
    read = []
    monkeypatch.setattr(ex, "sha256_file", lambda p: read.append(Path(p)) or hashlib.sha256(Path(p).read_bytes()).hexdigest())
    for name in ("../secret", str(outside), "../../../../etc/hostname", "sub/generator.pt"):
        _sign(fresh, _names(fresh)[:9], extra=f"{hashlib.sha256(b'x').hexdigest()}  {name}\n")
        _refused(fresh, r"checksums.sha256: line 10 names .* not a file of a bundle")
    assert all(p.parent == fresh for p in read)  # nothing outside the bundle was opened


@pytest.mark.parametrize("line", ["nonsense", "abc  generator.pt", "0" * 64 + " generator.pt"])
def test_a_malformed_list_is_refused(fresh, line):
    (fresh / "checksums.sha256").write_text((fresh / "checksums.sha256").read_text() + line + "\n")
    _refused(fresh, r"checksums.sha256: line 10 is not '<sha256>  <file>'")


@pytest.mark.parametrize("name", ["generator.pt", "checksums.sha256"])
def test_a_bundle_file_that_links_outside_is_refused(fresh, tmp_path, name):
    import shutil

    shutil.move(fresh / name, tmp_path / "elsewhere")
    (fresh / name).symlink_to(tmp_path / "elsewhere")  # same bytes: its checksum still matches
    _refused(fresh, rf"{name}: links outside the bundle")


@pytest.mark.parametrize("where", ["../x.safetensors", "/tmp/x.safetensors", "generator.safetensors.missing"])
def test_config_paths_stay_inside_the_bundle(fresh, where):
    from mitogan.export import load_discriminator

    config = json.loads((fresh / "config.json").read_text())
    config["discriminator_weights"] = where
    (fresh / "config.json").write_text(json.dumps(config))
    _sign(fresh, _names(fresh))
    _refused(fresh, r"config.json: discriminator_weights .* is not a file of this bundle", load=load_bundle_config)
    _refused(fresh, r"config.json: discriminator_weights", load=load_discriminator)


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "other config"])
def test_both_weight_files_are_verified_and_must_agree(fresh, damage):
    from safetensors.torch import load_file, save_file

    path = fresh / "generator.safetensors"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
        match = r"generator.safetensors: cannot be read"
    else:
        state = load_file(str(path))
        config = json.loads((fresh / "config.json").read_text())["generator"]
        if damage == "zeroed":
            state = {k: torch.zeros_like(v) for k, v in state.items()}
        else:
            config = {**config, "width": config["width"] * 2}
        save_file(state, str(path), metadata={"format": "pt", "mitogan_generator": json.dumps(config)})
        match = r"generator.safetensors: does not agree with generator.pt"
    _sign(fresh, _names(fresh))  # re-signed: integrity alone cannot tell
    _refused(fresh, match)


def test_a_pickle_in_the_weights_gets_no_unsafe_advice(fresh):
    import pickle

    (fresh / "generator.pt").write_bytes(pickle.dumps(os.getcwd))  # not tensors: never unpickled
    _sign(fresh, _names(fresh))
    message = _refused(fresh, r"generator.pt: holds Python objects other than tensors")
    assert "weights_only" not in message and "False" not in message


def test_the_untouched_bundle_verifies(fresh):
    from mitogan.export import load_discriminator

    assert load_generator(fresh).config == load_bundle_config(fresh)["generator"]
    load_discriminator(fresh)


def test_a_pickled_checkpoint_is_one_line_without_unsafe_advice(tmp_path, capsys):
    import pickle

    (tmp_path / "run").mkdir()
    bad = tmp_path / "run" / "checkpoint.pt"
    bad.write_bytes(pickle.dumps(os.getcwd))
    rc, err = _cli(["export", str(bad), "--out", str(tmp_path / "b")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "holds Python objects other than tensors" in err
    assert "weights_only" not in err and not (tmp_path / "b").exists()


# ------------------------------------------------------------------- a generator that copies its training data
def test_export_refuses_a_generator_flagged_as_copying_unless_allowed(trained, tmp_path, capsys):
    import shutil

    run = Path(shutil.copytree(trained.parent, tmp_path / "run"))
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "primary": 0.3, "copying": True}) + "\n")  # the metrics layer's flag
    rc, err = _cli(["export", str(run), "--out", str(tmp_path / "b")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "copying its training data" in err and "--allow-copying" in err
    assert not (tmp_path / "b").exists()
    rc, err = _cli(["export", str(run), "--out", str(tmp_path / "b"), "--allow-copying"], capsys)
    assert rc == 0 and err.count("\n") == 1 and "warning" in err and "copying" in err
    assert load_bundle_config(tmp_path / "b")["allow_copying"] is True
    card = (tmp_path / "b" / "README.md").read_text()
    assert "allow_copying: true" in card and "copies its training data" in card
    rc, err = _cli(["synth", str(tmp_path / "b"), "-n", "2", "--out", str(tmp_path / "s"), "-q"], capsys)
    assert rc == 0 and err.count("\n") == 1 and "flag it as copying" in err  # synth says so too


def test_a_search_trial_flag_is_the_number_one(trained, tmp_path):
    # search trial results carry the flag as 1.0/0.0 (export_search passes them on as metrics)
    from mitogan.errors import MitoganError
    from mitogan.export import flagged_copying

    assert flagged_copying({"copying": 1.0}) and flagged_copying({"copying": True})
    assert not any(flagged_copying({"copying": v}) for v in (0.0, False, None, "1", 0.5))
    with pytest.raises(MitoganError, match="copying its training data"):
        export_bundle(trained, tmp_path / "b", metrics={"copying": 1.0})
    assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------------------- a full disk
_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
from mitogan.cli import main
sys.exit(main(["export", sys.argv[2], "--out", sys.argv[3]]))
"""


def test_a_full_disk_during_export_is_one_line_naming_the_folder(trained, pristine, tmp_path):
    # the largest file is the torch.export program: before, its writer aborted the process (SIGABRT, rc 134)
    limit = (pristine / "generator.pt2").stat().st_size - 1
    assert limit + 1 == max(f.stat().st_size for f in pristine.iterdir())
    out = tmp_path / "b"
    r = subprocess.run([sys.executable, "-c", _FULL_DISK, str(limit), str(trained.parent), str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.count("\n") == 1 and f"{out}: the bundle could not be written" in r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())  # no half bundle, no temporary folder
