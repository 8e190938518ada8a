"""Readers for the pickles of the MMSA (CMU-MOSI, CMU-MOSEI, CH-SIMS) and MISA code bases.

Each reader returns ``{split: [row, ...]}`` with canonical row dicts (``id``, ``label``, and ``text`` /
``audio [T, Da]`` / ``visual [T, Dv]`` / ``label_class`` where the source has them). Pickles are loaded
with the restricted unpickler (numpy arrays and builtins only).
"""

from __future__ import annotations

import os
import re

import numpy as np

from .safe_pickle import safe_load
from .schema import normalize_split

# MMSA's per-modality labels of CH-SIMS and the canonical extra columns they become.
MMSA_EXTRA_LABELS = {"regression_labels_T": "label_text", "regression_labels_A": "label_audio",
                     "regression_labels_V": "label_visual"}


def _mmsa_id(value) -> str:
    # MMSA joins video and clip as "video$_$clip"; the other sources write "video_clip".
    return str(value).replace("$_$", "_")


def _column(split_data: dict, key: str, n: int, split: str):
    value = split_data.get(key)
    if value is None:
        return None
    if len(value) != n:
        raise ValueError(f"MMSA split {split!r}: `{key}` has {len(value)} entries, expected {n} (one per sample)")
    return value


def _sample_frames(array, lengths, i: int, key: str, split: str) -> np.ndarray:
    frames = np.asarray(array[i])
    if frames.ndim != 2:
        raise ValueError(f"MMSA split {split!r}: `{key}[{i}]` must be [frames, dim], got shape {list(frames.shape)}")
    if lengths is not None:
        # Unaligned MMSA data pads every sequence at the end; the lengths say how many frames are real.
        frames = frames[: int(min(max(int(lengths[i]), 0), frames.shape[0]))]
    return frames


def read_mmsa_pickle(path: str | os.PathLike) -> dict[str, list[dict]]:
    """An MMSA ``aligned_50.pkl`` / ``unaligned_50.pkl`` / SIMS ``unaligned_39.pkl`` -> rows per split.

    Layout: ``data[split]`` (split in train / valid / test) with ``raw_text``, ``id``, ``audio [N, Ta, Da]``,
    ``vision [N, Tv, Dv]``, ``audio_lengths`` / ``vision_lengths`` (unaligned only), ``regression_labels
    [N]``, optionally ``classification_labels`` and SIMS' ``regression_labels_{T,A,V}``. Frames past a
    sample's length are dropped; aligned data (no lengths) keeps all frames, as the MMSA loader does.
    """
    data = safe_load(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: an MMSA pickle is a dict of splits (train/valid/test), got {type(data).__name__}")
    out: dict[str, list[dict]] = {}
    for split_key, split_data in data.items():
        split = normalize_split(split_key)
        if not isinstance(split_data, dict):
            raise ValueError(f"{path}: split {split_key!r} must be a dict of arrays, got {type(split_data).__name__}")
        if "regression_labels" in split_data:
            labels = np.asarray(split_data["regression_labels"], dtype=np.float64).reshape(-1)
        elif isinstance(split_data.get("labels"), dict) and "M" in split_data["labels"]:
            labels = np.asarray(split_data["labels"]["M"], dtype=np.float64).reshape(-1)  # older MMSA layout
        else:
            raise ValueError(f"{path}: split {split_key!r} has no `regression_labels`; keys are {sorted(split_data)}")
        n = labels.shape[0]
        ids = _column(split_data, "id", n, split_key)
        texts = _column(split_data, "raw_text", n, split_key)
        audio = _column(split_data, "audio", n, split_key)
        vision = _column(split_data, "vision", n, split_key)
        audio_lengths = _column(split_data, "audio_lengths", n, split_key)
        vision_lengths = _column(split_data, "vision_lengths", n, split_key)
        classes = _column(split_data, "classification_labels", n, split_key)
        extras = {name: _column(split_data, key, n, split_key) for key, name in MMSA_EXTRA_LABELS.items()}
        rows = []
        for i in range(n):
            row = {"id": _mmsa_id(ids[i]) if ids is not None else f"{split}-{i:06d}", "label": float(labels[i])}
            if texts is not None:
                row["text"] = str(texts[i])
            if audio is not None:
                row["audio"] = _sample_frames(audio, audio_lengths, i, "audio", split_key)
            if vision is not None:
                row["visual"] = _sample_frames(vision, vision_lengths, i, "vision", split_key)
            if classes is not None:
                row["label_class"] = int(np.rint(float(np.asarray(classes[i]).reshape(-1)[0])))
            for name, values in extras.items():
                if values is not None:
                    row[name] = float(np.asarray(values[i]).reshape(-1)[0])
            rows.append(row)
        out[split] = rows
    return out


_MISA_ID = re.compile(r"(?P<video>.+)\[(?P<index>\d+)\]")


def read_misa_pickle(path: str | os.PathLike) -> list[dict]:
    """A MISA-format split pickle -> rows.

    Layout: a list of ``((word_ids [L], visual [L, Dv], acoustic [L, Da], words list[str]), label [1, 1],
    "video[k]")``; ``video[k]`` is segment ``k + 1`` of the video (id ``video_{k+1}``). The text is the
    words joined by spaces (MISA drops words outside its vocabulary, so it can miss a few).
    """
    data = safe_load(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a MISA pickle is a list of samples, got {type(data).__name__}")
    rows = []
    for i, sample in enumerate(data):
        try:
            (_, visual, acoustic, words), label, segment = sample
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{path}: sample {i} must be ((word_ids, visual, acoustic, words), label, 'video[k]')"
            ) from err
        match = _MISA_ID.fullmatch(str(segment))
        segment_id = f"{match['video']}_{int(match['index']) + 1}" if match else str(segment)
        rows.append(
            {
                "id": segment_id,
                "text": " ".join(str(w) for w in words),
                "audio": np.asarray(acoustic),
                "visual": np.asarray(visual),
                "label": float(np.asarray(label, dtype=np.float64).reshape(-1)[0]),
            }
        )
    return rows
