"""MitoGAN: GANs for small fluorescence-microscopy datasets of mitochondria.

The core library. It stands alone: it never imports Ray or Optuna, and imports wandb only inside the
function that logs a local run (``search`` is the Ray layer on top of it).
"""

__version__ = "0.1.0"
