"""Model cards rendered from the package's Jinja templates with ``huggingface_hub.ModelCard``.

``Trainer.create_model_card`` keeps only a few metric names (it drops MAE and Corr), so cards are built
here from the model's config, the training arguments and the metrics of the ``msa`` module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..utils.sources import looks_local

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

# Parts of a metric's name that mark it as bookkeeping, not quality: a card reports neither.
NOT_QUALITY = ("loss", "runtime", "per_second", "epoch")

METRIC_NAMES = {
    "mae": "MAE",
    "corr": "Pearson correlation",
    "acc2_has0": "Acc-2 (has-0: negative vs non-negative)",
    "f1_has0": "F1 weighted (has-0)",
    "acc2_non0": "Acc-2 (non-0: zero labels dropped)",
    "f1_non0": "F1 weighted (non-0)",
    "acc5": "Acc-5",
    "acc7": "Acc-7",
    "acc2": "Acc-2",
    "acc3": "Acc-3",
    "f1": "F1 weighted",
    "accuracy": "Accuracy",
    "f1_macro": "F1 macro",
    "f1_weighted": "F1 weighted",
}

# Config fields worth a line in the card, per model type (missing ones are skipped).
CONFIG_FIELDS = {
    "clcr": (
        "hidden_size", "shared_dim", "num_levels", "text_level_layers", "tcn_dilations", "exchange_heads",
        "budget_fraction_init", "use_budget_projection", "lambda_intra", "intra_gamma", "lambda_inter",
        "inter_lambdas", "whiten_eps", "intra_pair_segments", "use_intra_ced", "use_inter_cad",
        "use_hierarchy", "level_mix",
    ),
    "ssu": (
        "hidden_size", "text_graph", "text_graph_directed", "graph_similarity", "gat_layers", "gat_heads",
        "fusion_topk", "aug_edge_drop", "aug_edge_add", "contrastive_temperature", "sup_num_classes",
        "lambda_sup", "lambda_self", "lambda_align", "head_input", "reg_loss", "use_anchor",
    ),
}
TRAINING_FIELDS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
    "max_steps", "weight_decay", "warmup_steps", "lr_scheduler_type", "optim", "max_grad_norm", "seed",
    "metric_for_best_model", "text_learning_rate",
)
MODALITY_WORDS = {"text": "its transcript", "audio": "frame-level acoustic features",
                  "visual": "frame-level visual features"}


NOTES_PATH = Path(__file__).resolve().parent.parent / "model_notes.md"


def departures(model_type: str) -> str:
    """The table of ``model_notes.md`` for ``model_type``: every point where the model departs from its
    paper or fills a gap, why, and the config switch that restores the literal reading."""
    text = NOTES_PATH.read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S))
    section = sections.get(model_type.upper())
    if section is None:
        raise ValueError(f"model_notes.md has no section for model_type {model_type!r}")
    return section.strip()


def template_path(model_type: str) -> Path:
    """The card template of a model type (``"clcr"`` or ``"ssu"``)."""
    path = TEMPLATES_DIR / f"{model_type}.md.j2"
    if not path.is_file():
        known = sorted(p.name.split(".")[0] for p in TEMPLATES_DIR.glob("*.md.j2"))
        raise ValueError(f"no model card template for model_type {model_type!r}; templates exist for {known}")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _text_backbone(config) -> str:
    text = getattr(config, "text_config", None)
    if text is None:
        return "none (no text modality)"
    name = getattr(text, "_name_or_path", "") or ""
    if name and looks_local(name):
        # A local folder means nothing on the Hub (and may reveal the author's file system).
        name = f"local checkpoint {Path(name).name}"
    shape = f"{text.model_type}, {text.num_hidden_layers} layers, width {text.hidden_size}"
    return f"`{name}` ({shape})" if name else f"{shape}"


def _training_rows(training_args) -> dict[str, str]:
    if training_args is None:
        return {}
    values = training_args.to_dict() if hasattr(training_args, "to_dict") else dict(training_args)
    rows = {}
    for key in TRAINING_FIELDS:
        value = values.get(key)
        if value is None or (key == "max_steps" and value in (-1, 0)):
            continue
        rows[key] = _fmt(value.value if hasattr(value, "value") else value)
    return rows


def metric_eval_results(
    metrics: Mapping[str, float],
    *,
    regression: bool,
    dataset_name: str,
    dataset_id: str | None = None,
    eval_split: str = "test",
    metric_std: Mapping[str, float] | None = None,
    num_runs: int | None = None,
) -> list[EvalResult]:
    """``model-index`` entries of ``metrics``; with ``metric_std`` each metric is a mean over ``num_runs``
    runs and gets a second ``<metric>_std`` entry with its standard deviation."""
    metric_std = metric_std or {}
    runs = f"{num_runs} seeds" if num_runs else "seeds"
    results = []
    for key, value in metrics.items():
        value = float(value)
        if math.isnan(value):
            continue
        name = METRIC_NAMES.get(key, key)
        entries = [(key, f"{name}, mean over {runs}" if key in metric_std else name, value)]
        std = metric_std.get(key)
        if std is not None and not math.isnan(float(std)):
            entries.append((f"{key}_std", f"{name}, standard deviation over {runs}", float(std)))
        results.extend(
            EvalResult(
                task_type="multimodal-sentiment-analysis" if regression else "multimodal-classification",
                task_name="Multimodal sentiment regression" if regression else "Multimodal classification",
                dataset_type=dataset_id or dataset_name,
                dataset_name=dataset_name,
                dataset_split=eval_split,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=round(metric_value, 4),
            )
            for metric_type, metric_name, metric_value in entries
        )
    return results


def build_model_card(
    model,
    metrics: Mapping[str, float] | None = None,
    dataset_name: str = "an unnamed dataset",
    *,
    dataset_id: str | None = None,
    dataset_description: str | None = None,
    eval_split: str = "test",
    training_args=None,
    repo_id: str | None = None,
    model_name: str | None = None,
    robustness: Mapping[str, float] | None = None,
    robustness_metric: str = "mae",
    extra_limitations: list[str] | None = None,
    license: str = "apache-2.0",
    metric_std: Mapping[str, float] | None = None,
    num_runs: int | None = None,
) -> ModelCard:
    """Render the card of a CLCR or SSU model (or its config).

    ``metrics`` are the ``msa`` / ``classification`` module's outputs (fractions); they become the
    card's ``model-index`` results. ``training_args`` is a ``TrainingArguments`` or a dict. Metrics that
    are means over several seeded runs come with ``metric_std`` (and ``num_runs``): the card shows
    mean +- std and the ``model-index`` carries both.
    """
    import transformers

    from ..utils.version import __version__

    config = getattr(model, "config", model)
    model_type = config.model_type
    template = template_path(model_type)
    repo_id = repo_id or f"<user>/{model_type}-model"
    model_name = model_name or repo_id.split("/")[-1]
    regression = config.num_labels == 1 or getattr(config, "problem_type", None) == "regression"
    metrics = {k: float(v) for k, v in (metrics or {}).items()}
    metric_std = {k: float(v) for k, v in (metric_std or {}).items() if k in metrics}
    eval_results = metric_eval_results(
        metrics, regression=regression, dataset_name=dataset_name, dataset_id=dataset_id, eval_split=eval_split,
        metric_std=metric_std, num_runs=num_runs,
    )
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        license=license,
        tags=["hf_mmfusion", model_type, "multimodal", "sentiment-analysis" if regression else "classification"],
        datasets=[dataset_id] if dataset_id else None,
        metrics=sorted(metrics) or None,
        eval_results=eval_results or None,
    )
    hyperparameters = {f"config.{k}": _fmt(getattr(config, k)) for k in CONFIG_FIELDS.get(model_type, ()) if hasattr(config, k)}
    hyperparameters.update({f"training.{k}": v for k, v in _training_rows(training_args).items()})
    num_parameters = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None
    modalities = list(config.modalities)
    frame_modalities = [m for m in ("audio", "visual") if m in modalities]
    widths = {m: getattr(config, f"{m}_input_dim", "?") for m in frame_modalities}
    usage = (['text=["what a great film"]'] if "text" in modalities else []) + [f"{m}=[{m}_frames]" for m in frame_modalities]
    text_graph = getattr(config, "text_graph", "dependency")
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        repo_id=repo_id,
        task_description="sentiment-score regression" if regression else f"{config.num_labels}-class classification",
        task_kind="regression (one score)" if regression else "classification",
        num_labels=config.num_labels,
        modalities=list(config.modalities),
        text_backbone=_text_backbone(config),
        audio_input_dim=getattr(config, "audio_input_dim", "?"),
        visual_input_dim=getattr(config, "visual_input_dim", "?"),
        num_parameters=f"{num_parameters:,}" if num_parameters is not None else "see config",
        package_version=__version__,
        transformers_version=transformers.__version__,
        dataset_name=dataset_name,
        dataset_description=dataset_description
        or (f"[{dataset_id}](https://huggingface.co/datasets/{dataset_id})" if dataset_id and "/" in dataset_id else dataset_name),
        eval_split=eval_split,
        metrics={
            METRIC_NAMES.get(k, k): _fmt(v) + (f" ± {_fmt(metric_std[k])}" if k in metric_std else "")
            for k, v in metrics.items()
        },
        metric_note=("MMSA definitions, accuracies and F1 as fractions" if regression else "scikit-learn definitions")
        + (f"; mean ± standard deviation over {num_runs or 'several'} seeds" if metric_std else ""),
        hyperparameters=hyperparameters,
        robustness={k: _fmt(float(v)) for k, v in (robustness or {}).items()},
        robustness_metric=METRIC_NAMES.get(robustness_metric, robustness_metric),
        segments_note=f"{getattr(config, 'intra_pair_segments', 8)} per sample",
        text_graph_note="spaCy parse" if text_graph == "dependency" else "here: the token chain, no parser",
        extra_limitations=list(extra_limitations or []),
        departures=departures(model_type),
        inputs_description=" and ".join(MODALITY_WORDS[m] for m in modalities),
        frame_note=", ".join(f"{m} {widths[m]}-d frames" for m in frame_modalities),
        usage_frames=[f'{m}_frames = np.zeros((20, {widths[m]}), dtype="float32")  # [frames, {widths[m]}]'
                      for m in frame_modalities],
        usage_inputs=", ".join(usage),
    )


def is_quality_metric(key: str) -> bool:
    """Whether a metric (``eval_mae``, ``test_acc7``, ``mae``) measures the model, not its loss or the run."""
    return not any(part in key for part in NOT_QUALITY)


def split_metrics(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The quality metrics of ``metrics`` named ``<prefix><name>`` (``eval_``, ``test_``), as ``{name: value}``."""
    return {
        key.removeprefix(prefix): float(value)
        for key, value in metrics.items()
        if key.startswith(prefix) and isinstance(value, (int, float)) and is_quality_metric(key)
    }


def card_metrics(
    metrics: Mapping[str, Any], test_split: str = "test", eval_split: str = "validation"
) -> tuple[dict[str, float], str]:
    """What a model card reports of a run's metrics, and the split they come from: the test metrics
    (``test_*``), else the validation ones (``eval_*``), else unprefixed quality metrics as the test split's."""
    test = split_metrics(metrics, "test_")
    if test:
        return test, test_split
    validation = split_metrics(metrics, "eval_")
    if validation:
        return validation, eval_split
    return split_metrics(metrics, ""), test_split
