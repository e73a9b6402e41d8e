"""Known-truth validation of the explanation (small sizes): a discriminator trained on simulated videos
that differ in ONE property must be explained by that property (its edit moves D's score most), and not
by another one (the negative controls show the check can fail)."""

import pytest

from mitogan.explain.validate import validate_property

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("prop, other", [("beading", "width"),
                                         pytest.param("width", "beading", marks=pytest.mark.long)])
def test_the_property_is_recovered_and_another_is_not(prop, other):
    own, control = validate_property(prop, judge_as=(other,))
    assert own["accuracy"] > 0.75  # the discriminator did learn the property (on videos it never saw)
    assert own["passed"] and own["top_edit"] in {"beading": ("smooth_beads",), "width": ("thin", "thicken")}[prop]
    assert not control["passed"]  # the same explanation does not name the other property
