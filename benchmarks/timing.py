"""Timing helper shared by the benchmark scripts (run them from the repository root: ``python benchmarks/x.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def best(fn: Callable[[], object], repeats: int, warmup: int = 0) -> float:
    """The fastest of ``repeats`` timed calls of ``fn`` (seconds), after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def paired(ours: Callable[[], object], baseline: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """Interleaved timing of two calls doing the same work: (best seconds of ``ours``, best of ``baseline``,
    median of the per-round ratios ours / baseline). Alternating the two in each round exposes both to the
    same machine load, so the ratio stays stable where separate runs of a 0.1 s call drift by tens of
    percent on a busy machine. One untimed call of each warms caches first."""
    ours(), baseline()
    ours_times, baseline_times = [], []
    for _ in range(repeats):
        for fn, times in ((ours, ours_times), (baseline, baseline_times)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    ratio = statistics.median(a / b for a, b in zip(ours_times, baseline_times))
    return min(ours_times), min(baseline_times), ratio
