#!/usr/bin/env bash
# Train csra_jax on a Cloud TPU VM or pod slice: create (or reuse) it, put the code on
# every worker, install, start `python3 -m csra_jax.main` on all workers, tail worker 0.
# Run `launch/tpu_vm.sh --help` for the flags; `--dry-run` prints every command only.
set -euo pipefail

PROG="launch/tpu_vm.sh"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
usage: launch/tpu_vm.sh --name NAME --zone ZONE --config CONFIG --workdir DIR [options] [-- MAIN_ARGS...]

Creates the TPU VM / pod slice NAME if `gcloud compute tpus tpu-vm describe` does not
find it (reuses it otherwise), copies or clones the code onto every worker, runs
`pip install -e ".[tpu]"` on every worker, starts the same training command on every
worker in the background (nohup, log file on each worker), then tails worker 0's log.
Ctrl-C stops the tail only; the training keeps running on the TPU.

required:
  --name NAME              TPU VM / pod slice name
  --zone ZONE              e.g. us-central2-b (v4), us-west4-a (v5e), us-east5-a (v5p)
  --config CONFIG          config file, relative to the repository root, e.g. configs/coco_vit.py
  --workdir DIR            run directory (checkpoints, metrics.jsonl, tensorboard, eval/)
                           as seen on the workers (see "Storage" below)

