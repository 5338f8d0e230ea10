"""Interleaved steady-state timing, free of JAX and torch: the parent of
`vs_torch.py --processes separate` uses it without starting either framework.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence


def wall(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes (``fn`` must return when its work is done)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: Dict[str, Any], repeats: int, warmup: int = 1,
                log: Optional[Callable[[str], None]] = None,
                timer: Callable[[Any], float] = wall) -> Dict[str, List[float]]:
    """Seconds per call of each fn (``timer(fn)``), calls interleaved round-robin (the
    starting fn rotates every round), so slow drifts and other load on the machine hit
    all variants alike."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            timer(fns[n])
    out: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            out[n].append(timer(fns[n]))
        if log:
            log(f"  round {r + 1}/{repeats}: " +
                ", ".join(f"{n} {out[n][-1]:.3f}s" for n in names))
    return out


def settled(timer: Callable[[Any], float], calls: int) -> Callable[[Any], float]:
    """A timer that calls ``fn`` ``calls`` times in a row and reports the median of all
    but the first: each variant's steady state within its turn, as in a training loop's
    back-to-back steps, where the one-call timer (``calls=1``) also counts what the
    previous variant's run cost the next (e.g. memory the machine took back)."""
    if calls <= 1:
        return timer
    return lambda fn: median([timer(fn) for _ in range(calls)][1:])


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def spread(xs: Sequence[float]) -> str:
    """min-max as a percentage of the median, a quick noise indicator."""
    m = median(xs)
    return f"{100 * (max(xs) - min(xs)) / m:.1f}%" if m else "-"
