#!/usr/bin/env bash
# The device check on a lent GPU machine, as one command (its image: python3 with torch and CUDA, no network).
# Installs the wheels carried in .whl/ (`make device-wheels` here first; carry ".whl") for the chapter run,
# then runs benchmarks/gpu_check.py at paper size: one model eager vs graphed, ensembles of 1/4/16, chapter 4
# with every training cut to 20 steps, and the paper profile's hours table. Writes gpu_check.{json,md} to
# $OUT (the device tool's return folder) or _results/gpu-check/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 benchmarks/gpu_check.py --size paper --out "${OUT:-_results/gpu-check}" --chapter-timeout "${CHAPTER_TIMEOUT:-240}"
