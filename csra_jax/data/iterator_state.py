"""Resuming the train iterator with another ``data.num_workers``.

The batch order does not depend on the worker count: with N workers grain deals batch
j to worker j % N and interleaves their outputs round-robin. Only the saved state's
layout depends on it, so a position converts:
  in this process (0 workers): ``{"next_index": k}`` (k batches taken);
  N workers: N interleaved iterators, worker i having taken ceil((k - i) / N) of its
  batches, the next one to read from being k % N.
A state in any other layout (e.g. from another grain version) is refused with a message
naming the way out, never guessed.
"""

from __future__ import annotations

import json
from typing import Any, Dict


class IteratorStateError(ValueError):
    pass


def _is_in_process(state: Dict[str, Any]) -> bool:
    return set(state) == {"next_index"}


def _is_interleaved(state: Dict[str, Any]) -> bool:
    inner = state.get("iterators_in_use_states")
    return (isinstance(inner, list) and bool(inner)
            and state.get("iterators_in_use_indices") == list(range(len(inner)))
            and all(isinstance(s, dict) and _is_in_process(s) for s in inner)
            and not any(state.get("exhausted", [1]))
            and not state.get("future_states"))


def workers_of(state: Dict[str, Any]) -> int:
    """The worker count a saved state was written with (0: in this process)."""
    if _is_in_process(state):
        return 0
    if _is_interleaved(state):
        return len(state["iterators_in_use_states"])
    raise IteratorStateError(
        "the data iterator's saved state has a layout this version cannot convert "
        f"(keys {sorted(state)}); resume with the data.num_workers the run was saved with.")


def position(state: Dict[str, Any]) -> int:
    """Batches taken, from a state of either layout."""
    if workers_of(state) == 0:
        return int(state["next_index"])
    return sum(int(s["next_index"]) for s in state["iterators_in_use_states"])


def state_at(k: int, num_workers: int) -> Dict[str, Any]:
    """The state of an iterator with ``num_workers`` workers after ``k`` batches."""
    if num_workers == 0:
        return {"next_index": k}
    n = num_workers
    return {"next_index_in_cycle": k % n, "next_index_in_datasets": n,
            "iterators_in_use_indices": list(range(n)),
            "iterators_in_use_states": [{"next_index": max(0, (k - i + n - 1) // n)}
                                        for i in range(n)],
            "exhausted": [0] * n, "future_states": {}}


class WorkerCountRestore:
    """What ``grain.checkpoint.CheckpointRestore`` is given in place of the iterator: a
    state saved with the same worker count is set unchanged, another is converted."""

    def __init__(self, iterator, num_workers: int):
        self.iterator, self.num_workers = iterator, num_workers
        self.converted_from = None  # the saved worker count, when it differed

    def __getattr__(self, name):  # the rest (e.g. grain's start_prefetch) is the iterator's
        return getattr(self.iterator, name)

    def set_state(self, state) -> None:
        if isinstance(state, (bytes, str)):  # grain passes non-DatasetIterator items text
            state = json.loads(state)
        saved = workers_of(state)
        if saved != self.num_workers:
            self.converted_from = saved
            state = state_at(position(state), self.num_workers)
        self.iterator.set_state(state)
