"""The README's real-data figure: real tiles beside synthetic ones, with the metrics in the title.

    python docs/story/figure.py REAL_TILES.npz SYNTH_DIR EVAL_DIR/metrics.json OUT.png

REAL_TILES: the real tiles as the best trial preprocessed them; SYNTH_DIR: a `mitogan synth --format npy`
folder; metrics.json: `mitogan evaluate REAL SYNTH` output.
"""

import json
import sys

import numpy as np

from mitogan.tiles import load_tiles
from mitogan.viz import image_grid, save_png


def main(real_path, synth_dir, metrics_path, out):
    from PIL import Image, ImageDraw

    real = load_tiles(real_path).tiles
    fake = np.load(f"{synth_dir}/images.npy")
    rng = np.random.default_rng(0)
    a = image_grid(real[rng.choice(len(real), 48, replace=False)], nrow=8)
    b = image_grid(fake[:48], nrow=8)  # the first 48 latents: no cherry-picking
    m = json.load(open(metrics_path))
    met = m["metrics"]
    text = (f"left: {len(real)} real tiles (48 random)   right: {len(fake)} synthetic (the first 48)   "
            f"{m['primary']['name']} {m['primary']['value']:.3f} (min; fidelity {met['fidelity']:.2f}, "
            f"diversity gap {met['diversity_gap']:.2f})  distinct images (Vendi) {met['vendi_fake']:.1f} vs "
            f"held-out real {met['vendi_real']:.1f}")
    gap = np.full((a.shape[0], 12), 255, np.uint8)
    body = np.concatenate([a, gap, b], 1)
    scale = 3
    img = Image.fromarray(body).resize((body.shape[1] * scale, body.shape[0] * scale), Image.NEAREST)
    canvas = Image.new("L", (img.width, img.height + 24), 255)
    canvas.paste(img, (0, 24))
    ImageDraw.Draw(canvas).text((4, 6), text, fill=0)
    save_png(np.asarray(canvas), out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
