#!/usr/bin/env bash
# The GPU checks and benchmarks as one prepared run (about 9 minutes on one GPU), for a lent GPU machine that
# has torch but no package index. From the repository root:
#
#   OUT=/tmp/gpu-out bash bench/gpu_session.sh
#
# Needs: python3 with a CUDA torch (and numpy, scipy, scikit-image, opencv, matplotlib, safetensors, tifffile,
# pyyaml, tqdm, pytest); in .whl/ the wheels it lacks: PyWavelets for MitoGAN, and lightweight-gan,
# stylegan2-pytorch and their dependencies for the peers (see README, "Side by side with the peers"); in
# runs/bench-peers-gpu/ the peers' tiles (tiles/tiles.npz, train.npy, heldout.npy, from bench_peers.py's
# prepare step on a CPU machine). Each part has its own time limit, so one that overruns costs only itself.
#
#   1. the CUDA tests (bf16/fp16 autocast, channels-last, resume, a GPU-trained bundle on the CPU) and the
#      training and export tests, which run on the GPU there (train.device auto)          -> $OUT/tests.log
#   2. bench/bench_gpu.py: steps/s, memory and utilisation per precision and per packing  -> $OUT/gpu/
#   3. bench/bench_peers.py --stage train: the GPU peers and MitoGAN, one after another (a first try that
#      trained all four at the same time slowed the CLI peers to 1.3-1.9 s a step), PEERS_MIN minutes each,
#      1,000 tiles generated each                                                         -> $OUT/peers.tar.gz
#      (score them anywhere with bench_peers.py --stage score: scoring is CPU work)
set -u
OUT=${OUT:?set OUT to a results folder}
PEERS_MIN=${PEERS_MIN:-0.75}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/gpu"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_session: installing .whl/ failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name(0))"
  nproc; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== 1. tests" 
timeout 100 python3 -m pytest -q -p no:cacheprovider --timeout 90 tests/mitogan/test_train_cuda.py \
  tests/mitogan/test_train.py tests/mitogan/test_export.py > "$OUT/tests.log" 2>&1
echo "tests: exit $?"; tail -5 "$OUT/tests.log"

echo "== 2. bench_gpu"
timeout 240 python3 bench/bench_gpu.py --seconds 8 --warmup 4 --out "$OUT/gpu" 2>&1 | grep -v '^bench_gpu: {'
echo "bench_gpu: exit ${PIPESTATUS[0]}"

echo "== 3. peers"
timeout "$(awk -v m="$PEERS_MIN" 'BEGIN { print int(4 * (m * 60 + 90)) }')" \
  python3 bench/bench_peers.py --device cuda --stage train --peer-python python3 --peers lightweight-gan,stylegan2,dcgan-story,fastgan --work runs/bench-peers-gpu \
  --budget-min "$PEERS_MIN" --n 1000 2>&1 | cut -c1-400
echo "bench_peers: exit ${PIPESTATUS[0]}"
tar czf "$OUT/peers.tar.gz" -C runs/bench-peers-gpu trained.json logs $(cd runs/bench-peers-gpu && ls *-samples.npy \
  2>/dev/null) $(cd runs/bench-peers-gpu && ls -d *-synth 2>/dev/null) 2>/dev/null
ls -la "$OUT" "$OUT/gpu"
