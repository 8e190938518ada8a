"""Model cards and Hub publishing for CLCR and SSU checkpoints."""

from .card import (
    TEMPLATES_DIR,
    build_model_card,
    card_metrics,
    is_quality_metric,
    metric_eval_results,
    split_metrics,
    template_path,
)
from .push import push_to_hub, stage_checkpoint

__all__ = [
    "TEMPLATES_DIR",
    "build_model_card",
    "card_metrics",
    "is_quality_metric",
    "metric_eval_results",
    "push_to_hub",
    "split_metrics",
    "stage_checkpoint",
    "template_path",
]
