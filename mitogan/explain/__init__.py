"""Explain a trained discriminator: which geometric features of mitochondria decide "real".

- ``attribution``: integrated gradients, Grad-CAM and gradient maps, batched, with the model-randomisation
  sanity check (a method that fails it is not reported);
- ``geometry``: structures of each tile (skeleton, edge, background, branch/end points, beads, thick/thin,
  high/low curvature) and the area-normalised saliency mass on each, with bootstrap intervals;
- ``features``: D's score regressed on standardised morphology features, permutation importance;
- ``edits``: controlled edits of real tiles (remove a branch, smooth beads, thin/thicken, fragment) and
  the change in D's score;
- ``validate``: the known-truth check on simulated data differing in one property;
- ``report``: overlays, ranked tables (CSV, Markdown), a one-page HTML summary;
- ``pipeline``: ``explain_discriminator(d, real, fake, out_dir)``, all of the above into one folder;
- ``source``: the discriminator (and generator) of a run, checkpoint, bundle or search folder.

See docs/explain.md.
"""
