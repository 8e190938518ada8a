"""Run ``MMFusionProcessor`` over a canonical dataset once, with ``Dataset.map`` (batched and cached)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TEXT_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids", "dependency_heads")


def _process_batch(
    batch: dict,
    processor,
    text_column: str | None,
    audio_column: str | None,
    visual_column: str | None,
    label_column: str | None,
    max_length: int | None,
    audio_max_length: int | None,
    visual_max_length: int | None,
) -> dict:
    """One batch of canonical rows -> unpadded per-row model inputs (+ ``labels``)."""
    out = processor(
        text=batch[text_column] if text_column else None,
        audio=batch[audio_column] if audio_column else None,
        visual=batch[visual_column] if visual_column else None,
        padding=False,
        truncation=True,
        max_length=max_length,
        audio_max_length=audio_max_length,
        visual_max_length=visual_max_length,
    )
    result = dict(out)
    if label_column:
        check_label_values(batch[label_column], label_column, batch.get("id"))
        result["labels"] = batch[label_column]
    return result


def check_label_values(labels, label_column: str, ids=None) -> None:
    """Refuse NaN / infinite scores and negative class ids (a ``ValueError`` naming the first rows)."""
    values = np.asarray(labels)
    if values.dtype == object or values.ndim != 1:
        raise ValueError(f"`{label_column}` must hold one number per row")
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        what = "NaN or infinite"
    else:
        bad = np.flatnonzero(values < 0)
        what = "negative class ids"
    if bad.size:
        rows = [ids[i] for i in bad[:5]] if ids is not None else bad[:5].tolist()
        raise ValueError(f"`{label_column}` holds {what} in {bad.size} rows (first: {rows}); fix or drop those rows")


def _output_features(dataset, processor, columns: dict, label_column, keep_columns):
    from datasets import Array2D, Features, List, Value

    spec = {name: dataset.features[name] for name in keep_columns}
    if columns["text"]:
        spec["input_ids"] = List(Value("int32"))
        spec["attention_mask"] = List(Value("int8"))
        if "token_type_ids" in processor.tokenizer.model_input_names:
            spec["token_type_ids"] = List(Value("int8"))
        if processor.parser is not None:
            spec["dependency_heads"] = List(Value("int32"))
    for modality, extractor in (("audio", processor.audio_feature_extractor), ("visual", processor.visual_feature_extractor)):
        if columns[modality]:
            spec[f"{modality}_features"] = Array2D(shape=(None, extractor.feature_size), dtype="float32")
            spec[f"{modality}_attention_mask"] = List(Value("int8"))
    if label_column:
        spec["labels"] = dataset.features[label_column]
    return Features(spec)


def preprocess_dataset(
    dataset,
    processor,
    *,
    label_column: str | None = "label",
    text_column: str = "text",
    audio_column: str = "audio",
    visual_column: str = "visual",
    keep_columns: Sequence[str] = ("id",),
    max_length: int | None = None,
    audio_max_length: int | None = None,
    visual_max_length: int | None = None,
    batch_size: int = 256,
    num_proc: int | None = None,
    load_from_cache_file: bool | None = None,
):
    """Map ``processor`` over a ``Dataset`` / ``IterableDataset`` (or a dict of them) with the canonical columns.

    Each modality is processed when both the dataset has its column and the processor has its part, so a
    text-audio processor ignores a ``visual`` column and an audio-visual processor works on data without
    text. Output rows hold unpadded model inputs (``input_ids`` ..., ``dependency_heads``,
    ``audio_features [Ta, Da]`` + mask, ``visual_features [Tv, Dv]`` + mask), ``labels`` (from
    ``label_column``; pass ``"label_class"`` for classification or ``None`` for unlabelled data), and
    ``keep_columns``; ``MMFusionDataCollator`` pads them per batch.

    The result of a dataset loaded from disk is cached in the ``datasets`` cache under a fingerprint of the
    rows, the processor (:func:`processor_fingerprint`) and these settings: a second call, in this process or
    another, with the same processor and data reads it instead of processing again. ``num_proc`` processes
    shards in that many processes (``Dataset.map``). A streamed ``IterableDataset`` is mapped lazily.
    """
    from datasets import DatasetDict, IterableDataset, IterableDatasetDict
    from datasets.fingerprint import Hasher

    if isinstance(dataset, (DatasetDict, IterableDatasetDict)):
        return type(dataset)(
            {
                name: preprocess_dataset(
                    split,
                    processor,
                    label_column=label_column,
                    text_column=text_column,
                    audio_column=audio_column,
                    visual_column=visual_column,
                    keep_columns=keep_columns,
                    max_length=max_length,
                    audio_max_length=audio_max_length,
                    visual_max_length=visual_max_length,
                    batch_size=batch_size,
                    num_proc=num_proc,
                    load_from_cache_file=load_from_cache_file,
                )
                for name, split in dataset.items()
            }
        )
    names = set(_column_names(dataset))
    columns = {
        "text": text_column if text_column in names and processor.tokenizer is not None else None,
        "audio": audio_column if audio_column in names and processor.audio_feature_extractor is not None else None,
        "visual": visual_column if visual_column in names and processor.visual_feature_extractor is not None else None,
    }
    if not any(columns.values()):
        raise ValueError(
            f"nothing to process: the dataset has columns {sorted(names)} and the processor handles "
            f"{[m for m, part in (('text', processor.tokenizer), ('audio', processor.audio_feature_extractor), ('visual', processor.visual_feature_extractor)) if part is not None]}"
        )
    if label_column is not None and label_column not in names:
        raise ValueError(f"label_column {label_column!r} is not a column of the dataset (columns: {sorted(names)})")
    keep_columns = [c for c in keep_columns if c in names and c != label_column]
    features = _output_features(dataset, processor, columns, label_column, keep_columns)
    fn_kwargs = {
        "processor": processor,
        "text_column": columns["text"],
        "audio_column": columns["audio"],
        "visual_column": columns["visual"],
        "label_column": label_column,
        "max_length": max_length,
        "audio_max_length": audio_max_length,
        "visual_max_length": visual_max_length,
    }
    remove = [c for c in names if c not in keep_columns]
    if isinstance(dataset, IterableDataset):
        # Lazy: rows are processed as the training loop reads them, nothing is written.
        return dataset.map(
            _process_batch, batched=True, batch_size=batch_size, remove_columns=remove, features=features,
            fn_kwargs=fn_kwargs,
        )
    settings = {k: v for k, v in fn_kwargs.items() if k != "processor"}
    fingerprint = Hasher.hash(
        [dataset._fingerprint, processor_fingerprint(processor), settings, features, batch_size, keep_columns]
    )
    return dataset.map(
        _process_batch,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc if num_proc and num_proc > 1 and len(dataset) > 1 else None,
        # Written every batch: with map's default (1,000 rows) a MOSEI-sized split holds 1,000 processed rows of
        # frames (~130 MB) in memory before writing them.
        writer_batch_size=batch_size,
        remove_columns=remove,
        features=features,
        load_from_cache_file=load_from_cache_file,
        cache_file_name=_cache_file_name(dataset, fingerprint),
        new_fingerprint=fingerprint,
        fn_kwargs=fn_kwargs,
        desc="Processing multimodal rows",
    )


def _column_names(dataset) -> list[str]:
    names = dataset.column_names
    if names is None:  # a streamed dataset whose source does not declare its features
        raise ValueError("the streamed dataset does not declare its columns; give its files a schema (Parquet or Arrow)")
    return names


def processor_fingerprint(processor) -> str:
    """A hash of what ``processor`` computes, the same in every process and before and after it is used.

    ``Hasher.hash(processor)`` pickles the objects as they are: a fast tokenizer records the truncation of
    its last call, so the hash changes once the processor has run (the second split of a run would miss the
    cache its first run wrote). Hashed here: the tokenizer's vocabulary and pipeline without that state,
    the extractors' settings (normalisation statistics included) and the parser's settings."""
    from datasets.fingerprint import Hasher

    parts: dict = {"class": type(processor).__name__}
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            state = json.loads(backend.to_str())
            state.pop("truncation", None)
            state.pop("padding", None)
        else:
            state = Hasher.hash(tokenizer)
        parts["tokenizer"] = {
            "class": type(tokenizer).__name__,
            "state": state,
            "input_names": list(tokenizer.model_input_names),
            "sides": [tokenizer.padding_side, tokenizer.truncation_side],
            "special": tokenizer.special_tokens_map,
            "model_max_length": tokenizer.model_max_length,
        }
    for name in ("audio_feature_extractor", "visual_feature_extractor"):
        extractor = getattr(processor, name, None)
        if extractor is not None:
            parts[name] = extractor.to_dict()
    parser = getattr(processor, "parser", None)
    if parser is not None:
        parts["parser"] = [type(parser).__name__, parser.to_dict() if hasattr(parser, "to_dict") else repr(parser)]
    return Hasher.hash(json.dumps(parts, sort_keys=True, default=str))


def _cache_file_name(dataset, fingerprint: str) -> str | None:
    """Where ``map`` caches its result: in the ``datasets`` cache, named by the input's fingerprint and the
    processing, never beside the dataset's own files (for ``load_from_disk`` that is the user's dataset folder,
    perhaps read-only). ``None`` for a dataset in memory, which ``map`` does not cache."""
    if not dataset.cache_files:
        return None
    import datasets

    folder = Path(datasets.config.HF_DATASETS_CACHE) / "hf_mmfusion" / "preprocess"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{fingerprint}.arrow")
