#!/usr/bin/env bash
# Create one peer's own venv, bench/.venv-PEER, with torch held at 2.13.0 by constraints.txt.
#
#   bench/peers/setup.sh ddpm                      # denoising-diffusion-pytorch (trains on the CPU)
#   bench/peers/setup.sh lightweight-gan --device cuda
#   bench/peers/setup.sh stylegan2 --device cuda
#
# lightweight-gan and stylegan2-pytorch assert a CUDA GPU at import, so they are only set up with
# --device cuda. On a CPU-only machine the constraints keep torch 2.13.0+cpu; with --device cuda the
# same version is taken from the index's CUDA build (PIP_FIND_LINKS is cleared so a local CPU wheel
# does not win). Either way the script fails if the venv ends up with another torch.
set -euo pipefail

usage="usage: bench/peers/setup.sh ddpm|lightweight-gan|stylegan2 [--device cpu|cuda]"
peer=${1:-}
device=cpu
if [ "${2:-}" = "--device" ]; then device=${3:-}; fi
case $device in cpu|cuda) ;; *) echo "setup.sh: --device must be cpu or cuda, got '$device'" >&2; exit 2 ;; esac

case $peer in
  ddpm) pkg=denoising-diffusion-pytorch==2.3.4; needs_cuda=0 ;;
  lightweight-gan) pkg=lightweight-gan==1.2.1; needs_cuda=1 ;;
  stylegan2) pkg=stylegan2-pytorch==1.9.0; needs_cuda=1 ;;
  *) echo "setup.sh: unknown peer '$peer' ($usage)" >&2; exit 2 ;;
esac
if [ "$needs_cuda" = 1 ] && [ "$device" != cuda ]; then
  echo "setup.sh: $peer asserts a CUDA GPU at import; set it up with --device cuda on a GPU machine" >&2
  exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
venv=$here/../.venv-$peer
python=${PYTHON:-python3}
"$python" -m venv "$venv"
pip=("$venv/bin/pip" install --quiet -c "$here/constraints.txt")
if [ "$device" = cuda ]; then
  PIP_FIND_LINKS= "${pip[@]}" torch==2.13.0 torchvision==0.28.0
else
  "${pip[@]}" torch==2.13.0 torchvision==0.28.0
fi
"${pip[@]}" "$pkg"

# the point of the constraints: the peer must not have swapped torch (or pulled CUDA libraries on a CPU box)
torch_line=$("$venv/bin/pip" list 2>/dev/null | awk '$1 == "torch" {print $2}')
case $torch_line in 2.13.0*) ;; *) echo "setup.sh: $venv has torch '$torch_line', not 2.13.0" >&2; exit 1 ;; esac
if [ "$device" = cpu ] && "$venv/bin/pip" list 2>/dev/null | grep -qi '^nvidia-'; then
  echo "setup.sh: $venv pulled CUDA libraries (nvidia-*) on a CPU setup" >&2; exit 1
fi
echo "setup.sh: $venv ready: torch $torch_line, $pkg"
