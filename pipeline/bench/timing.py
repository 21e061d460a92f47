"""Side-by-side timing on a noisy shared machine: contenders interleaved, medians, ratios."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping

__all__ = ["interleaved_medians"]


def interleaved_medians(contenders: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each contender, run in turn `repeats` times so noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            gc.collect()
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}
