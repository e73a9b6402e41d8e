"""A search given a simulator (train.sim_config) searches the share of simulator tiles (train.sim_share);
without one, or with the share fixed, it does not; a missing simulator is one line naming the key."""

from __future__ import annotations

import optuna
import pytest

from mitogan.errors import ConfigError, MitoganError
from mitogan.simulate import SimParams
from mitogan.simfit.data import write_fitted
from search.space import load_space


@pytest.fixture
def fitted(tmp_path):
    return write_fitted(tmp_path / "fit" / "fitted.yaml", SimParams())


def _sampled(space, n: int = 20) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        space.define(trial)
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def test_a_simulator_makes_the_share_a_searched_parameter(fitted, monkeypatch):
    monkeypatch.chdir(fitted.parent.parent)
    space = load_space("fewshot", ["train.sim_config=fit"])  # the fit-sim folder, relative
    assert space.fixed["train.sim_config"] == str(fitted.resolve())  # absolute: trials run in other folders
    shares = [p["train.sim_share"] for p in _sampled(space)]
    assert min(shares) >= 0 and max(shares) <= 0.9 and len(set(shares)) == len(shares)
    for values in _sampled(space, 3):  # every sample is a valid whole config
        assert space.config_for(values).train.sim_share == values["train.sim_share"]


def test_no_simulator_or_a_fixed_share_searches_no_share(fitted):
    assert "train.sim_share" not in _sampled(load_space("fewshot"), 1)[0]
    fixed = load_space("fewshot", [f"train.sim_config={fitted}", "train.sim_share=0"])
    assert "train.sim_share" not in _sampled(fixed, 1)[0] and fixed.base_config().train.sim_share == 0


def test_a_missing_simulator_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="train.sim_config: .*does not exist") as e:
        load_space("smoke", [f"train.sim_config={tmp_path / 'nope.yaml'}"])
    assert "\n" not in str(e.value)


def test_sim_config_is_kept_by_a_resumed_search_not_changed(fitted):
    from search.cli import build_defaults, run

    args = build_defaults()
    args.resume, args.sim_config = "old", str(fitted)
    with pytest.raises(MitoganError, match="--sim-config with --resume"):
        run(args)
