"""Input records (``text``, ``audio``, ``visual``, ``video``) of a saved model: checked, encoded by its processor,
and its outputs turned into scores or labels. ``predict``, the pipeline and ``explain`` all encode through here."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.manifest import read_npy_frames
from ..data.schema import is_given
from ..models.configuration_common import MODALITIES
from ..processing.feature_extraction_mmfusion import VIDEO_SUFFIXES
from ..processing.media import WAV_SUFFIXES, check_media_file
from ..processing.processing_mmfusion import has_visible_text
from .checkpoints import is_regression

FRAME_MODALITIES = ("audio", "visual")


def load_frames(value, modality: str, base_dir: Path | None = None):
    """An ``audio``/``visual`` value -> array (``.npy``), a ``.wav`` path (audio) or the array itself."""
    if isinstance(value, (str, Path)):
        path = Path(value)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        check_media_file(path, modality)
        if path.suffix.lower() == ".npy":
            try:
                frames = read_npy_frames(path)
            except ValueError as err:
                raise ValueError(f"`{modality}`: {err}") from None
            if frames.ndim != 2:
                raise ValueError(f"`{modality}`: {path.name} must hold [frames, features], got shape {list(frames.shape)}")
            return frames
        if path.suffix.lower() == ".wav":
            if modality != "audio":
                raise ValueError(f"`{modality}`: a .wav recording can only be the audio input")
            return str(path)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return str(path)                                     # the extractor decodes its frames / audio track
        raise ValueError(
            f"`{modality}`: expected a .npy frame file, a .wav recording (audio) or a video file (visual), got {path.name!r}"
        )
    frames = np.asarray(value, dtype=np.float32)
    if frames.ndim != 2:
        raise ValueError(f"`{modality}` must be [frames, features], got shape {list(frames.shape)}")
    return frames


def given_inputs(record: dict) -> tuple[str, ...]:
    """The inputs a record gives: records are encoded together only when they give the same ones."""
    return tuple(m for m in (*MODALITIES, "video") if is_given(record.get(m)))


def video_paths(records: Sequence[dict], base_dir=None) -> list[str] | None:
    """The records' ``video`` files (resolved against ``base_dir``), or ``None`` when no record has one."""
    flags = [is_given(r.get("video")) for r in records]
    if not any(flags):
        return None
    if not all(flags):
        missing = [i for i, f in enumerate(flags) if not f]
        raise ValueError(f"`video` is given for some records but missing for records {missing[:10]} of the batch")
    paths = []
    for record in records:
        path = Path(record["video"])
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        check_media_file(path, "video", "video file")
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"`video`: {path.name!r} is not a video file ({', '.join(VIDEO_SUFFIXES)})")
        paths.append(str(path))
    return paths


# `label` is allowed (and ignored here) so that a labelled split can be predicted or explained as it is.
RECORD_KEYS = ("id", *MODALITIES, "video", "label")


