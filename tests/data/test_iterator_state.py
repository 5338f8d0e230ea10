"""The train iterator's saved position converts between worker counts: the converted
state is the one grain itself reaches, and the batches that follow are the same."""

import json

import numpy as np
import pytest

from csra_jax import data
from csra_jax.data import iterator_state as ist


def _iterator(data_dir, num_workers):
    return data.create_train_iterator("synthetic_shapes", data_dir, data.InputSpec(32, "resnet"),
                                      global_batch_size=8, config="tiny", seed=0,
                                      num_workers=num_workers)


def _indices(it, n):
    return [np.asarray(next(it)["index"]) for _ in range(n)]


@pytest.fixture(scope="module")
def reference(data_dir):
    return _indices(_iterator(data_dir, 0), 10)


@pytest.mark.parametrize("workers", [2, 3])
def test_state_at_is_the_state_grain_reaches(data_dir, workers):
    it, taken = _iterator(data_dir, workers), 0
    for k in (0, 1, 2, 5):
        _indices(it, k - taken)
        taken = k
        real = it.get_state()
        assert ist.state_at(k, workers) == real, (k, real)
        assert (ist.workers_of(real), ist.position(real)) == (workers, k)


@pytest.mark.parametrize("saved, resumed", [(0, 2), (2, 0), (2, 3)])
def test_a_converted_position_reads_the_same_batches(data_dir, reference, saved, resumed):
    it = _iterator(data_dir, saved)
    _indices(it, 4)
    text = json.dumps(it.get_state())  # what grain's checkpoint handler hands over
    target = ist.WorkerCountRestore(_iterator(data_dir, resumed), resumed)
    target.set_state(text.encode())
    assert target.converted_from == saved
    for got, want in zip(_indices(target.iterator, 5), reference[4:9]):
        np.testing.assert_array_equal(got, want)


def test_an_unknown_layout_is_refused_with_the_way_out():
    with pytest.raises(ist.IteratorStateError, match=r"keys \['cursor'\]\); resume with the "
                                                     r"data.num_workers the run was saved with"):
        ist.WorkerCountRestore(None, 2).set_state({"cursor": 3})
    exhausted = {**ist.state_at(4, 2), "exhausted": [1, 0]}
    with pytest.raises(ist.IteratorStateError):
        ist.position(exhausted)
