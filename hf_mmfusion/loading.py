"""Datasets for the workflows: where they come from, which modalities they carry, how they are encoded."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

MODALITY_COLUMNS = ("text", "audio", "visual")


def load_any_dataset(
    name: str,
    config_name: str | None = None,
    synthetic_sizes: Sequence[int] = (512, 128, 128),
    audio_dim: int = 16,
    visual_dim: int = 12,
    seed: int = 0,
    modalities: Sequence[str] = MODALITY_COLUMNS,
    **synthetic_kwargs,
):
    """A ``DatasetDict`` from ``"synthetic"``, a local directory (``save_to_disk`` or a converter's Parquet
    output), or a Hub dataset id. ``synthetic_kwargs`` (``text_words``, ``audio_frames``, ``visual_frames``
    ranges) shape the synthetic data."""
    import datasets

    if name == "synthetic":
        from .data.synthetic import make_synthetic_dataset

        return make_synthetic_dataset(
            tuple(synthetic_sizes),
            modalities=modalities,
            audio_dim=audio_dim,
            visual_dim=visual_dim,
            seed=seed,
            **{k: tuple(v) for k, v in synthetic_kwargs.items() if v is not None},
        )
    path = Path(name)
    if path.is_dir():
        from .data.schema import load_converted

        loaded = load_converted(path)
        if isinstance(loaded, datasets.Dataset):
            raise ValueError(
                f"{name} holds a single Dataset; save a DatasetDict with train/validation/test splits instead"
            )
        return loaded
    if path.exists():
        raise ValueError(f"dataset {name!r} is a file; pass a DatasetDict directory (save_to_disk) or a Hub id")
    return datasets.load_dataset(name, config_name)


def dataset_modalities(dataset) -> list[str]:
    """The modality columns a split carries, in canonical order."""
    return [m for m in MODALITY_COLUMNS if m in dataset.column_names]


def check_dataset_modalities(model_modalities: Sequence[str], available: Sequence[str], dataset_name: str = "") -> None:
    """A model may use a subset of the data's modalities, never one the data lacks."""
    missing = [m for m in model_modalities if m not in available]
    if not model_modalities:
        raise ValueError("modalities must name at least one of 'text', 'audio', 'visual'")
    if missing:
        raise ValueError(
            f"the model is configured with modalities {list(model_modalities)}, but dataset "
            f"{dataset_name!r} has no column for {missing} (its modality columns: {list(available)}). "
            f"Train with --modalities {' '.join(m for m in model_modalities if m in available) or '<one of the columns>'}."
        )


def dataset_frame_dims(dataset) -> tuple[int | None, int | None]:
    """Frame widths of the ``audio`` / ``visual`` columns (from the ``Array2D`` feature or the first row)."""
    dims = []
    for modality in ("audio", "visual"):
        if modality not in dataset.column_names:
            dims.append(None)
            continue
        feature = dataset.features[modality]
        shape = getattr(feature, "shape", None)
        if shape is not None and shape[-1] is not None:
            dims.append(int(shape[-1]))
            continue
        import numpy as np

        first = np.asarray(dataset[0][modality], dtype="float32")
        if first.ndim != 2:
            raise ValueError(f"column {modality!r} must hold [frames, features] arrays, got shape {list(first.shape)}")
        dims.append(int(first.shape[1]))
    return dims[0], dims[1]


def is_regression_label(dataset, label_column: str) -> bool:
    """Float labels mean regression; integer or ``ClassLabel`` labels mean classification."""
    from datasets import ClassLabel, Value

    if label_column not in dataset.column_names:
        raise ValueError(f"label_column {label_column!r} is not a column of the dataset ({dataset.column_names})")
    feature = dataset.features[label_column]
    if isinstance(feature, ClassLabel):
        return False
    if isinstance(feature, Value):
        return feature.dtype.startswith("float")
    raise ValueError(f"label_column {label_column!r} must hold one number per row, got feature {feature}")


def num_classes(dataset, label_column: str) -> int:
    from datasets import ClassLabel

    feature = dataset.features[label_column]
    if isinstance(feature, ClassLabel):
        return feature.num_classes
    return int(max(dataset[label_column])) + 1


def fit_feature_normalization(processor, train_split) -> None:
    """Standardise acoustic/visual frames with statistics of the training split (stored in the processor)."""
    for modality in ("audio", "visual"):
        extractor = getattr(processor, f"{modality}_feature_extractor", None)
        if extractor is not None and modality in train_split.column_names:
            extractor.fit_normalization(_iter_frames(train_split, modality))


