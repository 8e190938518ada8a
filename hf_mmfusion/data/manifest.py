"""Readers for people's own data: a CSV / JSON manifest, and per-segment feature archives (``.npz``).

A manifest has one row per sample: an id, a transcript, a label, optionally a split and paths to the
sample's frame features (``.npy`` ``[frames, dim]``), raw audio (``.wav``, turned into log-mel or MFCC
frames by ``AcousticFeatureExtractor``) or raw video (``.mp4``, ``.avi``, ...: grid-colour frames from
``VisualFeatureExtractor``). Relative paths are resolved against the manifest's folder.
"""

from __future__ import annotations

import csv
import json
import math
import os
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..processing.feature_extraction_mmfusion import VIDEO_SUFFIXES
from .schema import is_given, normalize_split


def read_table_records(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            # utf-8-sig: spreadsheet exports often start with a byte-order mark.
            with path.open(newline="", encoding="utf-8-sig") as handle:
                return list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
        if suffix == ".jsonl":
            with path.open(encoding="utf-8-sig") as handle:
                return [json.loads(line) for line in handle if line.strip()]
        if suffix == ".json":
            records = json.loads(path.read_text(encoding="utf-8-sig"))
            if isinstance(records, dict) and "data" in records:
                records = records["data"]
            if not isinstance(records, list):
                raise ValueError(f"{path}: a JSON manifest is a list of objects (or {{'data': [...]}})")
            return records
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read the manifest ({type(err).__name__}: {err})") from err
    except RecursionError:
        raise ValueError(f"{path}: cannot read the manifest (values nested too deeply)") from None
    raise ValueError(f"{path}: manifest must be .csv, .tsv, .json or .jsonl")


def read_npy_frames(path: str | os.PathLike) -> np.ndarray:
    """The float32 array of a ``.npy`` feature file; a ``ValueError`` naming the file when it is not a
    readable array of real numbers (pickled object arrays are refused, as they could run code)."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"cannot read {path} as a .npy array ({type(err).__name__}: {err})") from err
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: expected a .npy array, got {type(array).__name__}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: features must be real numbers, got an array of dtype {array.dtype}")
    return array.astype(np.float32)


def _load_frames(value, base: Path, where: str, extractor) -> np.ndarray:
    path = Path(str(value))
    path = path if path.is_absolute() else base / path
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            try:
                frames = read_npy_frames(path)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        elif suffix in VIDEO_SUFFIXES:
            if extractor is None or not hasattr(extractor, "video_to_frames"):
                raise ValueError(f"{where}: {path} is a video; a visual extractor is needed to frame it")
            frames = extractor.video_to_frames(path, where=where)
        elif suffix == ".wav":
            if extractor is None or not hasattr(extractor, "waveform_to_frames"):
                raise ValueError(f"{where}: {path} is a waveform; only the audio column may hold .wav recordings")
            from scipy.io import wavfile

            rate, wav = wavfile.read(path)
            frames = extractor.waveform_to_frames(wav, rate)
        else:
            raise ValueError(f"{where}: feature files must be .npy, .wav or a video ({', '.join(VIDEO_SUFFIXES)}), got {path.name}")
    except (OSError, EOFError, struct.error) as err:
        raise ValueError(f"{where}: cannot read {path} ({type(err).__name__}: {err})") from err
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{where}: cannot read {path} ({err})") from err
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 1:
        frames = frames[None, :]  # one utterance-level vector is one frame
    if frames.ndim != 2:
        raise ValueError(f"{where}: {path.name} must hold [frames, dim] features, got shape {list(frames.shape)}")
    return frames


def frame_columns(columns, audio_column: str | None = None, visual_column: str | None = None):
    """The (audio, visual) frame columns to read: a name given is kept, ``None`` becomes the canonical
    ``audio`` / ``visual`` column when ``columns`` has it, ``""`` means none (``None`` in the result)."""
    resolved = []
    for given, canonical in ((audio_column, "audio"), (visual_column, "visual")):
        if given is None:
            given = canonical if canonical in columns else ""
        resolved.append(given or None)
    return tuple(resolved)


def manifest_columns(path: str | os.PathLike) -> set[str]:
    """The column names of a manifest (those of its first record)."""
    records = read_table_records(Path(path))
    return set(records[0]) if records and isinstance(records[0], dict) else set()


def raw_media_modalities(path: str | os.PathLike, audio_column: str | None, visual_column: str | None) -> set[str]:
    """The modalities (``audio`` / ``visual``) whose column gives a recording (audio) or a video (visual) in every row of the
    manifest at ``path``, so that :func:`read_manifest` computes all their frames with its extractors."""
    media = {"audio": (".wav",), "visual": VIDEO_SUFFIXES}
    records = [r for r in read_table_records(Path(path)) if isinstance(r, dict)]
    found = set()
    for modality, column in (("audio", audio_column), ("visual", visual_column)):
        if column and records and all(
            is_given(r.get(column)) and Path(str(r[column])).suffix.lower() in media[modality] for r in records
        ):
            found.add(modality)
    return found


def read_manifest(
    path: str | os.PathLike,
    *,
    id_column: str = "id",
    text_columns: Sequence[str] = ("text",),
    label_column: str = "label",
    split_column: str | None = "split",
    default_split: str = "train",
    label_class_column: str | None = None,
    audio_column: str | None = None,
    visual_column: str | None = None,
    audio_extractor=None,
    visual_extractor=None,
) -> dict[str, list[dict]]:
    """Rows per split from a CSV / TSV / JSON / JSON-Lines manifest.

    ``text_columns`` are tried in order and the first non-empty one is the transcript (e.g.
    ``("text_lower", "text_upper")``); give ``()`` for data without text. Without ``split_column`` in the
    manifest every row goes to ``default_split``. ``audio_column`` / ``visual_column`` name columns with
    paths to ``.npy`` frame files (``.wav`` for audio, framed by ``audio_extractor``; video files for
    visual, framed by ``visual_extractor``); ``None`` reads the canonical ``audio`` / ``visual`` column
    when the manifest has one, ``""`` reads none.
    """
    path = Path(path)
    records = read_table_records(path)
    if not records:
        raise ValueError(f"{path}: the manifest has no rows")
    if not isinstance(records[0], dict):
        raise ValueError(f"{path} row 1: a record must be an object with named columns, got {type(records[0]).__name__}")
    columns = set(records[0])
    audio_column, visual_column = frame_columns(columns, audio_column, visual_column)
    for needed in [id_column, label_column] + [c for c in (label_class_column, audio_column, visual_column) if c]:
        if needed not in columns:
            raise ValueError(f"{path}: column {needed!r} not found; columns are {sorted(columns)}")
    missing_text = [c for c in text_columns if c not in columns]
    if missing_text:
        raise ValueError(f"{path}: text column(s) {missing_text} not found; columns are {sorted(columns)}")
    use_split = split_column is not None and split_column in columns
    out: dict[str, list[dict]] = {}
    seen: set[str] = set()
    needed_everywhere = [id_column, label_column, *text_columns] + [
        c for c in (label_class_column, audio_column, visual_column) if c
    ]
    for i, record in enumerate(records):
        where = f"{path.name} row {i + 1}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: a record must be an object with named columns, got {type(record).__name__}")
        lacking = [c for c in needed_everywhere if c not in record]
        if lacking:
            raise ValueError(f"{where}: no column {lacking} (every row needs {needed_everywhere})")
        sample_id = str(record[id_column])
        if sample_id in seen:
            raise ValueError(f"{where}: duplicate id {sample_id!r}")
        seen.add(sample_id)
        where = f"{where} (id {sample_id!r})"
        try:
            label = float(record[label_column])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: `{label_column}` must be a number, got {record[label_column]!r}") from err
        if not math.isfinite(label):
            raise ValueError(f"{where}: `{label_column}` is not finite ({label})")
        row = {"id": sample_id, "label": label}
        if text_columns:
            text = next((str(record[c]) for c in text_columns if is_given(record[c])), None)
            if text is None:
                raise ValueError(f"{where}: every text column {list(text_columns)} is empty")
            row["text"] = text
        if label_class_column:
            try:
                row["label_class"] = int(record[label_class_column])
            except (TypeError, ValueError):
                raise ValueError(
                    f"{where}: `{label_class_column}` must be an integer class id, got {record[label_class_column]!r}"
                ) from None
        for modality, column, extractor in (("audio", audio_column, audio_extractor), ("visual", visual_column, visual_extractor)):
            if column:
                if not is_given(record[column]):
                    raise ValueError(f"{where}: `{column}` has no feature file path")
                row[modality] = _load_frames(record[column], path.parent, where, extractor)
        split = normalize_split(record[split_column]) if use_split else normalize_split(default_split)
        out.setdefault(split, []).append(row)
    return out


def trim_zero_steps(steps: np.ndarray) -> np.ndarray:
    """``steps[T, D]`` without its all-zero steps at either end (the padding of fixed-length releases).

    All-zero steps between real ones stay: only the ends are padding. A sequence whose steps are all zero
    gives ``[0, D]``: the modality is missing for that sample.
    """
    real = np.flatnonzero(np.any(steps != 0, axis=1))
    if real.size == 0:
        return steps[:0]
    return steps[real[0] : real[-1] + 1]


def read_utterance_npz(path: str | os.PathLike) -> dict[str, list[dict]]:
    """An archive of features per segment and split: keys ``{split}_{id,label,audio,vision[,text]}``.

    ``audio`` / ``vision`` are either one vector per segment (``[N, D]``, becoming single-frame sequences
    ``[1, D]``) or fixed-length sequences (``[N, T, D]``, as MulT's and MFN's releases publish them): their
    all-zero steps at either end are padding and are dropped, so each row keeps only its real steps
    (``[frames, D]`` with ``frames <= T``) and the padding never reaches a model as frames. A segment whose
    steps are all zero has no frames (``[0, D]``): that modality is missing for it, and the processor gives
    it an all-zero attention mask. Labels keep their values and scale (ratings 1-5 stay 1-5). Text
    *vectors* are not a canonical column and are left out; join transcripts by id (``--text-from`` of the
    converter).
    """
    try:
        archive = np.load(path, allow_pickle=False)
        arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz archive ({type(err).__name__}: {err})") from err
    splits = sorted({key.rsplit("_", 1)[0] for key in arrays if key.endswith("_label")})
    if not splits:
        raise ValueError(f"{path}: no `<split>_label` arrays; keys are {sorted(arrays)}")
    named = {}
    for prefix in splits:
        split = normalize_split(prefix)
        if split in named:
            raise ValueError(f"{path}: `{named[split]}_*` and `{prefix}_*` both name the {split} split; keep one")
        named[split] = prefix
    out: dict[str, list[dict]] = {}
    for prefix in splits:
        labels = arrays[f"{prefix}_label"]
        if labels.ndim not in (1, 2) or (labels.ndim == 2 and labels.shape[1] != 1):
            raise ValueError(f"{path}: `{prefix}_label` must be [segments] or [segments, 1], got {list(labels.shape)}")
        try:
            labels = labels.astype(np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: `{prefix}_label` must hold numbers, got dtype {labels.dtype}") from None
        n = labels.shape[0]
        ids = arrays.get(f"{prefix}_id")
        if ids is not None and ids.ndim != 1:
            raise ValueError(f"{path}: `{prefix}_id` must be [segments], got {list(ids.shape)}")
        parts = {m: arrays.get(f"{prefix}_{key}") for m, key in (("audio", "audio"), ("visual", "vision"))}
        for name, values in list(parts.items()) + [("id", ids)]:
            key = f"{prefix}_{'vision' if name == 'visual' else name}"
            if values is not None and values.ndim == 0:
                raise ValueError(f"{path}: `{key}` is a single value; expected one row per segment ({n})")
            if values is not None and len(values) != n:
                raise ValueError(f"{path}: `{key}` has {len(values)} rows, expected {n} (one per `{prefix}_label`)")
        for modality, values in parts.items():
            key = f"{prefix}_{'vision' if modality == 'visual' else modality}"
            if values is not None and values.ndim not in (2, 3):
                raise ValueError(
                    f"{path}: `{key}` must be [segments, dim] or [segments, steps, dim], got {list(values.shape)}"
                )
            if values is not None and not np.issubdtype(values.dtype, np.number):
                raise ValueError(f"{path}: `{key}` must hold numbers, got dtype {values.dtype}")
        if ids is not None:
            names, counts = np.unique(np.asarray(ids).astype(str), return_counts=True)
            if (counts > 1).any():
                raise ValueError(f"{path}: `{prefix}_id` repeats ids {names[counts > 1][:5].tolist()}; ids must be unique")
        rows = []
        for i in range(n):
            row = {"id": str(ids[i]) if ids is not None else f"{prefix}-{i:06d}", "label": float(labels[i])}
            for modality, values in parts.items():
                if values is None:
                    continue
                frames = np.asarray(values[i], dtype=np.float32)
                row[modality] = trim_zero_steps(frames) if frames.ndim == 2 else frames.reshape(1, -1)
            rows.append(row)
        out[normalize_split(prefix)] = rows
    return out


def text_lookup(path: str | os.PathLike, id_column: str = "id", text_columns: Sequence[str] = ("text",)) -> dict[str, str]:
    """``{id: transcript}`` from a manifest, taking the first non-empty of ``text_columns``."""
    records = read_table_records(Path(path))
    lookup = {}
    for record in records:
        if id_column not in record:
            raise ValueError(f"{path}: column {id_column!r} not found")
        text = next((str(record[c]) for c in text_columns if is_given(record.get(c))), None)
        if text is not None:
            lookup[str(record[id_column])] = text
    return lookup
