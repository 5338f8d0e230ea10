"""bench/timing.py: the jax-free interleaved timing vs_torch.py's parent uses."""

import os
import sys

from repo_root import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
import timing  # noqa: E402


def test_settled_times_all_calls_but_the_first_of_each_turn():
    seconds = iter([9.0, 1.0, 3.0, 2.0, 7.0, 4.0, 6.0, 5.0])  # what each call "takes"
    calls = []

    def fake_timer(fn):
        fn()
        return next(seconds)
    times = timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               repeats=1, warmup=0, timer=timing.settled(fake_timer, 4))
    assert calls == ["a"] * 4 + ["b"] * 4  # one variant's calls back to back, then the next
    assert times == {"a": [2.0], "b": [5.0]}  # medians of (1, 3, 2) and (4, 6, 5)
    assert timing.settled(fake_timer, 1) is fake_timer
