"""The stopping thresholds are config keys, so a search space can fix or sample them like any other key
and every trial's policy uses its own values (search.trainable builds it from the trial's config)."""

from mitogan.stopping import NonConvergencePolicy, grace_steps
from search.space import load_space

SPACE = """
name: s
fixed: {train.steps: 40, train.report_every: 5}
params:
  - {name: stop.diversity_floor, type: float, low: 0.01, high: 0.2}
"""


def test_a_space_fixes_and_samples_stop_thresholds(tmp_path):
    (tmp_path / "s.yaml").write_text(SPACE)
    space = load_space(str(tmp_path / "s.yaml"), ["stop.grace=0.5"])  # as `mitogan search --set stop.grace=0.5`
    assert [p.name for p in space.params] == ["stop.diversity_floor"]
    cfg = space.config_for({"stop.diversity_floor": 0.15})
    policy = NonConvergencePolicy(cfg)
    assert policy.stop.diversity_floor == 0.15 and policy.grace_steps == grace_steps(cfg) == 20
    assert grace_steps(space.base_config()) == 20  # ASHA's grace period (search.run) is the same number
