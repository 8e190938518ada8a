"""How many torch CPU threads a command runs a model with: one rule for train, evaluate, predict and explain.

The models this package trains on a CPU are small (a few million parameters): their matrix products are
too short to split, so a second intra-op thread only adds synchronisation. ``benchmarks/train_threads.py``
measured a training step 3.9x (CLCR) and 5.1x (SSU) slower with two threads than with one on two cores,
and inference shows the same. So small models run with one thread unless the user says otherwise
(``--threads`` or ``OMP_NUM_THREADS``); larger ones keep torch's default.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

# Below this size one CPU thread runs fastest (benchmarks/train_threads.py measures it).
SMALL_MODEL_PARAMETERS = 5_000_000
THREADS_ENV = "OMP_NUM_THREADS"


def _environment_threads() -> int | None:
    # OpenMP allows a list per nesting level ("4,2"); the first entry is the count torch uses.
    value = os.environ.get(THREADS_ENV, "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def choose_threads(model, requested: int | None = None) -> int:
    """CPU threads for running ``model``: ``requested`` (``--threads``), else ``OMP_NUM_THREADS`` when set,
    else 1 for models under ``SMALL_MODEL_PARAMETERS`` parameters, else torch's current count."""
    import torch

    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be at least 1, got {requested}")
        return requested
    from_environment = _environment_threads()
    if from_environment is not None:
        return from_environment
    if sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS:
        return 1
    return torch.get_num_threads()


@contextmanager
def model_threads(model, requested: int | None = None):
    """Run the block with :func:`choose_threads` threads, then give the caller back its own setting."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(choose_threads(model, requested))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


THREADS_HELP = (
    f"torch intra-op CPU threads. Default: {THREADS_ENV} when set, else 1 for models under "
    f"{SMALL_MODEL_PARAMETERS // 1_000_000}M parameters (a second thread only adds synchronisation at these "
    "sizes), torch's own default otherwise"
)
