"""Silencing the libraries' own progress bars and load reports while a command shows its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def library_output_silenced() -> Iterator[None]:
    """Turn off the per-map bars of `datasets` and the bars and load reports of `transformers` for the block.

    A command with one progress bar of its own (the demo's stages, the seeds of a multi-seed run) would be
    buried under them. The caller's settings come back afterwards, also after an error.
    """
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_bars = not datasets.are_progress_bars_disabled()
    hf_bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if hf_bars:
            hf_logging.enable_progress_bar()
        if datasets_bars:
            datasets.enable_progress_bars()
