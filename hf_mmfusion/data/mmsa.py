"""Readers for the pickles of the MMSA (CMU-MOSI, CMU-MOSEI, CH-SIMS) and MISA code bases.

Each reader returns ``{split: rows}`` with canonical row dicts (``id``, ``label``, and ``text`` /
``audio [T, Da]`` / ``visual [T, Dv]`` / ``label_class`` where the source has them). Pickles are loaded
with the restricted unpickler (numpy arrays and builtins only); the MMSA reader leaves the frame arrays in
the file and builds each row when it is read.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import weakref

import numpy as np

from .safe_pickle import RestrictedUnpickler, UnsafePickleError, safe_load
from .schema import LazyRows, normalize_split

try:  # numpy >= 2
    from numpy._core.numeric import _frombuffer as _FROMBUFFER
except ImportError:  # numpy 1.x
    from numpy.core.numeric import _frombuffer as _FROMBUFFER

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


def read_mmsa_pickle(path: str | os.PathLike) -> dict[str, LazyRows]:
    """An MMSA ``aligned_50.pkl`` / ``unaligned_50.pkl`` / SIMS ``unaligned_39.pkl`` -> rows per split.

    Layout: ``data[split]`` (split in train / valid / test) with ``raw_text``, ``id``, ``audio [N, Ta, Da]``,
    ``vision [N, Tv, Dv]``, ``audio_lengths`` / ``vision_lengths`` (unaligned only), ``regression_labels
    [N]``, optionally ``classification_labels`` and SIMS' ``regression_labels_{T,A,V}``. Frames past a
    sample's length are dropped; aligned data (no lengths) keeps all frames, as the MMSA loader does.

    The frame arrays stay in the file (:func:`load_pickle_lazily`): a split's rows are built one at a time
    as they are read, so memory holds one sample's frames, not the pickle (CMU-MOSEI's is 13.7 GB).
    """
    data = load_pickle_lazily(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: an MMSA pickle is a dict of splits (train/valid/test), got {type(data).__name__}")
    out: dict[str, LazyRows] = {}
    for split_key, split_data in data.items():
        split = normalize_split(split_key)
        if not isinstance(split_data, dict):
            raise ValueError(f"{path}: split {split_key!r} must be a dict of arrays, got {type(split_data).__name__}")
        out[split] = _mmsa_split_rows(path, split, split_key, split_data)
    return out


def _mmsa_split_rows(path, split: str, split_key: str, split_data: dict) -> LazyRows:
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
    extras = {name: values for name, values in extras.items() if values is not None}

    def build(i: int) -> dict:
        row = {"id": row_ids[i], "label": float(labels[i])}
        if texts is not None:
            row["text"] = str(texts[i])
        if audio is not None:
            row["audio"] = _sample_frames(audio, audio_lengths, i, "audio", split_key)
        if vision is not None:
            row["visual"] = _sample_frames(vision, vision_lengths, i, "vision", split_key)
        if classes is not None:
            row["label_class"] = int(np.rint(float(np.asarray(classes[i]).reshape(-1)[0])))
        for name, values in extras.items():
            row[name] = float(np.asarray(values[i]).reshape(-1)[0])
        return row

    row_ids = [_mmsa_id(ids[i]) for i in range(n)] if ids is not None else [f"{split}-{i:06d}" for i in range(n)]
    return LazyRows(row_ids, build)


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


# ---------------------------------------------------------------- reading frames from the file, not from memory
# Payloads at least this large are left in the file and read per sample; smaller ones are read as usual.
LAZY_PAYLOAD_BYTES = 1 << 20


class _FileSpan:
    """A payload of the pickle (``bytes``, ``bytearray`` or a Python 2 ``str``) left in the file."""

    __slots__ = ("kind", "length", "offset", "source")

    def __init__(self, source: _PickleFile, offset: int, length: int, kind: str):
        self.source, self.offset, self.length, self.kind = source, offset, length, kind

    def load(self):
        data = self.source.read(self.offset, self.length)
        if self.kind == "bytearray":
            return bytearray(data)
        if self.kind == "str":
            return data.decode("latin1")  # what the eager unpickler makes of a Python 2 string with encoding latin1
        return data


class _PickleFile:
    """The open pickle the lazy arrays of one load read from (closed when the last of them is gone)."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        self._finalizer = weakref.finalize(self, os.close, self.fd)

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise ValueError(f"{self.path} is not a readable pickle (truncated or corrupt?): it ends inside an array")
        return data


