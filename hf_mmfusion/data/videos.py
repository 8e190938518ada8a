"""A labelled folder of video clips -> canonical rows, with real features, a cache and a failure report.

Every clip (``.mp4``, ``.mkv``, ... in ``clips_dir``) named by a row of the labels file gets its acoustic
frames from its audio track, its visual frames from its picture (see the two feature extractors) and, with
a speech recogniser, its transcript. Clips are processed in batches with one progress bar; each finished
clip's features are cached (keyed by the extractor settings and the clip's size and modification time), so
a re-run after an interruption only does the clips that are left. A clip that cannot be used (corrupt file,
no audio track, no face in any frame with ``face_crop``) is reported, not fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..processing.feature_extraction_mmfusion import VIDEO_SUFFIXES
from .manifest import read_table_records
from .schema import is_given, normalize_split

REPORT_NAME = "report.json"


def _settings_key(audio_extractor, visual_extractor, asr_model) -> str:
    settings = {
        "audio": None if audio_extractor is None else audio_extractor.to_dict(),
        "visual": None if visual_extractor is None else visual_extractor.to_dict(),
        "asr_model": asr_model,
    }
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stamp(path: Path) -> str:
    info = path.stat()
    return f"{info.st_size}-{info.st_mtime_ns}"


def _load_cached(file: Path, stamp: str) -> dict | None:
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            if str(data["stamp"]) != stamp:
                return None
            return {key: (str(data[key]) if key == "text" else data[key]) for key in data.files if key != "stamp"}
    except (OSError, ValueError, KeyError, EOFError):
        return None                                               # an interrupted write: redo the clip


def _save_cached(file: Path, stamp: str, features: dict) -> None:
    partial = file.with_name(file.name + ".partial.npz")
    np.savez(partial, stamp=np.asarray(stamp), **{k: np.asarray(v) for k, v in features.items()})
    os.replace(partial, file)


def _clip_features(paths: list[Path], audio_extractor, visual_extractor, processor) -> list[dict]:
    """Features of a batch of clips; raises ``ValueError`` when any clip of the batch fails."""
    out = [dict() for _ in paths]
    names = [str(p) for p in paths]
    if audio_extractor is not None:
        frames = audio_extractor._frames_from_inputs(names)
        for row, f in zip(out, frames):
            row["audio"] = np.asarray(f, dtype=np.float32)
    if visual_extractor is not None:
        for i, (row, name) in enumerate(zip(out, names)):
            frames = visual_extractor.video_to_frames(name, where=f"video {paths[i].name}")
            if np.isnan(frames).all():
                raise ValueError(f"{paths[i].name}: no face in any sampled frame")
            row["visual"] = frames
    if processor is not None:
        for row, path, result in zip(out, paths, processor.transcribe(names)):
            if not result["text"]:
                raise ValueError(f"{path.name}: the speech recogniser found no words")
            row["text"] = result["text"]
    return out


def read_video_folder(
    clips_dir: str | os.PathLike,
    labels: str | os.PathLike,
    *,
    audio_extractor=None,
    visual_extractor=None,
    asr_model: str | None = None,
    id_column: str = "id",
    label_column: str = "label",
    split_column: str = "split",
    text_column: str = "text",
    default_split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[dict[str, list[dict]], list[dict]]:
    """(rows per split, failures) for the clips of ``clips_dir`` labelled in ``labels``.

    ``labels`` is a CSV / TSV / JSON / JSON-Lines file with an id (the clip's file name, with or without its
    suffix), a label, optionally a split and a transcript; a transcript given there is used as it is, the
    others come from ``asr_model`` (when given). Each failure is ``{"id", "path", "reason"}``; the list is
    also written to ``cache_dir/report.json``.
    """
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    clips_dir, labels = Path(clips_dir), Path(labels)
    if not clips_dir.is_dir():
        raise ValueError(f"clips folder {clips_dir} does not exist")
    records = read_table_records(labels)
    if not records:
        raise ValueError(f"{labels}: the labels file has no rows")
    for needed in (id_column, label_column):
        if needed not in records[0]:
            raise ValueError(f"{labels}: column {needed!r} not found; columns are {sorted(records[0])}")
    if audio_extractor is None and visual_extractor is None and asr_model is None:
        raise ValueError("convert videos needs at least one of audio features, visual features or an ASR model")
    if asr_model is not None:
        from ..utils.sources import model_source

        model_source(asr_model, "ASR model")
    clips = {p.stem: p for p in sorted(clips_dir.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}
    clips.update({p.name: p for p in clips.values()})
    cache = Path(cache_dir) if cache_dir is not None else clips_dir / ".hf-mmfusion-cache"
    cache = cache / _settings_key(audio_extractor, visual_extractor, asr_model)
    cache.mkdir(parents=True, exist_ok=True)
    processor = None
    if asr_model is not None:
        from ..processing.processing_mmfusion import MMFusionProcessor

        processor = MMFusionProcessor(asr_model=asr_model)

    failures, todo, done = [], [], {}
    meta = {}
    for i, record in enumerate(records):
        clip_id = str(record[id_column])
        where = f"{labels.name} row {i + 1} (id {clip_id!r})"
        try:
            label = float(record[label_column])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: `{label_column}` must be a number, got {record[label_column]!r}") from err
        split = normalize_split(record[split_column]) if is_given(record.get(split_column)) else normalize_split(default_split)
        path = clips.get(clip_id)
        if path is None:
            failures.append({"id": clip_id, "path": None, "reason": f"no clip named {clip_id} in {clips_dir}"})
            continue
        sample_id = path.stem
        if sample_id in meta:
            raise ValueError(f"{where}: duplicate id {sample_id!r}")
        text = str(record[text_column]) if is_given(record.get(text_column)) else None
        meta[sample_id] = {"label": label, "split": split, "text": text, "path": path}
        cached = _load_cached(cache / f"{sample_id}.npz", _stamp(path))
        if cached is not None:
            done[sample_id] = cached
        else:
            todo.append(sample_id)

    bar = tqdm(total=len(meta), initial=len(done), desc="extracting", unit="clip", disable=not progress)
    for start in range(0, len(todo), batch_size):
        group = todo[start : start + batch_size]
        needs_asr = processor if any(meta[c]["text"] is None for c in group) else None
        try:
            results = _clip_features([meta[c]["path"] for c in group], audio_extractor, visual_extractor, needs_asr)
        except ValueError:
            results = None
        if results is None:                                       # find the failing clips one by one
            results = []
            for clip in group:
                asr = processor if meta[clip]["text"] is None else None
                try:
                    results.append(_clip_features([meta[clip]["path"]], audio_extractor, visual_extractor, asr)[0])
                except ValueError as err:
                    failures.append({"id": clip, "path": str(meta[clip]["path"]), "reason": str(err)})
                    results.append(None)
        for clip, features in zip(group, results):
            if features is not None:
                _save_cached(cache / f"{clip}.npz", _stamp(meta[clip]["path"]), features)
                done[clip] = features
        bar.update(len(group))
    bar.close()

    rows: dict[str, list[dict]] = {}
    for clip, info in meta.items():
        if clip not in done:
            continue
        row = {"id": clip, "label": info["label"]}
        features = done[clip]
        text = info["text"] if info["text"] is not None else features.get("text")
        if text is not None and (asr_model is not None or any(m["text"] is not None for m in meta.values())):
            row["text"] = text
        for modality in ("audio", "visual"):
            if modality in features:
                row[modality] = np.asarray(features[modality], dtype=np.float32)
        rows.setdefault(info["split"], []).append(row)
    (cache / REPORT_NAME).write_text(json.dumps({"converted": len(done), "failed": failures}, indent=1))
    if failures:
        print(f"{len(failures)} clip(s) failed (listed in {cache / REPORT_NAME}):", file=sys.stderr)
        for failure in failures:
            print(f"  {failure['id']}: {failure['reason']}", file=sys.stderr)
    if not rows:
        raise ValueError(f"no clip of {clips_dir} could be converted ({len(failures)} failed)")
    return rows, failures
