#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go (about 4 minutes on one H200 without the accuracy runs):
# the tests marked gpu, the four benchmarks on the GPU, then optionally long-horizon accuracy cells on the GPU.
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]          # logs to OUT_DIR (default gpu-checks/)
#   ACCURACY=1 bash benchmarks/gpu_checks.sh          # also five ETTm1 cells at once (trainer=gpu, 300 batches)
#
# Needs ssmcast importable (an install, or PYTHONPATH=.) with a CUDA torch, and SSMCAST_DATA_DIR for the
# accuracy runs and the forecaster benchmark. Each step has its own time limit, so one hang costs only its step.
set -u
out=${1:-gpu-checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
py=${PYTHON:-python3}
t0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - t0 )) s] $*"; }

{
  stamp "environment"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import sys, torch, pandas, lightning; print(sys.version.split()[0], 'torch', torch.__version__,
torch.cuda.get_device_name(), 'pandas', pandas.__version__, 'lightning', lightning.__version__)"
  stamp "pytest -m gpu"
  timeout 300 $py -m pytest -q -p no:cacheprovider -m gpu -rs tests/ops tests/backbones tests/forecasters
} > "$out/tests.txt" 2>&1

{
  stamp "bench_s5"; timeout 150 $py benchmarks/bench_s5.py --device cuda
  stamp "bench_s4"; timeout 150 $py benchmarks/bench_s4.py --device cuda
  stamp "bench_selective_scan"; timeout 150 $py benchmarks/bench_selective_scan.py --device cuda
  stamp "bench_forecasters"; timeout 150 $py benchmarks/bench_forecasters.py --device cuda --steps 50 --no-streaming
} > "$out/bench.txt" 2>&1

if [ "${ACCURACY:-0}" = 1 ]; then
  hydra_quiet="hydra.output_subdir=null hydra/job_logging=disabled hydra/hydra_logging=disabled"
  run() {
    local name=$1; shift
    OMP_NUM_THREADS=3 timeout 1800 $py -m ssmcast.cli train "$@" trainer=gpu verbose=false \
      ++trainer.kwargs.limit_train_batches=300 hydra.run.dir="$out/runs/$name" $hydra_quiet > "$out/acc_$name.txt" 2>&1 &
  }
  run mamba_ettm1_96 experiment=ltsf_ettm1_96 model=mamba
  run mamba_ettm1_720 experiment=ltsf_ettm1_720 model=mamba
  run mamba2_ettm1_96 experiment=ltsf_ettm1_96 model=mamba2
  run jamba_ettm1_96 experiment=ltsf_ettm1_96 model=jamba
  run jamba_ettm1_720 experiment=ltsf_ettm1_720 model=jamba
  wait
fi
stamp "done; logs in $out/"
