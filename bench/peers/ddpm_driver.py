"""Train denoising-diffusion-pytorch for a wall-clock budget, then sample: the diffusion peer of bench_peers.

Runs inside the peer's own venv (bench/.venv-ddpm, made by bench/peers/setup.sh), so it imports nothing from
mitogan. It reads the training tiles bench_peers.py wrote and writes the generated ones:

    python bench/peers/ddpm_driver.py --train train.npy --out DIR --budget-s 300 --n 1000

train.npy  (N, 1, S, S) float32 in [-1, 1], the training split only
DIR/samples.npy  (n, 1, S, S) float32 in [-1, 1];  DIR/ddpm.json  what ran (steps, seconds, sizes)

Optimiser, learning rate, batch size, EMA and the horizontal flip are the library Trainer's defaults; only the
network width and the DDIM sampling steps are sized down so that training and sampling fit a CPU budget.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def _declare_torchvision_nms() -> None:
    """Let torchvision 0.28 import beside the CPU torch 2.13.

    The only torchvision 0.28.0 wheel on the index is built against CUDA torch, so its C++ ops (_C.so) do not
    load here; torchvision then still registers fake kernels for ``torchvision::nms``/``qnms`` unguarded and
    its import fails with "operator torchvision::nms does not exist". Declaring the two schemas first lets it
    import; the diffusion model never calls them (denoising-diffusion-pytorch imports torchvision only for its
    Trainer's transforms and image saving).
    """
    if torch._C._dispatch_has_kernel_for_dispatch_key is None:  # pragma: no cover - torch without a dispatcher
        return
    try:
        torch.ops.torchvision.nms  # noqa: B018 - present when torchvision's C++ ops do load
    except (AttributeError, RuntimeError):
        _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


_LIB = torch.library.Library("torchvision", "FRAGMENT")  # kept alive: the schemas live as long as it does
_declare_torchvision_nms()

from denoising_diffusion_pytorch import GaussianDiffusion, Unet  # noqa: E402 - after the schemas above
from ema_pytorch import EMA  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="training tiles .npy, (N, 1, S, S) in [-1, 1]")
    p.add_argument("--out", required=True, help="folder for samples.npy and ddpm.json")
    p.add_argument("--budget-s", type=float, required=True, help="training wall-clock budget in seconds")
    p.add_argument("--n", type=int, default=1000, help="samples to generate after training")
    p.add_argument("--dim", type=int, default=32, help="Unet base width (library example: 64)")
    p.add_argument("--sampling-steps", type=int, default=50, help="DDIM steps when sampling (of 1000)")
    p.add_argument("--batch-size", type=int, default=16, help="training batch (library Trainer default: 16)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def build(size: int, dim: int, sampling_steps: int) -> GaussianDiffusion:
    # three stages for 32-64 px tiles (the library's (1, 2, 4, 8) is for 128 px and up)
    unet = Unet(dim=dim, dim_mults=(1, 2, 4), channels=1, flash_attn=False)
    return GaussianDiffusion(unet, image_size=size, timesteps=1000, sampling_timesteps=sampling_steps)


def train(diffusion, tiles: torch.Tensor, budget_s: float, batch_size: int) -> int:
    """Steps of Adam (Trainer defaults: lr 1e-4, betas 0.9/0.99) until the budget is spent; EMA kept aside."""
    opt = torch.optim.Adam(diffusion.parameters(), lr=1e-4, betas=(0.9, 0.99))
    ema = EMA(diffusion, beta=0.995, update_every=10)
    diffusion.train()
    start, steps = time.monotonic(), 0
    while time.monotonic() - start < budget_s:
        idx = torch.randint(len(tiles), (batch_size,))
        x = tiles[idx]  # (b, 1, S, S) in [0, 1]
        flip = torch.rand(batch_size) < 0.5  # the Trainer's augment_horizontal_flip
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        loss = diffusion(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update()
        steps += 1
    diffusion.load_state_dict(ema.ema_model.state_dict())  # sample from the EMA weights, as the Trainer does
    return steps


@torch.no_grad()
def sample(diffusion, n: int, batch: int = 250) -> np.ndarray:
    diffusion.eval()
    out = [diffusion.sample(batch_size=min(batch, n - i)) for i in range(0, n, batch)]  # each (b, 1, S, S) in [0, 1]
    return torch.cat(out).clamp(0, 1).mul(2).sub(1).numpy().astype(np.float32)


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    tiles = torch.from_numpy(np.load(a.train)).float().add(1).div(2)  # [-1, 1] -> the library's [0, 1]
    diffusion = build(tiles.shape[-1], a.dim, a.sampling_steps)
    t0 = time.monotonic()
    steps = train(diffusion, tiles, a.budget_s, a.batch_size)
    t1 = time.monotonic()
    fake = sample(diffusion, a.n)
    t2 = time.monotonic()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "samples.npy", fake)
    info = {"steps": steps, "train_s": round(t1 - t0, 1), "sample_s": round(t2 - t1, 1), "n": a.n,
            "dim": a.dim, "sampling_steps": a.sampling_steps, "batch_size": a.batch_size, "threads": a.threads,
            "params": sum(p.numel() for p in diffusion.model.parameters()), "train_tiles": len(tiles)}
    (out / "ddpm.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
