"""TensorFlow-free datasets for CSRA: TFDS builders (ArrayRecord) + grain pipelines.

  build_dataset(name, data_dir, manual_dir=None, **builder_kwargs) -> builder
  InputSpec(size, normalization, crop_scale, crop_ratio, hflip, randaugment, draft)
  create_train_iterator(name, data_dir, spec, global_batch_size=..., ...)
  create_eval_iterator(name, data_dir, spec, global_batch_size=..., ...)
  DATASETS / get_dataset_info(name, data_dir=None, config=None)

Names: voc2007, voc2012, coco2014, wider_attribute, multilabel_json, synthetic_shapes.
"""

from csra_jax.data.errors import DataError
from csra_jax.data.input_spec import InputSpec, InputSpecError
from csra_jax.data.pipeline import (EvalIterator, create_eval_iterator,
                                    create_train_iterator, ensure_absl_flags_parsed)
from csra_jax.data.registry import (DATASETS, DatasetInfo, build_dataset,
                                    get_dataset_info, load_builder, prepared_dir)
from csra_jax.data.transforms import NORMALIZATIONS

__all__ = [
    "DATASETS", "DataError", "DatasetInfo", "EvalIterator", "InputSpec", "InputSpecError",
    "NORMALIZATIONS",
    "build_dataset", "create_eval_iterator", "create_train_iterator",
    "ensure_absl_flags_parsed", "get_dataset_info", "load_builder", "prepared_dir",
]
