#!/usr/bin/env bash
# Build the CSRA datasets from the official downloads into ArrayRecord (no TensorFlow).
#
#   launch/prepare_data.sh [--dry-run] DATASET [DATA_DIR] [RAW_DIR] [extra build flags...]
#   launch/prepare_data.sh --help        # downloads, folder layout, commands per dataset
#
#   DATASET   synthetic_shapes | voc2007 | voc2012 | coco2014 | wider_attribute | all
#   DATA_DIR  where prepared data goes   (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)
#   RAW_DIR   root of the raw downloads  (default: ~/csra_raw); each dataset reads
#             RAW_DIR/voc (VOCdevkit/ inside), RAW_DIR/coco (train2014/ val2014/
#             annotations/), RAW_DIR/wider (Image/ + wider_attribute_*.json).
#   extra     passed to `python -m csra_jax.data.build`, e.g. --on_corrupt skip
#
# 'all' builds every dataset whose raw folder exists, plus synthetic_shapes.
# On a multi-host TPU pod, run this once on a machine that sees a shared DATA_DIR
# (e.g. a GCS bucket via gcsfuse or NFS), not on every host.
set -euo pipefail

PROG="launch/prepare_data.sh"

usage() {
  cat <<'EOF'
usage: launch/prepare_data.sh [--dry-run] DATASET [DATA_DIR] [RAW_DIR] [extra build flags...]

Builds DATASET from the official downloads in RAW_DIR into ArrayRecord files in
DATA_DIR with the package's own TFDS builders (`python -m csra_jax.data.build`; no
TensorFlow; nothing is downloaded by the code). Train with
--config.data.data_dir=DATA_DIR.

  DATASET    synthetic_shapes | voc2007 | voc2012 | coco2014 | wider_attribute | all
             (all: synthetic_shapes plus every dataset whose raw folder exists)
  DATA_DIR   where prepared data goes (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)
  RAW_DIR    root of the raw downloads (default: ~/csra_raw)
  extra      passed to the builder, e.g. --on_corrupt skip (skip unreadable images,
             listed at the end), --no_verify_images, --config keep_empty (coco2014)
  --dry-run  print the commands, run nothing
  -h, --help this help
  $PYTHON    interpreter (default: python)

Downloads and layout (RAW_DIR=~/csra_raw; run the commands from anywhere):

synthetic_shapes  nothing to download (generated, seeded, ~10 s)
    launch/prepare_data.sh synthetic_shapes

voc2007  VOCtrainval_06-Nov-2007.tar, VOCtest_06-Nov-2007.tar
         from http://host.robots.ox.ac.uk/pascal/VOC/voc2007/
    mkdir -p ~/csra_raw/voc && cd ~/csra_raw/voc
    wget http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar
    wget http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar
    tar xf VOCtrainval_06-Nov-2007.tar && tar xf VOCtest_06-Nov-2007.tar
    # -> ~/csra_raw/voc/VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets}
    launch/prepare_data.sh voc2007          # splits trainval / test

voc2012  VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/
         (+ the test tar from the evaluation server, after registering; optional)
    cd ~/csra_raw/voc
    wget http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar
    tar xf VOCtrainval_11-May-2012.tar      # and the test tar, if you have it
    # -> ~/csra_raw/voc/VOCdevkit/VOC2012/{Annotations,JPEGImages,ImageSets}
    launch/prepare_data.sh voc2012          # trainval; test (no labels) if extracted

coco2014  train2014.zip, val2014.zip, annotations_trainval2014.zip from https://cocodataset.org
    mkdir -p ~/csra_raw/coco && cd ~/csra_raw/coco
    wget http://images.cocodataset.org/zips/train2014.zip
    wget http://images.cocodataset.org/zips/val2014.zip
    wget http://images.cocodataset.org/annotations/annotations_trainval2014.zip
    unzip -q train2014.zip && unzip -q val2014.zip && unzip -q annotations_trainval2014.zip
    # -> ~/csra_raw/coco/{train2014/,val2014/,annotations/instances_{train,val}2014.json}
    launch/prepare_data.sh coco2014         # splits train / val

