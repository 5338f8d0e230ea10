#!/usr/bin/env bash
# Build the CSRA datasets from the official downloads into ArrayRecord (no TensorFlow).
#
#   launch/prepare_data.sh DATASET [DATA_DIR] [RAW_DIR] [extra build flags...]
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

DATASET="${1:?usage: prepare_data.sh DATASET [DATA_DIR] [RAW_DIR] [extra flags]}"
DATA_DIR="${2:-${TFDS_DATA_DIR:-$HOME/tensorflow_datasets}}"
RAW_DIR="${3:-$HOME/csra_raw}"
shift $(( $# < 3 ? $# : 3 ))
PY="${PYTHON:-python}"

build() {  # build NAME RAW_SUBDIR
  "$PY" -m csra_jax.data.build "$1" --data_dir "$DATA_DIR" --manual_dir "$RAW_DIR/$2" \
      "${EXTRA[@]}"
}

EXTRA=("$@")
case "$DATASET" in
  synthetic_shapes) "$PY" -m csra_jax.data.build synthetic_shapes --data_dir "$DATA_DIR" "${EXTRA[@]}" ;;
  voc2007|voc2012)  build "$DATASET" voc ;;
  coco2014)         build coco2014 coco ;;
  wider_attribute)  build wider_attribute wider ;;
  all)
    "$PY" -m csra_jax.data.build synthetic_shapes --data_dir "$DATA_DIR" "${EXTRA[@]}"
    [[ -d "$RAW_DIR/voc/VOCdevkit/VOC2007" ]] && build voc2007 voc
    [[ -d "$RAW_DIR/voc/VOCdevkit/VOC2012" ]] && build voc2012 voc
    [[ -d "$RAW_DIR/coco" ]] && build coco2014 coco
    [[ -d "$RAW_DIR/wider" ]] && build wider_attribute wider
    ;;
  *) echo "unknown dataset '$DATASET'" >&2; exit 2 ;;
esac
echo "prepared data in $DATA_DIR"
