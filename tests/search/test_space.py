"""Search spaces: shipped ones load; malformed ones are rejected naming the entry; conditionals hold."""

import json

import optuna
import pytest

from mitogan.config import Config
from mitogan.errors import ConfigError
from search.space import load_space, shipped_spaces

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("name", ["smoke", "default"])
def test_shipped_spaces_load_and_every_sample_is_a_valid_config(name):
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        fixed = space.define(trial)
        cfg = space.config_for({**fixed, **trial.params})
        assert isinstance(cfg, Config)
        study.tell(trial, 0.0)


def test_conditional_parameters_appear_only_with_their_parent():
    space = load_space("smoke")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kinds = set()
    for _ in range(60):
        trial = study.ask()
        space.define(trial)
        p = trial.params
        kinds.add(p["loss.kind"])
        # clip only for WGAN-clip, lambda only for WGAN-GP, n_critic only for the WGAN family
        assert ("loss.clip" in p) == (p["loss.kind"] == "wgan_clip")
        assert ("loss.gp_lambda" in p) == (p["loss.kind"] == "wgan_gp")
        assert ("loss.n_critic" in p) == (p["loss.kind"] in ("wgan_clip", "wgan_gp"))
        assert ("preprocess.denoise.h" in p) == p["preprocess.denoise.enabled"]
        study.tell(trial, 0.0)
    assert kinds == {"bce", "hinge", "wgan_gp", "wgan_clip"}


def test_user_copy_of_a_space_file_loads(tmp_path):
    copy = tmp_path / "mine.yaml"
    copy.write_text(shipped_spaces()["smoke"].read_text().replace("train.steps: 1000", "train.steps: 50"))
    space = load_space(copy)
    assert space.base_config().train.steps == 50 and space.source == str(copy)


