"""The Ray Tune + Optuna + W&B layer of MitoGAN. It imports ``mitogan``; ``mitogan`` never imports it."""
