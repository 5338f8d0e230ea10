#!/usr/bin/env bash
# Train csra_jax on one host with N NVIDIA GPUs: one process sees all its GPUs, the batch
# is sharded over them. Run `launch/gpu.sh --help` for the flags; `--dry-run` prints only.
set -euo pipefail

PROG="launch/gpu.sh"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
usage: launch/gpu.sh --config CONFIG --workdir DIR [options] [-- MAIN_ARGS...]

Runs `python -m csra_jax.main --config CONFIG --workdir DIR --distributed=off` on this
host: one process drives all the GPUs it sees (jax.make_mesh puts the batch on a
`data` axis over them), so no jax.distributed is needed. For several hosts use
launch/slurm.sbatch.

required:
  --config CONFIG        config file, e.g. configs/coco_resnet101.py
  --workdir DIR          run directory (checkpoints, metrics.jsonl, tensorboard, eval/);
                         rerunning the same command resumes from its last checkpoint

options:
  --gpus N|LIST          use GPUs 0..N-1 (or an explicit list such as 2,3): sets
                         CUDA_VISIBLE_DEVICES (default: leave it as it is, i.e. all GPUs).
                         batch_size / eval_batch_size must be divisible by the GPU count.
  --data-dir DIR         prepared datasets (passed as --config.data.data_dir=DIR)
  --extra "ARGS"         extra arguments for csra_jax.main, split on whitespace,
                         repeatable, e.g. --extra "--config.batch_size=32"
                         (anything after `--` is passed on as well)
  --install              first run `pip install -e ".[cuda]"` in the repository root
  --python PYTHON        interpreter (default: $PYTHON or python)
  --mem-fraction F       XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.90; JAX's own
                         default is 0.75): share of each GPU's memory JAX preallocates.
                         0.90 gives the model more room and leaves ~10% for the CUDA
                         context, cuDNN/cuBLAS workspaces and NCCL buffers. Lower it if
                         another process shares the GPU; out-of-memory at start-up with
                         a big model: try 0.95, or --config.grad_accum_steps.
  --xla-flags FLAGS      XLA_FLAGS to use (default: --xla_gpu_enable_latency_hiding_scheduler=true,
                         which overlaps the gradient all-reduce with the backward pass;
                         appended to any XLA_FLAGS already in the environment)
  --log FILE             also append the output to FILE (tee)
  --dry-run              print the environment and the command, run nothing
  -h, --help             this help

examples:
  launch/gpu.sh --gpus 8 --config configs/coco_resnet101.py --workdir /data/runs/coco_r101 \
      --data-dir /data/tensorflow_datasets \
      --extra "--config.init_checkpoint=/data/weights/resnet101-63fe2227.pth"
  launch/gpu.sh --gpus 0,1 --config configs/demo.py --workdir /tmp/csra_demo --dry-run
EOF
}

USAGE="$PROG --config CONFIG --workdir DIR [--gpus N] [options]  (--help for all)"
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONFIG="" WORKDIR="" GPUS="" DATA_DIR="" INSTALL=0 PY="${PYTHON:-python}" MEM_FRACTION="0.90"
XLA_DEFAULT="--xla_gpu_enable_latency_hiding_scheduler=true" XLA_SET="" LOG=""
EXTRA=()

while (( $# )); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --install) INSTALL=1; shift ;;
    --config|--workdir|--gpus|--data-dir|--extra|--python|--mem-fraction|--xla-flags|--log)
      need_value "$1" "$#"
      case "$1" in
        --config) CONFIG="$2" ;;
        --workdir) WORKDIR="$2" ;;
        --gpus) GPUS="$2" ;;
        --data-dir) DATA_DIR="$2" ;;
        --extra) read -r -a words <<< "$2"; EXTRA+=("${words[@]}") ;;
        --python) PY="$2" ;;
        --mem-fraction) MEM_FRACTION="$2" ;;
        --xla-flags) XLA_DEFAULT="$2"; XLA_SET=1 ;;
        --log) LOG="$2" ;;
      esac
      shift 2 ;;
    --config=*|--workdir=*|--gpus=*|--data-dir=*|--extra=*|--python=*|--mem-fraction=*|\
    --xla-flags=*|--log=*)
      set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --) shift; EXTRA+=("$@"); break ;;
    *) die "unknown argument '$1'" ;;
  esac
done

[[ -n "$CONFIG" ]] || die "missing --config"
[[ -n "$WORKDIR" ]] || die "missing --workdir"
[[ -f "$CONFIG" ]] || die "config file '$CONFIG' not found"
[[ "$WORKDIR" != gs://* ]] || die "--workdir must be a file path (mount the bucket with gcsfuse); gs:// is not written to directly"
[[ "$MEM_FRACTION" =~ ^(0?\.[0-9]+|1(\.0*)?)$ ]] || die "--mem-fraction '$MEM_FRACTION' is not a number in (0, 1]"
if [[ -n "$GPUS" ]]; then
  if [[ "$GPUS" =~ ^[0-9]+$ ]]; then
    (( GPUS >= 1 )) || die "--gpus must be at least 1"
    VISIBLE="$(seq -s, 0 $(( GPUS - 1 )))"
  elif [[ "$GPUS" =~ ^[0-9]+(,[0-9]+)+$ ]]; then
    VISIBLE="$GPUS"
  else
    die "--gpus '$GPUS' is neither a count (8) nor a list of GPU ids (0,1,2,3)"
  fi
  if (( ! DRY_RUN )) && command -v nvidia-smi >/dev/null 2>&1; then
    HAVE="$(nvidia-smi -L | grep -c '^GPU ' || true)"
    for id in ${VISIBLE//,/ }; do
      (( id < HAVE )) || die "--gpus $GPUS asks for GPU $id but this host has $HAVE GPU(s)"
    done
  fi
fi

if (( INSTALL )); then
  run "$PY" -m pip install -e "${REPO_ROOT}[cuda]"
fi

if [[ -n "${GPUS}" ]]; then
  echo "+ export CUDA_VISIBLE_DEVICES=$VISIBLE"
  export CUDA_VISIBLE_DEVICES="$VISIBLE"
fi
echo "+ export XLA_PYTHON_CLIENT_MEM_FRACTION=$MEM_FRACTION"
export XLA_PYTHON_CLIENT_MEM_FRACTION="$MEM_FRACTION"
if [[ -n "$XLA_SET" || -z "${XLA_FLAGS:-}" ]]; then
  XLA_VALUE="$XLA_DEFAULT"
else
  XLA_VALUE="$XLA_FLAGS $XLA_DEFAULT"
fi
echo "+ export XLA_FLAGS=$(quote "$XLA_VALUE")"
export XLA_FLAGS="$XLA_VALUE"

MAIN=("$PY" -m csra_jax.main --config "$CONFIG" --workdir "$WORKDIR")
[[ -z "$DATA_DIR" ]] || MAIN+=("--config.data.data_dir=$DATA_DIR")
MAIN+=("${EXTRA[@]+"${EXTRA[@]}"}" --distributed=off)
if [[ -n "$LOG" ]]; then
  echo "+ $(quote "${MAIN[@]}") 2>&1 | tee -a $(quote "$LOG")"
  if (( ! DRY_RUN )); then "${MAIN[@]}" 2>&1 | tee -a "$LOG"; fi
else
  run "${MAIN[@]}"
fi
