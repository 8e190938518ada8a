"""Readers for CMU-MultimodalSDK computational sequences (``.csd``, HDF5) and the SDK's standard folds.

A computational sequence holds one root group ``<root>/data/<video>/{features [n, d], intervals [n, 2]}``
plus ``<root>/metadata``. A *label* sequence (e.g. ``CMU_MOSI_Opinion_Labels.csd``) has one row per
opinion segment; segment ``k`` (0-based, in stored order) of a video has id ``<video>_<k+1>``, as in the
MMSA and CSV releases. *Feature* sequences (COVAREP, Facet, OpenFace, words) hold frame-level rows whose
intervals are intersected with each segment's interval.
"""

from __future__ import annotations

import ast
import contextlib
import os
from pathlib import Path

import numpy as np

from .schema import LazyRows

FOLD_SPLITS = (("train", "train"), ("valid", "validation"), ("dev", "validation"), ("test", "test"))
# Tokens of the SDK's word sequences that mark silence, not words.
SILENCE_TOKENS = frozenset({"sp", "sil", ""})


class ComputationalSequence:
    """A computational sequence opened for reading one video or segment at a time (HDF5 reads only what is
    asked for). Layout problems and damaged data raise a ``ValueError`` naming the file."""

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = os.fspath(path)
        try:
            self._handle = h5py.File(self.path, "r")
        except (OSError, ValueError) as err:
            raise ValueError(
                f"{self.path} is not a readable HDF5 computational sequence (corrupt or truncated?): {err}"
            ) from err
        with self._reading():
            roots = list(self._handle.keys())
            if len(roots) != 1 or "data" not in self._handle[roots[0]]:
                self._handle.close()
                raise ValueError(f"{self.path}: expected one root group holding `data/`, found groups {roots}")
            self._data = self._handle[roots[0]]["data"]
            self.videos = list(self._data)
        self._cached = (None, None)

    @contextlib.contextmanager
    def _reading(self):
        try:
            yield
        except ValueError:
            raise
        except Exception as err:  # h5py surfaces damaged datasets as OSError/KeyError/RuntimeError
            raise ValueError(
                f"{self.path}: cannot read the computational sequence ({type(err).__name__}: {err})"
            ) from err

    def __contains__(self, video: str) -> bool:
        return video in self._data

    def check(self, video: str) -> int:
        """The number of rows of ``video`` once its layout is checked (shapes only: no data is read)."""
        with self._reading():
            group = self._data[video]
            if "features" not in group or "intervals" not in group:
                raise ValueError(f"{self.path}: video {video!r} lacks `features` or `intervals`")
            features, intervals = group["features"].shape, group["intervals"].shape
        if len(intervals) != 2 or intervals[1] != 2 or not features or features[0] != intervals[0]:
            raise ValueError(
                f"{self.path}: video {video!r} has features {list(features)} and intervals "
                f"{list(intervals)}; expected [n, d] and [n, 2]"
            )
        return intervals[0]

    def intervals(self, video: str) -> np.ndarray:
        """``[n, 2]`` intervals of ``video`` (the last video's are kept: segments are read video by video)."""
        if self._cached[0] != video:
            self.check(video)
            with self._reading():
                self._cached = (video, np.asarray(self._data[video]["intervals"][()], dtype=np.float64))
        return self._cached[1]

    def features(self, video: str, rows: np.ndarray | None = None) -> np.ndarray:
        """The feature rows of ``video`` where the boolean mask ``rows`` is set (all rows for ``None``); only the
        stretch from the first to the last of them is read."""
        with self._reading():
            dataset = self._data[video]["features"]
            if rows is None:
                return dataset[()]
            picked = np.flatnonzero(rows)
            if not len(picked):
                return dataset[0:0]
            low, high = int(picked[0]), int(picked[-1]) + 1
            block = dataset[low:high]
            return block if high - low == len(picked) else block[rows[low:high]]

    def close(self) -> None:
        self._handle.close()


def read_csd(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{video: (features [n, d], intervals [n, 2])}`` of a computational sequence.

    Raises ``ValueError`` when the file is not readable HDF5 or lacks the SDK layout.
    """
    sequence = ComputationalSequence(path)
    try:
        return {video: (sequence.features(video), sequence.intervals(video)) for video in sequence.videos}
    finally:
        sequence.close()


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
) -> dict[str, LazyRows]:
    """Segment rows per split from a label sequence, optional feature / word sequences and the folds.

    ``label`` is the first label dimension (the sentiment score). Frames and words whose intervals
    overlap a segment's interval belong to it; silence tokens are dropped from the text. Every video of
    the folds and its layout is checked first; a segment's frames are read from the files when its row is
    built, so memory holds one segment, not the sequences (COVAREP of CMU-MOSEI is several GB).
    """
    labels = ComputationalSequence(labels_csd)
    streams = {
        name: ComputationalSequence(path)
        for name, path in (("audio", audio_csd), ("visual", visual_csd), ("text", words_csd))
        if path is not None
    }
    out: dict[str, LazyRows] = {}
    for split, videos in folds.items():
        segments = []
        for video in videos:
            if video not in labels:
                raise ValueError(f"video {video!r} of split {split!r} is not in the label sequence {labels_csd}")
            for name, stream in streams.items():
                if video not in stream:
                    raise ValueError(f"video {video!r} of split {split!r} is missing from the {name} sequence")
                stream.check(video)
            segments += [(video, k) for k in range(labels.check(video))]
        out[split] = LazyRows([f"{video}_{k + 1}" for video, k in segments], _segment_reader(segments, labels, streams))
    return out


def _segment_reader(segments: list[tuple[str, int]], labels: ComputationalSequence, streams: dict):
    def build(i: int) -> dict:
        video, k = segments[i]
        start, end = labels.intervals(video)[k]
        value = labels.features(video, np.arange(len(labels.intervals(video))) == k)[0]
        row = {"id": f"{video}_{k + 1}", "label": float(np.asarray(value, dtype=np.float64).reshape(-1)[0])}
        for name, stream in streams.items():
            keep = _overlapping(stream.intervals(video), start, end)
            feats = stream.features(video, keep)
            if name == "text":
                words = [_decode_word(w) for w in feats]
                row["text"] = " ".join(w for w in words if w.strip().lower() not in SILENCE_TOKENS)
            else:
                row[name] = np.asarray(feats, dtype=np.float32)
        return row

    return build