TPU VM:
  --accelerator-type TYPE  v4-8 | v4-32 | v5litepod-8 | v5p-8 | v6e-8 ... (needed only
                           to create the VM; a VM that exists is reused as it is)
  --version VERSION        TPU software version for create (default: tpu-ubuntu2204-base)
  --project PROJECT        gcloud project (default: gcloud's configured project)
  --spot                   create a Spot TPU VM (preemptible; rerun the same command to
                           resume from the last checkpoint)

code and data:
  --repo GIT_URL|PATH      code to run: a git URL is cloned on every worker (`git clone`,
                           then `git checkout --ref`), a local checkout is packed (git's
                           tracked + untracked-not-ignored files) and copied to every
                           worker with `gcloud compute tpus tpu-vm scp --worker=all`
                           (default: this checkout, REPO_ROOT)
  --ref REF                branch / tag / commit to check out for a git URL (default: the
                           remote's default branch)
  --remote-dir DIR         where the code goes on each worker, relative to the home
                           directory (default: csra_jax)
  --data-dir DIR           prepared datasets (passed as --config.data.data_dir=DIR); build
                           them once with launch/prepare_data.sh into shared storage
  --extra "ARGS"           extra arguments for csra_jax.main, e.g.
                           --extra "--config.batch_size=32 --config.dtype=bfloat16"
                           (split on whitespace; repeatable; anything after `--` too)
  --env KEY=VALUE          environment variable for the training processes (repeatable)
  --distributed MODE       on | auto | off, passed to csra_jax.main (default: on).
                           `on` calls jax.distributed.initialize(), which finds the slice's
                           workers from the TPU metadata server. `auto` only looks for
                           environment variables (TPU_WORKER_HOSTNAMES, ...) that GKE sets
                           but a gcloud-created TPU VM does not, so on a multi-host slice
                           it would not initialise; keep `on` there.
  --log FILE               log file on each worker, relative to the home directory unless
                           absolute (default: csra_jax_train.log)

steps:
  --no-install             skip `pip install` (code already installed on the workers)
  --no-tail                start the training and return without tailing the log
  --dry-run                print every command (gcloud, tar) and run nothing; gcloud
                           need not be installed
  -h, --help               this help

Storage. On a multi-host slice every worker must see the SAME workdir (evaluation
gathers the workers' files there; orbax writes one checkpoint from all workers).
  - --workdir gs://BUCKET/PATH is passed to the trainer as it is: it writes config.json,
    metrics.jsonl, TensorBoard events, eval/ files and the lock through etils.epath
    (gcsfs, installed by the [tpu] extra) and checkpoints through orbax's tensorstore
    GCS driver. Needs the TPU VM's service account to have read/write access.
  - --data-dir gs://BUCKET/PATH is mounted with gcsfuse at /tmp/gcs/BUCKET on every
    worker (gcsfuse --implicit-dirs) and the mounted path is passed to the trainer: the
    prepared ArrayRecord files are read by array_record's C++ reader, which opens local
    file paths only.
  - a shared NFS / Filestore path mounted on every worker (give that path);
  - a local disk path (e.g. /home/$USER/runs/x): fine for a single-host slice (v4-8,
    v5litepod-8, ...), wrong for multi-host slices.

examples:
  launch/tpu_vm.sh --name csra-v4 --zone us-central2-b --accelerator-type v4-8 \
      --config configs/coco_vit.py --workdir gs://my-bucket/runs/coco_vit \
      --data-dir gs://my-bucket/tensorflow_datasets \
      --extra "--config.init_checkpoint=/tmp/gcs/my-bucket/weights/jx_vit_large_p16_224-4ee7a4dc.pth"
  launch/tpu_vm.sh --dry-run --name csra-pod --zone us-central2-b --accelerator-type v4-32 \
      --config configs/coco_resnet101.py --workdir gs://my-bucket/runs/r101
  # stop a run:  gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \
  #                --command "pkill -TERM -f csra_jax.main"   (SIGTERM: saves, exits 0)
  # delete:      gcloud compute tpus tpu-vm delete NAME --zone ZONE
EOF
}

USAGE="$PROG --name NAME --zone ZONE --config CONFIG --workdir DIR [options]  (--help for all)"
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME="" ZONE="" CONFIG="" WORKDIR="" ACCEL="" VERSION="tpu-ubuntu2204-base" PROJECT=""
SPOT=0 REPO="$REPO_ROOT" REF="" REMOTE_DIR="csra_jax" DATA_DIR="" DISTRIBUTED="on"
LOG="csra_jax_train.log" INSTALL=1 TAIL=1
EXTRA=() ENVS=()

while (( $# )); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --spot) SPOT=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    --no-tail) TAIL=0; shift ;;
    --name|--zone|--config|--workdir|--accelerator-type|--version|--project|--repo|--ref|\
    --remote-dir|--data-dir|--extra|--env|--distributed|--log)
      need_value "$1" "$#"
      case "$1" in
        --name) NAME="$2" ;;
        --zone) ZONE="$2" ;;
        --config) CONFIG="$2" ;;
        --workdir) WORKDIR="$2" ;;
        --accelerator-type) ACCEL="$2" ;;
        --version) VERSION="$2" ;;
        --project) PROJECT="$2" ;;
        --repo) REPO="$2" ;;
        --ref) REF="$2" ;;
        --remote-dir) REMOTE_DIR="$2" ;;
        --data-dir) DATA_DIR="$2" ;;
        --extra) read -r -a words <<< "$2"; EXTRA+=("${words[@]}") ;;
        --env) ENVS+=("$2") ;;
        --distributed) DISTRIBUTED="$2" ;;
        --log) LOG="$2" ;;
      esac
      shift 2 ;;
    --name=*|--zone=*|--config=*|--workdir=*|--accelerator-type=*|--version=*|--project=*|\
    --repo=*|--ref=*|--remote-dir=*|--data-dir=*|--extra=*|--env=*|--distributed=*|--log=*)
      set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --) shift; EXTRA+=("$@"); break ;;
    *) die "unknown argument '$1'" ;;
  esac
done