BAD = {
    "unknown parameter": ("- {name: model.widht, type: int, low: 8, high: 16}", r"params\[0\] \(model.widht\): unknown parameter"),
    "empty range": ("- {name: optim.lr_g, type: float, low: 0.01, high: 0.001}", r"params\[0\] \(optim.lr_g\): empty range"),
    "bad distribution": ("- {name: optim.lr_g, type: lognormal, low: 1, high: 2}", r"type 'lognormal' is not a distribution"),
    "log of zero": ("- {name: optim.lr_g, type: float, low: 0.0, high: 0.1, log: true}", r"log scale needs low > 0"),
    "empty choices": ("- {name: model.arch, type: categorical, choices: []}", r"non-empty 'choices'"),
    "value the config rejects": ("- {name: model.arch, type: categorical, choices: [dcgan, vit]}", r"value 'vit' is rejected"),
    "condition on nothing": ("- {name: loss.clip, type: float, low: 0.01, high: 0.1, when: {loss.kind: wgan_clip}}",
                             r"condition on 'loss.kind', which is not a parameter defined above"),
    "typo in a field": ("- {name: loss.clip, type: float, low: 0.01, hihg: 0.1}", r"unknown field 'hihg'"),
    "NaN bound": ("- {name: optim.lr_g, type: float, low: .nan, high: 0.1}", r"\(optim.lr_g\): low=nan and high=0.1 must be finite"),
    "infinite bound": ("- {name: train.steps, type: int, low: 10, high: .inf}", r"must be finite"),
    "zero step": ("- {name: train.steps, type: int, low: 10, high: 100, step: 0}", r"\(train.steps\): step must be a positive"),
    "negative step": ("- {name: optim.lr_g, type: float, low: 0.1, high: 0.5, step: -0.1}", r"step must be a positive"),
    "NaN step": ("- {name: optim.lr_g, type: float, low: 0.1, high: 0.5, step: .nan}", r"step must be a positive"),
    "text step": ("- {name: optim.lr_g, type: float, low: 0.1, high: 0.5, step: big}", r"step must be a positive"),
    "step too big": ("- {name: train.steps, type: int, low: 10, high: 20, step: 50}", r"does not divide the range"),
    "step not dividing": ("- {name: optim.lr_g, type: float, low: 0.1, high: 0.5, step: 0.3}", r"does not divide"),
    "fractional int step": ("- {name: train.steps, type: int, low: 10, high: 20, step: 2.5}", r"whole-number step"),
    "fractional int bound": ("- {name: train.steps, type: int, low: 10.5, high: 20}", r"whole-number bounds"),
    "step with log": ("- {name: optim.lr_g, type: float, low: 0.001, high: 0.1, step: 0.001, log: true}", r"step and log"),
    "log not a flag": ("- {name: optim.lr_g, type: float, low: 0.001, high: 0.1, log: maybe}", r"'log' must be true or false"),
    "when not a mapping": ("- {name: loss.clip, type: float, low: 0.01, high: 0.1, when: wgan}", r"'when' must map"),
    "repeated choice": ("- {name: model.arch, type: categorical, choices: [dcgan, dcgan]}", r"repeat a value"),
    "nested choice": ("- {name: model.arch, type: categorical, choices: [[dcgan]]}", r"plain values"),
    "range on a categorical": ("- {name: model.arch, type: categorical, choices: [dcgan], low: 1}", r"choices' only"),
    "value out of the config's range": ("- {name: optim.lr_g, type: float, low: 0.001, high: 50}", r"value 50 is rejected"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_space_is_rejected_naming_the_entry(tmp_path, case):
    entry, message = BAD[case]
    f = tmp_path / "bad.yaml"
    f.write_text(f"name: bad\nparams:\n  {entry}\n")
    with pytest.raises(ConfigError, match=message):
        load_space(f)


def test_fixed_keys_are_checked(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("fixed:\n  train.stepz: 3\nparams:\n  - {name: model.arch, type: categorical, choices: [dcgan]}\n")
    with pytest.raises(ConfigError, match=r"fixed.train.stepz: unknown config key"):
        load_space(f)
    with pytest.raises(ConfigError, match="neither a shipped space"):
        load_space(tmp_path / "missing.yaml")


def test_set_overrides_fixed_keys_but_not_sampled_ones():
    space = load_space("smoke", ["train.steps=200", "train.batch_size=16"])
    assert space.base_config().train.steps == 200 and space.base_config().train.batch_size == 16
    with pytest.raises(ConfigError, match=r"--set loss.kind: the space samples this parameter"):
        load_space("smoke", ["loss.kind=bce"])
    with pytest.raises(ConfigError, match=r"fixed.train.stepz: unknown config key"):
        load_space("smoke", ["train.stepz=3"])
    with pytest.raises(ConfigError, match=r"train.steps: expected an integer"):
        load_space("smoke", ["train.steps=lots"])


def test_errors_are_one_line_naming_the_file_and_the_parameter(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: bad\nparams:\n  - {name: model.arch, type: categorical, choices: [dcgan]}\n"
                 "  - {name: train.steps, type: int, low: 10, high: 100, step: .nan}\n")
    with pytest.raises(ConfigError) as e:
        load_space(f)
    assert str(e.value).startswith(f"{f}: params[1] (train.steps): step") and "\n" not in str(e.value)
    f.write_text("name: bad\nparams: {a: 1}\n")
    with pytest.raises(ConfigError, match="'params' must be a list"):
        load_space(f)


START_SPACE = """name: s
params:
  - {name: loss.kind, type: categorical, choices: [bce, wgan_clip, hinge]}
  - {name: loss.clip, type: float, low: 0.005, high: 0.05, when: {loss.kind: wgan_clip}}
  - {name: model.g_width, type: categorical, choices: [8, 16]}
  - {name: train.steps, type: int, low: 100, high: 400, step: 100}
start:
"""

BAD_START = {
    "not a list": ("  {loss.kind: bce}", r"'start' must be a list"),
    "not a mapping": ("  - hinge", r"start\[0\]: expected a mapping"),
    "unknown key": ("  - {loss.kindd: bce}", r"start\[0\].loss.kindd: not a parameter of this space"),
    "not a choice": ("  - {loss.kind: wgan_gp}", r"start\[0\].loss.kind: 'wgan_gp' is not one of the choices"),
    "a flag for a number": ("  - {model.g_width: true}", r"start\[0\].model.g_width: True is not one of the choices"),
    "out of range": ("  - {loss.kind: wgan_clip, loss.clip: 0.5}", r"start\[0\].loss.clip: 0.5 is not a number in"),
    "off the grid": ("  - {train.steps: 150}", r"start\[0\].train.steps: 150 is not on the grid"),
    "not whole": ("  - {train.steps: 200.5}", r"start\[0\].train.steps: 200.5 is not a whole number"),
    "inactive": ("  - {loss.kind: bce, loss.clip: 0.01}", r"start\[0\].loss.clip: inactive at this point"),
    "second point": ("  - {loss.kind: bce}\n  - {model.g_width: 12}", r"start\[1\].model.g_width: 12 is not one"),
}


@pytest.mark.parametrize("case", sorted(BAD_START))
def test_a_bad_start_point_is_one_line_naming_it(tmp_path, case):
    entry, message = BAD_START[case]
    f = tmp_path / "s.yaml"
    f.write_text(START_SPACE + entry + "\n")
    with pytest.raises(ConfigError, match=message) as e:
        load_space(f)
    assert str(e.value).startswith(f"{f}: ") and "\n" not in str(e.value)


def test_start_points_are_kept_as_the_space_writes_its_choices(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(START_SPACE + "  - {loss.kind: wgan_clip, loss.clip: 0.01, model.g_width: 16.0, train.steps: 300.0}\n"
                 "  - {loss.kind: hinge}\n")
    space = load_space(f)
    first = space.start[0]
    assert first == {"loss.kind": "wgan_clip", "loss.clip": 0.01, "model.g_width": 16, "train.steps": 300}
    assert type(first["model.g_width"]) is int and type(first["train.steps"]) is int
    assert space.start[1] == {"loss.kind": "hinge"}  # the rest is sampled when it runs
    assert load_space("fewshot").config_for(load_space("fewshot").start[0]).model.arch == "dcgan"


def test_a_resumed_search_keeps_the_defaults_it_was_launched_with():
    # a search launched by an older MitoGAN (its defaults recorded in search.json) and continued by this one:
    # its trials are built with the launch's defaults, not today's (a changed default would also make a
    # restored trial's checkpoint disagree with its config); keys the launch did not know take today's
    from mitogan.config import to_flat
    from search.run import SearchOptions, _launch_info, space_for_resume

    opts = SearchOptions(space="smoke", overrides=["train.steps=50"])
    launch = _launch_info(opts, load_space("smoke", opts.overrides), "s")
    today = to_flat(Config())
    assert launch["defaults"] == today and json.loads(json.dumps(launch)) == launch  # search.json is JSON
    older = {k: v for k, v in today.items() if k != "model.g_psf"}
    older.update({"model.g_noise": not today["model.g_noise"], "model.gone_key": 1,
                  "train.steps": 7, "model.d_norm": "batch"})  # fixed by --set; sampled by the smoke space
    space = space_for_resume(opts, {**launch, "defaults": older})
    cfg = to_flat(space.config_for({}))
    assert cfg["model.g_noise"] == (not today["model.g_noise"])  # the launch's default
    assert cfg["train.steps"] == 50  # the launch's --set wins over any default
    assert cfg["model.g_psf"] == today["model.g_psf"]  # a key the launch did not know: today's default
    assert "model.gone_key" not in space.defaults  # unknown to this version: dropped
    sampled = {p.name for p in space.params}
    assert not sampled & set(space.defaults)  # a sampled key is never held fixed
    # a search.json from before the defaults were recorded: today's, as before
    assert space_for_resume(opts, {k: v for k, v in launch.items() if k != "defaults"}).defaults == {}