def _iter_frames(split, column: str, batch_size: int = 256):
    # Streams the frames batch by batch: a MOSEI-sized split does not fit in memory at once.
    for batch in split.select_columns([column]).with_format("numpy").iter(batch_size=batch_size):
        yield from batch[column]


def encode_dataset(split, processor, modalities: Sequence[str], label_column: str | None, max_length: int | None):
    """Processor outputs for each row (unpadded), restricted to ``modalities``; ``labels`` from ``label_column``."""
    from .data.preprocess import preprocess_dataset

    dropped = [m for m in MODALITY_COLUMNS if m in split.column_names and m not in modalities]
    if dropped:
        split = split.remove_columns(dropped)
    return preprocess_dataset(split, processor, label_column=label_column, max_length=max_length)


def make_collator(processor):
    from .data.collator import MMFusionDataCollator

    return MMFusionDataCollator(processor)


def is_hub_id(name: str) -> bool:
    return "/" in name and not os.path.exists(name)


def checkpoint_weight_names(name_or_path: str, revision: str | None = None) -> set[str]:
    """Names of the tensors stored in a checkpoint (a directory or a Hub id), read from the file headers."""
    import json

    from transformers.utils import cached_file

    def find(filename: str):
        return cached_file(
            name_or_path, filename, revision=revision, _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )

    index = find("model.safetensors.index.json")
    if index:
        with open(index) as handle:
            return set(json.load(handle)["weight_map"])
    single = find("model.safetensors")
    if single:
        from safetensors import safe_open

        with safe_open(single, framework="pt") as handle:
            return set(handle.keys())
    legacy = find("pytorch_model.bin")
    if legacy:
        import torch

        return set(torch.load(legacy, map_location="meta", weights_only=True, mmap=True))
    raise ValueError(f"{name_or_path!r} holds no model weights (model.safetensors or pytorch_model.bin)")


def check_checkpoint_weights(model, name_or_path: str, revision: str | None = None) -> None:
    """Refuse a model whose checkpoint does not hold exactly its weights.

    ``from_pretrained`` fills missing parameters with random values and drops unexpected ones, with only
    a log line: a checkpoint without its classifier, or saved by the other model type, would predict
    noise. Raises a ``ValueError`` naming the missing and unexpected weights.
    """
    stored = checkpoint_weight_names(name_or_path, revision)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - stored), sorted(stored - expected)
    if not missing and not unexpected:
        return

    def shown(keys: list[str]) -> str:
        more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
        return ", ".join(keys[:8]) + more

    parts = []
    if missing:
        parts.append(f"missing {len(missing)} weights ({shown(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights ({shown(unexpected)})")
    raise ValueError(
        f"checkpoint {name_or_path!r} does not match its {type(model).__name__} "
        f"(model_type {model.config.model_type!r}): {'; '.join(parts)}. It would run with random parameters; "
        "use the checkpoint the model was saved to, or retrain"
    )


def resolve_split(dataset_dict, name: str, dataset_name: str = "") -> str:
    """The split of ``dataset_dict`` that ``name`` means: itself, or the split its common alias names
    (``valid`` / ``val`` / ``dev`` <-> ``validation``, ``training`` -> ``train``, ``testing`` -> ``test``)."""
    from .data.schema import SPLIT_ALIASES

    if name in dataset_dict:
        return name
    canonical = SPLIT_ALIASES.get(str(name).strip().lower())
    if canonical is not None:
        matches = [split for split in dataset_dict if SPLIT_ALIASES.get(str(split).lower()) == canonical]
        if len(matches) == 1:
            return matches[0]
    raise ValueError(
        f"dataset {dataset_name!r} has no split {name!r}; it has {list(dataset_dict)} "
        "(valid / val / dev are read as validation)"
    )


def check_text_length(model, max_length: int) -> None:
    """``max_length`` must fit the text encoder's position table."""
    # A plain text model (the baseline) has neither `modalities` nor a `text_config`: its config is the text's.
    modalities = getattr(model.config, "modalities", ["text"])
    text_config = getattr(model.config, "text_config", None) or model.config
    limit = getattr(text_config, "max_position_embeddings", None)
    if "text" in modalities and limit is not None and max_length > limit:
        raise ValueError(f"--max_text_length {max_length} exceeds the text encoder's maximum of {limit} positions")
