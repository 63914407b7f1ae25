#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go (about 6 minutes on one H200 without the accuracy runs):
# the tests marked gpu (the Triton kernels against numba on the CPU among them), the four benchmarks on the GPU
# (bench_selective_scan races the Triton kernels, mamba_ssm if installed, the torch reference and mambapy's pscan;
# bench_forecasters trains old against new side by side at batch 32 and 256), then optionally long-horizon
# accuracy cells on the GPU.
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]          # logs to OUT_DIR (default gpu-checks/)
#   ACCURACY=1 bash benchmarks/gpu_checks.sh          # also five uncapped ETTh1 cells at once (trainer=gpu)
#   ACCURACY=only bash benchmarks/gpu_checks.sh       # only those (each run stops after 540 s, within one
#                                                     # 10-minute device call)
#
# The accuracy runs are the forecasters' full defaults (every training window, 10 epochs), which the 2-core CPU
# rows in the README cap at 300 batches an epoch; they log to MLflow in OUT_DIR/mlflow.db.
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

if [ "${ACCURACY:-0}" != only ]; then
{
  stamp "environment"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import sys, torch, pandas, lightning; print(sys.version.split()[0], 'torch', torch.__version__,
torch.cuda.get_device_name(), 'pandas', pandas.__version__, 'lightning', lightning.__version__)"
  stamp "pytest -m gpu"
  timeout 300 $py -m pytest -q -p no:cacheprovider -m gpu -rs tests/ops tests/backbones tests/forecasters
} > "$out/tests.txt" 2>&1
# mambapy's pscan is the comparison of bench_selective_scan (pure PyTorch, no dependencies of its own)
$py -c "import mambapy" 2>/dev/null || $py -m pip install -q mambapy==1.2.0 --no-deps > /dev/null 2>&1

{
  stamp "bench_s5"; timeout 150 $py benchmarks/bench_s5.py --device cuda
  stamp "bench_s4"; timeout 150 $py benchmarks/bench_s4.py --device cuda
  stamp "bench_selective_scan"; timeout 150 $py benchmarks/bench_selective_scan.py --device cuda --sections 0,1,3,4,6
  stamp "bench_forecasters old vs new, batch 32"
  timeout 120 $py benchmarks/bench_forecasters.py --device cuda --steps 30 --compare --rounds 2 --inputs 96 336 \
    --no-streaming --panel 0
  stamp "bench_forecasters old vs new, batch 256"
  timeout 120 $py benchmarks/bench_forecasters.py --device cuda --steps 30 --compare --rounds 2 --inputs 96 336 \
    --batch 256 --no-streaming --panel 0
} > "$out/bench.txt" 2>&1
fi

if [ "${ACCURACY:-0}" != 0 ]; then
  hydra_quiet="hydra.output_subdir=null hydra/job_logging=disabled hydra/hydra_logging=disabled"
  uri="sqlite:///$(cd "$out" && pwd)/mlflow.db"
  run() {
    local name=$1; shift
    OMP_NUM_THREADS=3 timeout 540 $py -m ssmcast.cli train "$@" trainer=gpu verbose=false tracking.uri="$uri" \
      hydra.run.dir="$out/runs/$name" $hydra_quiet > "$out/acc_$name.txt" 2>&1 &
  }
  stamp "accuracy runs"
  # create the store and the experiment once, so that the five runs do not race to make them
  $py -c "import mlflow; mlflow.set_tracking_uri('$uri'); mlflow.set_experiment('ssmcast')" > "$out/mlflow_init.txt" 2>&1
  run s4d_etth1_96 experiment=ltsf_etth1_96 model=s4d
  run s4d_etth1_720 experiment=ltsf_etth1_720 model=s4d
  run s5_etth1_96 experiment=ltsf_etth1_96 model=s5
  run s5_etth1_720 experiment=ltsf_etth1_720 model=s5
  run mamba2_etth1_96 experiment=ltsf_etth1_96 model=mamba2
  wait
fi
stamp "done; logs in $out/"