class PickledArray:
    """An array of a pickle whose data stays in the file: ``len``, ``shape``, ``dtype`` and ``array[i]`` (one
    sample read from disk); ``np.asarray`` reads it whole."""

    def __init__(self, span: _FileSpan, shape, dtype, fortran: bool):
        self.shape, self.dtype, self._span, self._fortran = tuple(int(d) for d in shape), np.dtype(dtype), span, fortran
        self._whole = None
        if self.dtype.hasobject:
            raise pickle.UnpicklingError("an object array cannot be read from raw bytes")
        if int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize != span.length:
            raise pickle.UnpicklingError(
                f"an array of shape {list(self.shape)} and dtype {self.dtype} has {span.length} bytes of data"
            )

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of an unsized array")
        return self.shape[0]

    def __getitem__(self, index):
        if not isinstance(index, (int, np.integer)) or self._fortran or not self.shape:
            # A Fortran-order sample is scattered over the whole payload: such an array is read in once.
            if self._whole is None:
                self._whole = np.asarray(self)
            return self._whole[index]
        n = self.shape[0]
        i = int(index) + n if index < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"index {index} is out of bounds for an array of {n} samples")
        row = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        data = self._span.source.read(self._span.offset + i * row, row)
        return np.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:])

    def __array__(self, dtype=None, copy=None):
        if self._whole is not None:
            return self._whole if dtype is None else self._whole.astype(dtype)
        data = bytearray(self._span.source.read(self._span.offset, self._span.length))
        array = np.frombuffer(data, dtype=self.dtype).reshape(self.shape, order="F" if self._fortran else "C")
        return array if dtype is None else array.astype(dtype)


def _load_spans(value, memo: dict):
    """``value`` with every payload still in the file read in (containers rebuilt where they held one)."""
    if isinstance(value, _FileSpan):
        return value.load()
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, list):
        memo[key] = value  # self-references stay self-references
        value[:] = [_load_spans(v, memo) for v in value]
    elif isinstance(value, dict):
        memo[key] = value
        items = [(_load_spans(k, memo), _load_spans(v, memo)) for k, v in value.items()]
        value.clear()
        value.update(items)
    elif isinstance(value, tuple):
        memo[key] = value = tuple(_load_spans(v, memo) for v in value)
    elif isinstance(value, (set, frozenset)):
        memo[key] = value = type(value)(_load_spans(v, memo) for v in value)
    return value