wider_attribute  Image.zip and wider_attribute_annotation.zip from the WIDER-Attribute page
         http://mmlab.ie.cuhk.edu.hk/projects/WIDERAttribute.html (Google Drive / Baidu
         links; download them in a browser)
    mkdir -p ~/csra_raw/wider && cd ~/csra_raw/wider
    unzip -q /path/to/Image.zip && unzip -q /path/to/wider_attribute_annotation.zip
    # -> ~/csra_raw/wider/Image/... and ~/csra_raw/wider/wider_attribute_{trainval,test}.json
    #    (also accepted: ~/csra_raw/wider/wider_attribute_annotation/wider_attribute_*.json)
    launch/prepare_data.sh wider_attribute  # splits trainval / test

Each build runs, e.g. for voc2007:
    python -m csra_jax.data.build voc2007 --data_dir DATA_DIR --manual_dir RAW_DIR/voc
A missing folder, malformed annotation or unreadable image stops with one message
naming the file (exit 2).
EOF
}

USAGE="$PROG [--dry-run] DATASET [DATA_DIR] [RAW_DIR] [extra build flags]  (--help for details)"
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --help / --dry-run may appear anywhere; everything else keeps its position.
ARGS=()
for a in "$@"; do
  case "$a" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    *) ARGS+=("$a") ;;
  esac
done
set -- "${ARGS[@]+"${ARGS[@]}"}"

(( $# >= 1 )) || die "missing DATASET"
DATASET="$1"
case "$DATASET" in
  synthetic_shapes|voc2007|voc2012|coco2014|wider_attribute|all) ;;
  -*) die "unknown option '$DATASET' (the first argument is the DATASET)" ;;
  *) die "unknown dataset '$DATASET' (synthetic_shapes, voc2007, voc2012, coco2014, wider_attribute, all)" ;;
esac
DATA_DIR="${2:-${TFDS_DATA_DIR:-$HOME/tensorflow_datasets}}"
RAW_DIR="${3:-$HOME/csra_raw}"
for pos in "${DATA_DIR}" "${RAW_DIR}"; do
  [[ "$pos" != -* ]] || die "'$pos' looks like a flag: give DATA_DIR and RAW_DIR before extra build flags"
done
shift $(( $# < 3 ? $# : 3 ))
PY="${PYTHON:-python}"
EXTRA=("$@")

build() {  # build NAME RAW_SUBDIR
  if (( ! DRY_RUN )) && [[ ! -d "$RAW_DIR/$2" ]]; then
    die "$RAW_DIR/$2 does not exist: put the $1 downloads there (see $PROG --help)"
  fi
  run "$PY" -m csra_jax.data.build "$1" --data_dir "$DATA_DIR" --manual_dir "$RAW_DIR/$2" \
      "${EXTRA[@]+"${EXTRA[@]}"}"
}
synthetic() {
  run "$PY" -m csra_jax.data.build synthetic_shapes --data_dir "$DATA_DIR" "${EXTRA[@]+"${EXTRA[@]}"}"
}

case "$DATASET" in
  synthetic_shapes) synthetic ;;
  voc2007|voc2012)  build "$DATASET" voc ;;
  coco2014)         build coco2014 coco ;;
  wider_attribute)  build wider_attribute wider ;;
  all)
    synthetic
    if [[ -d "$RAW_DIR/voc/VOCdevkit/VOC2007" ]]; then build voc2007 voc; fi
    if [[ -d "$RAW_DIR/voc/VOCdevkit/VOC2012" ]]; then build voc2012 voc; fi
    if [[ -d "$RAW_DIR/coco" ]]; then build coco2014 coco; fi
    if [[ -d "$RAW_DIR/wider" ]]; then build wider_attribute wider; fi
    ;;
esac
if (( DRY_RUN )); then
  echo "(dry run: nothing built; data would go to $DATA_DIR)"
else
  echo "prepared data in $DATA_DIR"
fi
