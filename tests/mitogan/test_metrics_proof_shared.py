"""The objective's proof (test_metrics_proof.py) on the shared real data (``../shared/data``): every ordering rule
holds for 5 seeds of the metric's randomness, except the known ones (``KNOWN_SHARED``, explained there). In a file
of its own so that CI's two test processes (``--dist loadfile``) run it beside the other proofs: ~4 of their ~9
minutes."""

import numpy as np
import pytest

from mitogan.metrics.proof import proof_scores, videos_to_tiles
from tests.mitogan.test_metrics_proof import KNOWN_SHARED, SEEDS, _check


@pytest.mark.slow
def test_proof_on_shared_real_data(shared_data):
    from mitogan.io import read_inputs
    from mitogan.preprocess import quality_report

    # frames with no signal are left out exactly as preprocessing leaves them out (quality check)
    frames = [np.delete(v.frames, quality_report(v)["flagged"], axis=0) for v in read_inputs(shared_data)]
    _check(proof_scores(videos_to_tiles([f for f in frames if len(f)], 64), seeds=SEEDS), known=KNOWN_SHARED)
