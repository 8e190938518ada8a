"""Timing helper shared by the benchmark scripts (run them from the repository root: ``python benchmarks/x.py``)."""

from __future__ import annotations

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
