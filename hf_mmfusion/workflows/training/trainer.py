"""The ``Trainer`` of the fusion models: every loss term logged on its own, a learning rate of its own for
the text encoder, and the task metrics from the ``evaluate`` modules."""

from __future__ import annotations

from unittest import mock

import numpy as np
import torch
import transformers.trainer
from transformers import ProcessorMixin, Trainer

from ...metrics import load_metric

LOSS_SUFFIX = "_loss"

def make_compute_metrics(num_labels: int, boundary: float = 0.0):
    """``compute_metrics`` for ``Trainer``: the ``msa`` module for regression (Acc-2 / F1 split at
    ``boundary``), else ``classification``."""
    regression = num_labels == 1
    metric = load_metric("msa" if regression else "classification", keep_in_memory=True)

    def compute_metrics(eval_pred):
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        labels = eval_pred.label_ids
        preds = np.asarray(logits).reshape(-1) if regression else np.asarray(logits).argmax(-1)
        extra = {"boundary": boundary} if regression else {}
        return metric.compute(predictions=preds, references=np.asarray(labels).reshape(-1), **extra)

    return compute_metrics


def logits_only(logits, labels):
    """Keep only the logits of a model output tuple, so evaluation does not gather analysis tensors."""
    return logits[0] if isinstance(logits, (tuple, list)) else logits


class MMFusionTrainer(Trainer):
    """``Trainer`` that logs every loss term of the model outputs (``*_loss`` fields) separately.

    Terms are averaged over the micro-batches since the last log and over processes, exactly like the
    total ``loss`` Trainer logs; evaluation logs them with the metric prefix (``eval_task_loss``).
    """

    def __init__(self, *args, text_learning_rate: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.text_learning_rate = text_learning_rate
        self._term_sums: dict[str, dict[str, torch.Tensor]] = {"train": {}, "eval": {}}
        self._term_counts: dict[str, int] = {"train": 0, "eval": 0}
        # The prefix of the evaluation under way (``metric_key_prefix``): its log gets the loss terms.
        self._eval_prefix: str | None = None

    def train(self, *args, **kwargs):
        processor = self.processing_class
        if not (isinstance(processor, ProcessorMixin) and getattr(processor, "tokenizer", None) is None):
            return super().train(*args, **kwargs)
        # Trainer first aligns the model's special tokens with `processing_class.tokenizer`, and transformers
        # fails on a processor without one (an audio-visual model). Such a model has no token to align.
        with mock.patch.object(transformers.trainer, "align_special_tokens", lambda model, processing_class: None):
            return super().train(*args, **kwargs)

    def create_optimizer(self, model=None):
        """Trainer's optimizer, with the text encoder's parameters moved to their own learning rate."""
        optimizer = super().create_optimizer(model)
        if self.text_learning_rate is None:
            return optimizer
        opt_model = self.model if model is None else model
        text_ids = {id(p) for n, p in opt_model.named_parameters() if "text_encoder." in n}
        moved = []
        for group in optimizer.param_groups:
            text = [p for p in group["params"] if id(p) in text_ids]
            if text:
                group["params"] = [p for p in group["params"] if id(p) not in text_ids]
                moved.append({**{k: v for k, v in group.items() if k != "params"}, "params": text})
        for group in moved:
            group["lr"] = group["initial_lr"] = self.text_learning_rate
            optimizer.add_param_group(group)
        return optimizer

    def get_decay_parameter_names(self, model) -> list[str]:
        # A tensor with a frozen block (a model's `load_primary_model`) gets no gradient there, but decoupled
        # weight decay would still shrink it.
        frozen = {n for n, p in model.named_parameters() if getattr(p, "frozen_block", None) is not None}
        return [n for n in super().get_decay_parameter_names(model) if n not in frozen]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        phase = "train" if model.training else "eval"
        sums = self._term_sums[phase]
        if isinstance(outputs, dict):
            for key, value in outputs.items():
                if key.endswith(LOSS_SUFFIX) and torch.is_tensor(value) and value.numel() == 1:
                    sums[key] = sums.get(key, 0.0) + value.detach().float().reshape(())
            self._term_counts[phase] += 1
        return (loss, outputs) if return_outputs else loss

    def _gathered_terms(self, phase: str) -> dict[str, float]:
        sums, count = self._term_sums[phase], self._term_counts[phase]
        self._term_sums[phase], self._term_counts[phase] = {}, 0
        if not sums or not count:
            return {}
        keys = sorted(sums)
        stacked = torch.stack([sums[k] for k in keys]).to(self.args.device) / count
        if self.args.world_size > 1:
            stacked = self.accelerator.gather(stacked[None]).mean(0)
        return {k: float(v) for k, v in zip(keys, stacked.tolist())}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._gathered_terms("train"))
        elif self._eval_prefix is not None:
            logs.update({f"{self._eval_prefix}_{k}": v for k, v in self._gathered_terms("eval").items()})
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        self._term_sums["eval"], self._term_counts["eval"] = {}, 0
        outer, self._eval_prefix = self._eval_prefix, metric_key_prefix
        try:
            return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        finally:
            self._eval_prefix = outer