[[ -n "$NAME" ]] || die "missing --name"
[[ -n "$ZONE" ]] || die "missing --zone"
[[ -n "$CONFIG" ]] || die "missing --config"
[[ -n "$WORKDIR" ]] || die "missing --workdir"
[[ "$NAME" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] \
  || die "--name '$NAME': lowercase letters, digits and '-', starting with a letter"
[[ -z "$ACCEL" || "$ACCEL" =~ ^v[0-9]+[a-z]*-[0-9]+$ ]] \
  || die "--accelerator-type '$ACCEL' is not like v4-8, v4-32, v5litepod-8, v5p-8, v6e-8"
case "$DISTRIBUTED" in on|auto|off) ;; *) die "--distributed must be on, auto or off" ;; esac
[[ "$REMOTE_DIR" != /* && "$REMOTE_DIR" != *..* && "$REMOTE_DIR" =~ ^[A-Za-z0-9_./-]+$ ]] \
  || die "--remote-dir '$REMOTE_DIR' must be a plain path relative to the home directory"
for kv in "${ENVS[@]+"${ENVS[@]}"}"; do
  [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env '$kv' is not KEY=VALUE"
done

IS_GIT_URL=0
if [[ "$REPO" =~ ^(https?|ssh|git)://|^git@ ]]; then
  IS_GIT_URL=1
else
  [[ -d "$REPO" ]] || die "--repo '$REPO' is neither a git URL nor a local directory"
  REPO="$(cd "$REPO" && pwd)"
  [[ -f "$REPO/setup.py" || -f "$REPO/pyproject.toml" ]] \
    || die "--repo '$REPO' has no setup.py / pyproject.toml"
  [[ -z "$REF" ]] || die "--ref only applies to a git URL --repo"
fi
# The config runs from the remote checkout; check it here (relative to the repository).
case "$CONFIG" in
  "$REPO_ROOT"/*) CONFIG="${CONFIG#"$REPO_ROOT"/}" ;;
  /*) die "--config '$CONFIG': give a path relative to the repository root (configs/...)" ;;
esac
LOCAL_TREE="$REPO_ROOT"; (( IS_GIT_URL )) || LOCAL_TREE="$REPO"
[[ -f "$LOCAL_TREE/$CONFIG" ]] || die "config file '$CONFIG' not found in $LOCAL_TREE"

# A gs:// data dir is mounted with gcsfuse on every worker (ArrayRecord reads local paths
# only); a gs:// workdir goes to the trainer as it is (it writes gs:// itself).
MOUNT_ROOT="/tmp/gcs"
BUCKETS=()
to_worker_path() {  # gs://BUCKET/PATH -> /tmp/gcs/BUCKET/PATH (records BUCKET)
  local p="$1" bucket
  if [[ "$p" == gs://* ]]; then
    p="${p#gs://}"; bucket="${p%%/*}"
    [[ "$bucket" =~ ^[a-z0-9][-a-z0-9_.]*$ ]] || die "bad bucket name in '$1'"
    [[ " ${BUCKETS[*]-} " == *" $bucket "* ]] || BUCKETS+=("$bucket")
    if [[ "$p" == */* ]]; then p="${p#*/}"; else p=""; fi
    WORKER_PATH="$MOUNT_ROOT/$bucket${p:+/$p}"
  else
    WORKER_PATH="$p"
  fi
}
W_WORKDIR="$WORKDIR"
W_DATA_DIR=""
if [[ -n "$DATA_DIR" ]]; then to_worker_path "$DATA_DIR"; W_DATA_DIR="$WORKER_PATH"; fi

if (( ! DRY_RUN )); then
  command -v gcloud >/dev/null 2>&1 \
    || die "gcloud not found: install the Google Cloud CLI (or use --dry-run)"
fi

GC=(gcloud compute tpus tpu-vm)
LOC=(--zone "$ZONE")
[[ -z "$PROJECT" ]] || LOC+=(--project "$PROJECT")
ssh_all() { run "${GC[@]}" ssh "$NAME" "${LOC[@]}" --worker=all --command "$1"; }

# 1. create or reuse the TPU VM
echo "# 1. TPU VM $NAME: reuse if it exists, else create"
CREATE=("${GC[@]}" create "$NAME" "${LOC[@]}" --accelerator-type "$ACCEL" --version "$VERSION")
if (( SPOT )); then CREATE+=(--spot); fi
DESCRIBE=("${GC[@]}" describe "$NAME" "${LOC[@]}" "--format=value(state)")
if (( DRY_RUN )); then
  run "${DESCRIBE[@]}"
  if [[ -n "$ACCEL" ]]; then
    echo "# if describe finds no such TPU VM:"
    run "${CREATE[@]}"
  else
    echo "# (no --accelerator-type: the TPU VM must exist already)"
  fi
else
  echo "+ $(quote "${DESCRIBE[@]}")"
  if STATE="$("${DESCRIBE[@]}" 2>/dev/null)"; then
    echo "reusing TPU VM $NAME (state: ${STATE:-unknown})"
  else
    [[ -n "$ACCEL" ]] || die "TPU VM '$NAME' not found in $ZONE; give --accelerator-type to create it"
    run "${CREATE[@]}"
  fi
fi