def check_record(record, modalities: Sequence[str], where: str = "record", base_dir=None) -> None:
    """A ``ValueError`` naming ``where`` unless ``record`` can be encoded for a model with ``modalities``.

    Only cheap checks run (keys, types, that frame files exist and have a readable suffix), so a whole
    input file is checked before any prediction is computed.
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record is a dict with any of {list(MODALITIES)}, got {type(record).__name__}")
    unknown = sorted(set(record) - set(RECORD_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; a record has {list(RECORD_KEYS)}")
    given = [m for m in MODALITIES if is_given(record.get(m))]
    if is_given(record.get("video")):
        if not isinstance(record["video"], (str, Path)):
            raise ValueError(f"{where}: `video` must be a path to a video file, got {type(record['video']).__name__}")
        try:
            video_paths([record], base_dir)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        # A video supplies the frame streams the model uses (and the text, with a processor that transcribes).
        given += [m for m in ("audio", "visual") if m in modalities and m not in given]
    extra = [m for m in given if m not in modalities]
    if extra:
        raise ValueError(f"{where}: {extra} given, but the model uses only {list(modalities)}")
    if not given:
        raise ValueError(f"{where}: needs at least one of {list(modalities)}")
    if "text" in given and not isinstance(record["text"], str):
        raise ValueError(f"{where}: `text` must be a string, got {type(record['text']).__name__}")
    # A blank transcript is not a missing one: only an absent or empty field leaves the text out.
    text = record.get("text")
    if isinstance(text, str) and text and not has_visible_text(text):
        raise ValueError(f"{where}: `text` is empty (no visible character); give at least one word or leave it out")
    for modality in FRAME_MODALITIES:
        value = record.get(modality)
        if not is_given(value) or not isinstance(value, (str, Path)):
            continue
        path = Path(value)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        suffix = path.suffix.lower()
        readable = suffix == ".npy" or suffix in VIDEO_SUFFIXES or (modality == "audio" and suffix == ".wav")
        if not readable:
            kinds = "a .npy frame file, a .wav recording or a video file" if modality == "audio" else "a .npy frame file or a video file"
            raise ValueError(f"{where}: `{modality}` must be {kinds}, got {path.name!r}")
        if path.is_dir():
            raise ValueError(f"{where}: `{modality}` {str(path)!r} is a folder, not a file")
        if not path.is_file():
            raise ValueError(f"{where}: `{modality}` file {str(path)!r} does not exist")


def _is_raw_media(value) -> bool:
    return isinstance(value, (str, Path)) and Path(value).suffix.lower() in (*WAV_SUFFIXES, *VIDEO_SUFFIXES)


def check_raw_media(processor, record: dict, modalities: Sequence[str], where: str = "record") -> None:
    """A ``ValueError`` naming ``where`` when ``record`` gives a recording or a video for a stream whose
    extractor serves a model trained on precomputed frames (checked before anything is decoded)."""
    for modality in FRAME_MODALITIES:
        extractor = getattr(processor, f"{modality}_feature_extractor", None)
        if extractor is None or modality not in modalities or not hasattr(extractor, "check_raw_media"):
            continue
        value = record.get(modality)
        from_video = not is_given(value) and is_given(record.get("video"))
        if _is_raw_media(value) or from_video:
            try:
                if from_video:
                    extractor.check_raw_media("video", "a video" if modality == "audio" else None)
                else:
                    extractor.check_raw_media(modality)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None


def encode_records(processor, records: Sequence[dict], modalities: Sequence[str], max_length: int = 128, base_dir=None):
    """Model inputs (padded tensors) for a list of records; every record must give the same modalities.

    A record's ``video`` is the source of every stream it does not give otherwise (its audio track, its
    frames and, with the processor's ``asr_model``, its transcript)."""
    videos = video_paths(records, base_dir)
    if videos is not None:
        records = [dict(r) for r in records]
        for modality in ("audio", "visual"):
            if (
                modality in modalities
                and getattr(processor, f"{modality}_feature_extractor", None) is not None
                and not any(is_given(r.get(modality)) for r in records)
            ):
                for record, path in zip(records, videos):
                    record[modality] = path
        if "text" in modalities and not any(is_given(r.get("text")) for r in records):
            if getattr(processor, "asr_model", None) is None:
                raise ValueError(
                    "the model reads text but the records give no `text` and the processor has no asr_model to "
                    "transcribe the video; pass --text or save the processor with asr_model=..."
                )
            transcripts = processor.transcribe(videos)
            empty = [v for v, t in zip(videos, transcripts) if not t["text"]]
            if empty:
                raise ValueError(f"the speech recogniser found no words in {empty[:3]}; pass the transcript with --text")
            for record, transcript in zip(records, transcripts):
                record["text"] = transcript["text"]
    given = {m: [is_given(r.get(m)) for r in records] for m in MODALITIES}
    kwargs = {}
    for modality in MODALITIES:
        flags = given[modality]
        if not any(flags):
            continue
        if not all(flags):
            missing = [i for i, f in enumerate(flags) if not f]
            raise ValueError(f"`{modality}` is given for some records but missing for records {missing[:10]} of the batch")
        if modality not in modalities:
            raise ValueError(f"`{modality}` was given but the model uses only {list(modalities)}")
        values = [r[modality] for r in records]
        kwargs[modality] = values if modality == "text" else [load_frames(v, modality, base_dir) for v in values]
    if not kwargs:
        raise ValueError(f"each record needs at least one of {list(modalities)}")
    return processor(**kwargs, padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def postprocess(model, logits: torch.Tensor) -> list[dict]:
    """Scores (regression) or the top class with its probability and all probabilities (classification)."""
    if is_regression(model):
        scores = logits.reshape(-1).tolist()
        return [{"score": s, "polarity": "positive" if s > 0 else "negative" if s < 0 else "neutral"} for s in scores]
    probs = logits.softmax(-1)
    labels = model.config.id2label
    out = []
    for row in probs:
        best = int(row.argmax())
        out.append(
            {"label": labels.get(best, str(best)), "score": float(row[best]), "probabilities": [float(p) for p in row]}
        )
    return out


def record_id(record, index: int) -> str:
    return str(record.get("id", index)) if isinstance(record, dict) else str(index)


def read_records(path: str | Path) -> list[dict]:
    """Records from a ``.jsonl`` (one object per line) or ``.csv`` file with text/audio/visual columns."""
    path = Path(path)
    if path.suffix not in (".jsonl", ".csv"):
        raise ValueError(f"--inputs must be a .jsonl or .csv file, got {path.name!r}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            if path.suffix == ".csv":
                return list(csv.DictReader(f))
            records = []
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except (json.JSONDecodeError, RecursionError) as err:
                        raise ValueError(f"{path} line {number}: not a JSON object ({type(err).__name__})") from None
            return records
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read --inputs {path}: {err}") from err


def records_from_flags(texts, audios, visuals, videos=None) -> list[dict]:
    columns = {"text": texts or [], "audio": audios or [], "visual": visuals or [], "video": videos or []}
    lengths = {k: len(v) for k, v in columns.items() if v}
    if not lengths:
        return []
    if len(set(lengths.values())) > 1:
        raise ValueError(f"--text/--audio/--visual/--video must be given the same number of times, got {lengths}")
    n = next(iter(lengths.values()))
    records = [{k: v[i] for k, v in columns.items() if v} for i in range(n)]
    # A record given as files is named after them, as a converted clip is; by position when names repeat.
    stems = [_file_stem(r) for r in records]
    named = None not in stems and len(set(stems)) == n
    return [{"id": stems[i] if named else str(i), **record} for i, record in enumerate(records)]


def _file_stem(record: dict) -> str | None:
    """The name stem of the record's video, else of its audio or visual file, or ``None``."""
    for key in ("video", "audio", "visual"):
        if is_given(record.get(key)):
            return Path(record[key]).stem
    return None

