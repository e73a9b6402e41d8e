"""MitoGAN: GANs for small fluorescence-microscopy datasets of mitochondria.

The core library. It stands alone: it never imports Ray or Optuna, and imports wandb only inside the
function that logs a local run (``search`` is the Ray layer on top of it).
"""

__version__ = "0.1.0"


def load_generator(bundle, device="cpu"):
    """Load an exported generator bundle (verified) in eval mode: see ``mitogan.export.load_generator``."""
    from mitogan.export import load_generator as _load

    return _load(bundle, device=device)