# 2. code on every worker
echo "# 2. code -> ~/$REMOTE_DIR on every worker"
if (( IS_GIT_URL )); then
  Q_DIR="$(quote "$REMOTE_DIR")"
  GIT_CMD="if [ -d $Q_DIR/.git ]; then git -C $Q_DIR fetch -q origin; else git clone -q $(quote "$REPO") $Q_DIR; fi"
  if [[ -n "$REF" ]]; then
    GIT_CMD+=" && git -C $Q_DIR checkout -q $(quote "$REF") && (git -C $Q_DIR merge -q --ff-only FETCH_HEAD 2>/dev/null || true)"
  else
    GIT_CMD+=" && git -C $Q_DIR pull -q --ff-only"
  fi
  ssh_all "$GIT_CMD"
else
  TARBALL="${TMPDIR:-/tmp}/csra_jax_src_${NAME}.tgz"
  if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked + untracked-but-not-ignored files: no .venv, build outputs or caches
    echo "+ (cd $(quote "$REPO") && git ls-files -z --cached --others --exclude-standard | tar czf $(quote "$TARBALL") --null -T -)"
    if (( ! DRY_RUN )); then
      (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done \
        | tar czf "$TARBALL" --null -T -)
    fi
  else
    run tar czf "$TARBALL" -C "$REPO" --exclude=.git --exclude=.venv --exclude=__pycache__ .
  fi
  run "${GC[@]}" scp "$TARBALL" "$NAME:csra_jax_src.tgz" "${LOC[@]}" --worker=all
  ssh_all "mkdir -p $(quote "$REMOTE_DIR") && tar xzf csra_jax_src.tgz -C $(quote "$REMOTE_DIR") && rm csra_jax_src.tgz"
fi

# 3. install
if (( INSTALL )); then
  echo "# 3. install on every worker"
  ssh_all "cd $(quote "$REMOTE_DIR") && python3 -m pip install -q -U pip && python3 -m pip install -q -e '.[tpu]'"
fi

# 4. gcsfuse mounts for gs:// paths
if (( ${#BUCKETS[@]} )); then
  echo "# 4. mount gs:// buckets with gcsfuse on every worker"
  # shellcheck disable=SC2016  # expanded by the worker's shell, not here
  CODENAME='$(lsb_release -c -s)'
  INSTALL_FUSE='if ! command -v gcsfuse >/dev/null; then'
  INSTALL_FUSE+=' curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null'
  INSTALL_FUSE+=" && echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$CODENAME main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null"
  INSTALL_FUSE+=' && sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; fi'
  MOUNTS=""
  for b in "${BUCKETS[@]}"; do
    MOUNTS+=" && mkdir -p $MOUNT_ROOT/$b && (mountpoint -q $MOUNT_ROOT/$b || gcsfuse --implicit-dirs --rename-dir-limit=200000 $b $MOUNT_ROOT/$b)"
  done
  ssh_all "$INSTALL_FUSE$MOUNTS"
fi

# 5. train on every worker, in the background
echo "# 5. start training on every worker (--distributed=$DISTRIBUTED)"
MAIN=(python3 -m csra_jax.main --config "$CONFIG" --workdir "$W_WORKDIR")
[[ -z "$W_DATA_DIR" ]] || MAIN+=("--config.data.data_dir=$W_DATA_DIR")
MAIN+=("${EXTRA[@]+"${EXTRA[@]}"}" "--distributed=$DISTRIBUTED")
if [[ "$LOG" == /* ]]; then Q_LOG="$(quote "$LOG")"; else Q_LOG="\"\$HOME\"/$(quote "$LOG")"; fi
ENV_PREFIX=""
if (( ${#ENVS[@]} )); then ENV_PREFIX="env $(quote "${ENVS[@]}") "; fi
ssh_all "cd $(quote "$REMOTE_DIR") && nohup ${ENV_PREFIX}$(quote "${MAIN[@]}") > $Q_LOG 2>&1 < /dev/null & echo \"started on \$(hostname), log: $LOG\""

# 6. follow worker 0
if (( TAIL )); then
  echo "# 6. worker 0's log (Ctrl-C stops the tail, not the training)"
  run "${GC[@]}" ssh "$NAME" "${LOC[@]}" --worker=0 --command "tail -n +1 -F $Q_LOG"
else
  echo "# follow with: $(quote "${GC[@]}" ssh "$NAME" "${LOC[@]}" --worker=0 --command "tail -F $Q_LOG")"
fi
