#!/usr/bin/env bash
# The GPU checks and GPU tables in one run (about 7 minutes on one H100, plus up to 15 for benchmarks/gpu.py), for a
# machine with CUDA:
#   bash benchmarks/gpu_checks.sh REF_DIR [OUT_DIR]
# REF_DIR holds the reference checkouts the tables compare against: rational_kat_cu/, U-KAN/ and tck/
# (torch-conv-kan); a missing one only drops its rows. Logs go to OUT_DIR (default: gpu_logs/).
set -u -o pipefail
REF=${1:?usage: gpu_checks.sh REF_DIR [OUT_DIR]}
OUT_DIR=${2:-gpu_logs}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

step() {  # step NAME SECONDS CMD...: run with a time limit, log to OUT_DIR/NAME.txt, keep going on failure
    local name=$1 limit=$2; shift 2
    echo "=== $name ($(date +%T))"
    timeout "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.txt"
    echo "=== $name exit ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.get_device_name())"
ref() { [ -d "$REF/$1" ] && echo --reference "$REF/$1"; }
step test_cuda 200 python3 -m pytest tests/test_cuda.py -q -p no:cacheprovider -x
step rational 150 python3 benchmarks/rational.py --device cuda $(ref rational_kat_cu)
step seeds 120 python3 benchmarks/seeds.py --device cuda $(ref U-KAN)
step layers 100 python3 benchmarks/layers.py --device cuda $(ref tck)
step triton_rational 200 python3 -m pytest tests/layers/test_triton_rational.py -q -p no:cacheprovider
step train_loop 240 python3 benchmarks/train_loop.py --device cuda --amp --model kat_tiny_patch16_224 --width-scale 1 \
    --img-size 224 --batch 128 --steps 10 --rounds 21 --out "$OUT_DIR/train_loop_cuda.txt"
ukan() { [ -d "$REF/U-KAN" ] && echo --reference-ukan "$REF/U-KAN"; }
step gpu 900 python3 benchmarks/gpu.py --device cuda $(ukan)