class _LazyUnpickler(pickle._Unpickler):
    """The restricted unpickler (the allow-list and size bounds of :class:`RestrictedUnpickler`), run by the
    pure-Python ``pickle`` machine so that large payloads can be skipped: a numpy array whose data is one such
    payload becomes a :class:`PickledArray`; any other use of a payload reads it in."""

    find_class = RestrictedUnpickler.find_class
    _bounded = RestrictedUnpickler._bounded
    _bounded_array = RestrictedUnpickler._bounded_array
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, handle, source: _PickleFile, max_items: int):
        super().__init__(handle, encoding="latin1")
        self.handle, self.source, self.max_items, self.spans = handle, source, max_items, 0

    def _payload(self, length: int, kind: str):
        frame = self._unframer.current_frame
        if frame is not None:
            with frame.getbuffer() as view:
                left = view.nbytes - frame.tell()
            if left:  # inside a frame: small, and already in memory
                data = self.read(length)
                return bytearray(data) if kind == "bytearray" else self._decode_string(data) if kind == "str" else data
            self._unframer.current_frame = None
        if length < LAZY_PAYLOAD_BYTES:
            data = self.read(length)
            if len(data) != length:
                raise EOFError("the pickle ends inside a payload")
            return bytearray(data) if kind == "bytearray" else self._decode_string(data) if kind == "str" else data
        offset = self.handle.tell()
        if offset + length > self.source.size:
            raise EOFError("the pickle ends inside a payload")
        self.handle.seek(length, os.SEEK_CUR)
        self.spans += 1
        return _FileSpan(self.source, offset, length, kind)

    def _settled(self, value):
        return _load_spans(value, {}) if self.spans else value

    def load_binbytes(self):
        (length,) = struct.unpack("<I", self.read(4))
        self.append(self._payload(length, "bytes"))

    def load_binbytes8(self):
        (length,) = struct.unpack("<Q", self.read(8))
        self.append(self._payload(length, "bytes"))

    def load_bytearray8(self):
        (length,) = struct.unpack("<Q", self.read(8))
        self.append(self._payload(length, "bytearray"))

    def load_binstring(self):
        (length,) = struct.unpack("<i", self.read(4))
        if length < 0:
            raise pickle.UnpicklingError("BINSTRING pickle has negative byte count")
        self.append(self._payload(length, "str"))

    dispatch[pickle.BINBYTES[0]] = load_binbytes
    dispatch[pickle.BINBYTES8[0]] = load_binbytes8
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8
    dispatch[pickle.BINSTRING[0]] = load_binstring

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if func is _FROMBUFFER and args and isinstance(args[0], _FileSpan) and len(args) == 4:
            # Protocol 5: _frombuffer(buffer, dtype, shape, order).
            self.stack[-1] = PickledArray(args[0], args[2], args[1], fortran=args[3] == "F")
            return
        self.stack[-1] = func(*self._settled(args))

    def load_build(self):
        state = self.stack[-1]
        inst = self.stack[-2]
        # ndarray.__reduce__ state: (version, shape, dtype, is_fortran, data) or, older, without the version.
        if (type(inst) is np.ndarray and isinstance(state, tuple) and len(state) in (4, 5)
                and isinstance(state[-1], _FileSpan) and isinstance(state[-3], np.dtype)):
            self.stack.pop()
            self.stack[-1] = PickledArray(state[-1], state[-4], state[-3], fortran=bool(state[-2]))
            return
        self.stack[-1] = self._settled(state)
        super().load_build()

    def load_newobj(self):
        self.stack[-1] = self._settled(self.stack[-1])
        super().load_newobj()

    def load_newobj_ex(self):
        self.stack[-2:] = [self._settled(self.stack[-2]), self._settled(self.stack[-1])]
        super().load_newobj_ex()

    def _instantiate(self, klass, args):
        super()._instantiate(klass, self._settled(args))

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex


def load_pickle_lazily(path: str | os.PathLike):
    """Unpickle ``path`` as :func:`~hf_mmfusion.data.safe_pickle.safe_load` does (same allow-list, same
    errors), except that numpy arrays of at least ``LAZY_PAYLOAD_BYTES`` stay in the file as
    :class:`PickledArray` objects: memory holds the pickle's small values only, and ``array[i]`` reads one
    sample. Arrays pickled as Python 3 protocol 2 (``_codecs.encode``) text cannot be skipped and are read in.
    """
    path = os.fspath(path)
    try:
        source = _PickleFile(path)
    except OSError as err:
        raise ValueError(f"cannot read pickle {path}: {err}") from err
    try:
        with open(source.fd, "rb", closefd=False) as handle:
            unpickler = _LazyUnpickler(handle, source, max_items=max(1 << 20, 4 * source.size))
            data = unpickler.load()
            return _load_spans(data, {}) if unpickler.spans else data
    except UnsafePickleError:
        raise
    except Exception as err:  # truncated / corrupt files raise many types (EOFError, UnpicklingError, ...)
        raise ValueError(f"{path} is not a readable pickle (truncated or corrupt?): {type(err).__name__}: {err}") from err
