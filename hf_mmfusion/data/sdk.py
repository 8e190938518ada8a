"""Readers for CMU-MultimodalSDK computational sequences (``.csd``, HDF5) and the SDK's standard folds.

A computational sequence holds one root group ``<root>/data/<video>/{features [n, d], intervals [n, 2]}``
plus ``<root>/metadata``. A *label* sequence (e.g. ``CMU_MOSI_Opinion_Labels.csd``) has one row per
opinion segment; segment ``k`` (0-based, in stored order) of a video has id ``<video>_<k+1>``, as in the
MMSA and CSV releases. *Feature* sequences (COVAREP, Facet, OpenFace, words) hold frame-level rows whose
intervals are intersected with each segment's interval.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np

FOLD_SPLITS = (("train", "train"), ("valid", "validation"), ("dev", "validation"), ("test", "test"))
# Tokens of the SDK's word sequences that mark silence, not words.
SILENCE_TOKENS = frozenset({"sp", "sil", ""})


def read_csd(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{video: (features [n, d], intervals [n, 2])}`` of a computational sequence.

    Raises ``ValueError`` when the file is not readable HDF5 or lacks the SDK layout.
    """
    import h5py

    path = os.fspath(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable HDF5 computational sequence (corrupt or truncated?): {err}") from err
    try:
        with handle:
            roots = list(handle.keys())
            if len(roots) != 1 or "data" not in handle[roots[0]]:
                raise ValueError(f"{path}: expected one root group holding `data/`, found groups {roots}")
            data = handle[roots[0]]["data"]
            out = {}
            for video in data:
                group = data[video]
                if "features" not in group or "intervals" not in group:
                    raise ValueError(f"{path}: video {video!r} lacks `features` or `intervals`")
                features, intervals = group["features"][()], np.asarray(group["intervals"][()], dtype=np.float64)
                if intervals.ndim != 2 or intervals.shape[1] != 2 or len(features) != len(intervals):
                    raise ValueError(
                        f"{path}: video {video!r} has features {list(features.shape)} and intervals "
                        f"{list(intervals.shape)}; expected [n, d] and [n, 2]"
                    )
                out[video] = (features, intervals)
            return out
    except ValueError:
        raise
    except Exception as err:  # h5py surfaces damaged datasets as OSError/KeyError/RuntimeError
        raise ValueError(f"{path}: cannot read the computational sequence ({type(err).__name__}: {err})") from err


def read_standard_folds(path: str | os.PathLike) -> dict[str, list[str]]:
    """The SDK's ``standard_folds`` file (Python source with ``standard_train_fold = [...]`` etc.).

    It is parsed, never executed: only assignments of literal lists of strings are read, and a name's
    ``train`` / ``valid`` / ``dev`` / ``test`` part decides its split.
    """
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read the folds file {path} ({type(err).__name__}: {err})") from err
    try:
        tree = ast.parse(source, filename=os.fspath(path))
    except SyntaxError as err:
        raise ValueError(f"{path}: not a folds file ({err})") from err
    folds: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            continue
        name = node.targets[0].id.lower()
        split = next((s for key, s in FOLD_SPLITS if key in name), None)
        if split is None:
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError as err:
            raise ValueError(f"{path}: `{node.targets[0].id}` must be a literal list of video ids") from err
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{path}: `{node.targets[0].id}` must be a list of video id strings")
        folds.setdefault(split, []).extend(value)
    if not folds:
        raise ValueError(f"{path}: no train/valid/test fold lists found")
    return folds


def _overlapping(intervals: np.ndarray, start: float, end: float) -> np.ndarray:
    return (intervals[:, 0] < end) & (intervals[:, 1] > start)


def _decode_word(value) -> str:
    value = np.asarray(value).reshape(-1)[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_sdk_dataset(
    labels_csd: str | os.PathLike,
    folds: dict[str, list[str]],
    audio_csd: str | os.PathLike | None = None,
    visual_csd: str | os.PathLike | None = None,
    words_csd: str | os.PathLike | None = None,
) -> dict[str, list[dict]]:
    """Segment rows per split from a label sequence, optional feature / word sequences and the folds.

    ``label`` is the first label dimension (the sentiment score). Frames and words whose intervals
    overlap a segment's interval belong to it; silence tokens are dropped from the text.
    """
    labels = read_csd(labels_csd)
    streams = {
        name: read_csd(path)
        for name, path in (("audio", audio_csd), ("visual", visual_csd), ("text", words_csd))
        if path is not None
    }
    out: dict[str, list[dict]] = {}
    for split, videos in folds.items():
        rows = []
        for video in videos:
            if video not in labels:
                raise ValueError(f"video {video!r} of split {split!r} is not in the label sequence {labels_csd}")
            values, intervals = labels[video]
            for name, stream in streams.items():
                if video not in stream:
                    raise ValueError(f"video {video!r} of split {split!r} is missing from the {name} sequence")
            for k, ((start, end), value) in enumerate(zip(intervals, values)):
                row = {"id": f"{video}_{k + 1}", "label": float(np.asarray(value, dtype=np.float64).reshape(-1)[0])}
                for name, stream in streams.items():
                    feats, ivals = stream[video]
                    keep = _overlapping(ivals, start, end)
                    if name == "text":
                        words = [_decode_word(w) for w in feats[keep]]
                        row["text"] = " ".join(w for w in words if w.strip().lower() not in SILENCE_TOKENS)
                    else:
                        row[name] = np.asarray(feats[keep], dtype=np.float32)
                rows.append(row)
        out[split] = rows
    return out
