"""``evaluate`` metric modules shipped with the package, loadable offline by path."""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
_ALIASES = {"msa": "msa", "sentiment": "msa", "classification": "mm_classification", "mm_classification": "mm_classification"}


def metric_path(name: str) -> str:
    """Directory of a shipped metric module (``"msa"`` or ``"classification"``)."""
    if name not in _ALIASES:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(_ALIASES)}")
    return str(METRICS_DIR / _ALIASES[name])


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of a shipped metric by its short name; works offline.

    ``kwargs`` go to ``evaluate.load`` (e.g. ``keep_in_memory=True``, ``experiment_id=...``).
    """
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = ["METRICS_DIR", "load_metric", "metric_path"]
