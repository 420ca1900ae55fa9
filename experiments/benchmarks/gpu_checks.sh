#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md ("Faster inversion") as prepared runs, for a session lent a CUDA
# machine. From the repository root, nothing to install on an image that has torch, safetensors, tqdm,
# scipy and matplotlib:
#
#   bash experiments/benchmarks/gpu_checks.sh step    # the inversion step: layer variants, CUDA graphs,
#                                                     # fp16 / bf16 autocast; fused vs non-fused synthesis
#   bash experiments/benchmarks/gpu_checks.sh table   # the cost table: 64, 256 and 1024 px, batch 1 to 64
#   bash experiments/benchmarks/gpu_checks.sh heads   # one training step of each head at 1024 px: peak
#                                                     # memory and seconds at batch 1 and 4
#
# Each part stops its commands well inside a 10-minute call (the timeouts below; a command stopped by
# its timeout says so, and the next one runs). Their lengths on a
# GPU are estimates: no GPU was lent to the session that wrote this. Output: ${OUT:-gpu_checks}/PART.txt.
# Copy the numbers into BENCHMARKS.md with the date, the device and the command.
set -euo pipefail
part=${1:?usage: bash experiments/benchmarks/gpu_checks.sh step|table|heads}
out=${OUT:-gpu_checks}
mkdir -p "$out"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

run_part() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  case $part in
    step)
      # "folded" is the library's CUDA default (NCHW); "fast" adds channels-last, off on CUDA until measured.
      timeout 360 "$python" -m experiments.benchmarks.bench_inversion_step --device cuda --repeats 5 \
        --variants plain,folded,fast,fast+compile,folded+reduce-overhead,folded+fp16,fast+bf16 \
        --optimized folded+reduce-overhead || echo "(stopped: exit status $?)"
      timeout 150 "$python" -m experiments.benchmarks.bench_synthesis --device cuda --repeats 5 \
        || echo "(stopped: exit status $?)"
      ;;
    table)
      timeout 150 "$python" -m experiments.benchmarks.bench_inversion_step --device cuda --cost-table \
        --resolutions 64 --batches 1,2,4,8,16,32,64 --memory-gb 120 || echo "(stopped: exit status $?)"
      timeout 200 "$python" -m experiments.benchmarks.bench_inversion_step --device cuda --cost-table \
        --resolutions 256 --batches 1,2,4,8,16 --memory-gb 120 || echo "(stopped: exit status $?)"
      timeout 200 "$python" -m experiments.benchmarks.bench_inversion_step --device cuda --cost-table \
        --resolutions 1024 --batches 1,2,4,8 --memory-gb 120 || echo "(stopped: exit status $?)"
      ;;
    heads)
      timeout 240 "$python" -m experiments.benchmarks.bench_head_memory --device cuda --batch 1 \
        || echo "(stopped: exit status $?)"
      timeout 300 "$python" -m experiments.benchmarks.bench_head_memory --device cuda --batch 4 \
        || echo "(stopped: exit status $?)"
      ;;
    *)
      echo "unknown part '$part': give step, table or heads" >&2
      return 2
      ;;
  esac
}

run_part 2>&1 | tee "$out/$part.txt"
