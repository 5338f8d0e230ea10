"""grain input pipelines: prepared TFDS ArrayRecord data -> (sharded) batches.

Train: per-process disjoint slice -> seeded shuffle (reshuffled every epoch) -> repeat
-> decode + random resized crop + flip (+ RandAugment) + resize (workers, uint8) ->
batch (drop remainder) -> [mp_prefetch] -> normalise + place on the mesh.
Eval: the official test transform (resize (S, S), no draft decoding); per-process
contiguous slice, padded to the same number of batches on every
process; padding rows have mask=0, index=-1, ignore=1, so every example is counted
exactly once and multi-host eval never hangs on a missing batch.

Batches are dicts:
  image  float32 (B, S, S, 3) normalised NHWC
  labels int8 (B, C) multi-hot;  ignore int8 (B, C) (1 = leave out of metrics)
  mask   float32 (B,) (1 = real example; all ones in train)
  index  int32 (B,) position of the example in the split's data source (-1 = padding)
  id     eval only, with_ids=True: host-local numpy array of bytes (never on device)
With `mesh`, every array except `id` is a global jax.Array sharded
NamedSharding(mesh, P('data')) built from this process' rows with
`jax.make_array_from_process_local_data`; B is the global batch size.

The train iterator is grain's own DatasetIterator: `get_state()` / `set_state()` and
orbax via `grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from absl import flags
import grain
import numpy as np

from csra_jax.data import registry, transforms
from csra_jax.data.input_spec import InputSpec


def ensure_absl_flags_parsed() -> None:
    """grain workers re-import __main__; unparsed absl flags there raise. Mark parsed."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _process(process_index, process_count):
    if process_index is None or process_count is None:
        import jax  # pylint: disable=g-import-not-at-top
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return process_index, process_count


def _local_batch(global_batch_size: int, process_count: int) -> int:
    if global_batch_size % process_count:
        raise ValueError(f"global_batch_size {global_batch_size} is not divisible by the "
                         f"process count {process_count}")
    return global_batch_size // process_count


def _check_spec(spec) -> InputSpec:
    if not isinstance(spec, InputSpec):
        raise TypeError(f"spec must be a csra_jax.data.InputSpec (e.g. InputSpec(size=448)), "
                        f"got {type(spec).__name__} {spec!r}")
    return spec


def _source(name, data_dir, split, config, train):
    info = registry.DATASETS.get(name)
    if info is None:
        raise registry.DataError(None, f"unknown dataset {name!r}; known: "
                                 f"{', '.join(registry.DATASETS)}.")
    builder = registry.load_builder(name, data_dir, config)
    if split is None:
        split = info.train_split if train else info.eval_split
    if split not in builder.info.splits:
        raise registry.DataError(registry.prepared_dir(name, data_dir, config),
                                 f"split {split!r} not prepared; available: "
                                 f"{list(builder.info.splits.keys())}.")
    return builder.as_data_source(split), builder


class _TrainMap(grain.transforms.RandomMap):
    """Worker-side: decode + augment to uint8; labels pass through."""

    def __init__(self, spec: InputSpec):
        self.kw = dict(size=spec.size, scale=spec.crop_scale, ratio=spec.crop_ratio,
                       hflip=spec.hflip, randaugment=spec.randaugment, draft=spec.draft)

    def random_map(self, item, rng):
        index, ex = item
        return {"image": transforms.decode_train(ex["image"], rng=rng, **self.kw),
                "labels": np.asarray(ex["labels"], np.int8),
                "ignore": np.asarray(ex["ignore"], np.int8),
                "mask": np.float32(1.0), "index": np.int32(index)}


class _PaddedSlice:
    """Random-access (index, record) view of source[start:end], padded with (-1, None)
    up to `length`."""

    def __init__(self, source, start: int, end: int, length: int):
        self.source, self.start, self.end, self.length = source, start, end, length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        j = self.start + i
        if j < self.end:
            return j, self.source[j]
        return -1, None


class _EvalMap(grain.transforms.Map):
    """Worker-side: decode + resize; padding rows become zeros with mask 0."""

    def __init__(self, size, num_classes, draft, with_ids):
        self.size, self.num_classes, self.draft, self.with_ids = size, num_classes, draft, with_ids

    def map(self, item):
        index, ex = item
        if ex is None:
            out = {"image": np.zeros((self.size, self.size, 3), np.uint8),
                   "labels": np.zeros(self.num_classes, np.int8),
                   "ignore": np.ones(self.num_classes, np.int8),
                   "mask": np.float32(0.0), "index": np.int32(-1)}
            if self.with_ids:
                out["id"] = b""
            return out
        out = {"image": transforms.decode_eval(ex["image"], self.size, draft=self.draft),
               "labels": np.asarray(ex["labels"], np.int8),
               "ignore": np.asarray(ex["ignore"], np.int8),
               "mask": np.float32(1.0), "index": np.int32(index)}
        if self.with_ids:
            out["id"] = ex["id"]
        return out


def _batch_fn(with_ids: bool):
    return None if not with_ids else _stack_with_ids


def _stack_with_ids(rows: Sequence[dict]) -> dict:
    out = {k: np.stack([r[k] for r in rows]) for k in rows[0] if k != "id"}
    out["id"] = np.array([r["id"] for r in rows], dtype=object)
    return out


