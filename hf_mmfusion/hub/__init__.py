"""Model cards and Hub publishing for CLCR and SSU checkpoints."""

from .card import TEMPLATES_DIR, build_model_card, metric_eval_results, template_path
from .push import push_to_hub, stage_checkpoint

__all__ = ["TEMPLATES_DIR", "build_model_card", "metric_eval_results", "push_to_hub", "stage_checkpoint", "template_path"]