class _Finalize(grain.transforms.Map):
    """Main-process: normalise once per batch and place rows on the mesh."""

    def __init__(self, mesh, mean, std):
        self.mesh, self.mean, self.std = mesh, mean, std
        self._norm = None
        if mesh is not None:
            import jax  # pylint: disable=g-import-not-at-top
            from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
            self.sharding = NamedSharding(mesh, P("data"))
            self._norm = jax.jit(lambda x: transforms.normalize(x, mean, std, xp=jax.numpy),
                                 out_shardings=self.sharding)

    def map(self, batch: dict) -> dict:
        if self.mesh is None:
            batch = dict(batch)
            batch["image"] = transforms.normalize(batch["image"], self.mean, self.std)
            return batch
        import jax  # pylint: disable=g-import-not-at-top
        out = {}
        for k, v in batch.items():
            if k == "id":
                out[k] = v
                continue
            arr = jax.make_array_from_process_local_data(self.sharding, np.ascontiguousarray(v))
            out[k] = self._norm(arr) if k == "image" else arr
        return out


def _check_mesh(mesh, local_batch):
    if mesh is None:
        return
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh needs a 'data' axis, has {mesh.axis_names}")
    import jax  # pylint: disable=g-import-not-at-top
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    n_local_data = len({tuple(np.argwhere(mesh.devices == d)[0])[mesh.axis_names.index("data")]
                        for d in local})
    if local_batch % max(1, n_local_data):
        raise ValueError(f"per-process batch {local_batch} not divisible by this process' "
                         f"{n_local_data} data-axis devices")


def _prefetch(ds: grain.MapDataset, num_workers: int, read_threads: int,
              worker_buffer: int) -> grain.IterDataset:
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                              prefetch_buffer_size=max(2, read_threads * 2)))
    if num_workers > 0:
        ensure_absl_flags_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                         per_worker_buffer_size=worker_buffer))
    return it


def create_train_iterator(name: str, data_dir: str, spec: InputSpec, *,
                          global_batch_size: int, split: Optional[str] = None,
                          config: Optional[str] = None, seed: int = 0, mesh=None,
                          num_workers: int = 0, read_threads: int = 2,
                          worker_buffer_size: int = 2, process_index: Optional[int] = None,
                          process_count: Optional[int] = None) -> grain.DatasetIterator:
    """Infinite, checkpointable training iterator of batches (see module docstring).

    ``spec`` says what each image becomes (size, normalisation, crop, flip, RandAugment,
    draft decoding). Each process reads the disjoint slice
    source[process_index::process_count] and yields global_batch_size // process_count
    rows per step. `num_workers` > 0 runs decoding in that many worker processes (grain
    mp_prefetch); 0 uses `read_threads` threads in this process.
    """
    _check_spec(spec)
    pi, pc = _process(process_index, process_count)
    local_batch = _local_batch(global_batch_size, pc)
    _check_mesh(mesh, local_batch)
    source, _ = _source(name, data_dir, split, config, train=True)
    n = len(source)
    ds = grain.MapDataset.source(_PaddedSlice(source, 0, n, n))[pi::pc]
    if len(ds) < local_batch:
        raise ValueError(f"{name}/{split}: this process' slice has {len(ds)} examples, fewer "
                         f"than the per-process batch {local_batch}")
    ds = ds.seed(seed).shuffle().repeat()
    ds = ds.random_map(_TrainMap(spec))
    ds = ds.batch(local_batch, drop_remainder=True)
    it = _prefetch(ds, num_workers, read_threads, worker_buffer_size)
    return iter(it.map(_Finalize(mesh, *spec.mean_std)))


def eval_layout(num_examples: int, local_batch: int, process_index: int,
                process_count: int) -> tuple[int, int, int]:
    """(start, end, num_batches): this process' contiguous slice and the batch count
    shared by all processes (enough for the largest slice)."""
    start = num_examples * process_index // process_count
    end = num_examples * (process_index + 1) // process_count
    largest = math.ceil(num_examples / process_count)
    return start, end, math.ceil(largest / local_batch)


class EvalIterator:
    """One pass over an eval split; `len()` is the number of batches (same on all hosts)."""

    def __init__(self, dataset: grain.IterDataset, num_batches: int, num_examples: int,
                 class_names: Sequence[str]):
        self._it = iter(dataset)
        self.num_batches = num_batches
        self.num_examples = num_examples
        self.class_names = tuple(class_names)

    def __len__(self):
        return self.num_batches

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)


def create_eval_iterator(name: str, data_dir: str, spec: InputSpec, *,
                         global_batch_size: int, split: Optional[str] = None,
                         config: Optional[str] = None, mesh=None, with_ids: bool = False,
                         num_workers: int = 0, read_threads: int = 2,
                         worker_buffer_size: int = 2, process_index: Optional[int] = None,
                         process_count: Optional[int] = None) -> EvalIterator:
    """One pass over `split` with every example exactly once (see module docstring).

    Images go through the official test transform exactly (`transforms.decode_eval`) at
    ``spec.size`` with ``spec.normalization``; the spec's crop and augmentation fields
    are training-only, and ``spec.draft=True`` is for speed studies only.
    """
    _check_spec(spec)
    pi, pc = _process(process_index, process_count)
    local_batch = _local_batch(global_batch_size, pc)
    _check_mesh(mesh, local_batch)
    source, builder = _source(name, data_dir, split, config, train=False)
    n = len(source)
    start, end, num_batches = eval_layout(n, local_batch, pi, pc)
    padded = _PaddedSlice(source, start, end, num_batches * local_batch)
    class_names = builder.info.metadata["class_names"]
    ds = grain.MapDataset.source(padded).map(
        _EvalMap(spec.size, len(class_names), spec.draft, with_ids))
    ds = ds.batch(local_batch, drop_remainder=True, batch_fn=_batch_fn(with_ids))
    it = _prefetch(ds, num_workers, read_threads, worker_buffer_size)
    return EvalIterator(it.map(_Finalize(mesh, *spec.mean_std)), num_batches, n, class_names)
