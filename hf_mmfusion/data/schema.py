"""The canonical dataset schema and the atomic writer every converter uses.

Columns: ``id`` (string), ``text`` (string), ``audio`` (``Array2D((None, Da), float32)``), ``visual``
(``Array2D((None, Dv), float32)``), ``label`` (float32 score), optional ``label_class`` (int64) and
optional extra float32 label columns (CH-SIMS' per-modality labels). Modalities a source lacks are absent
columns. A modality missing for some rows only is a row with no frames (``[0, D]``): ``Array2D`` stores it,
the processor gives it an all-zero attention mask, and the models ignore it like padding.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..utils.ownership import (
    STAGING_PATTERN,
    ScratchDirectory,
    creation_mode,
    record_written,
    remove_abandoned_scratch,
    written_entries,
)

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "validation", "validation": "validation",
                 "val": "validation", "dev": "validation", "test": "test", "testing": "test"}
FILE_FORMATS = ("arrow", "parquet")
# Written into every converter output (listing its entries, in the marker format every command shares);
# only a folder carrying it may be replaced by ``overwrite``. ``datasets`` skips hidden files, so neither
# loader sees it.
OUTPUT_MARKER = ".hf_mmfusion_dataset"


def is_given(value) -> bool:
    """Whether a record's field holds a value: ``None``, an empty string and a blank one (a CSV cell of spaces)
    mean the record does not give it."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def normalize_split(name: str) -> str:
    """``valid`` / ``dev`` / ``val`` -> ``validation`` etc.; raises ``ValueError`` for unknown names."""
    key = str(name).strip().lower()
    if key not in SPLIT_ALIASES:
        raise ValueError(f"unknown split name {name!r}; expected one of {sorted(SPLIT_ALIASES)}")
    return SPLIT_ALIASES[key]


class LazyRows(Sequence):
    """The rows of one split, each built by ``build(i)`` when it is read (``rows[i]``, iteration): a reader
    returns them so that a conversion holds one row at a time, not the source. ``ids`` are known up front."""

    def __init__(self, ids: list[str], build: Callable[[int], dict]):
        self.ids, self.build = list(ids), build

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.build(i) for i in range(*index.indices(len(self)))]
        i = index + len(self) if index < 0 else index
        if not 0 <= i < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        return self.build(i)

    def __iter__(self) -> Iterator[dict]:
        return (self.build(i) for i in range(len(self)))

    def map(self, transform: Callable[[dict], dict]) -> LazyRows:
        """These rows, each passed through ``transform`` when it is built."""
        return LazyRows(self.ids, lambda i: transform(self.build(i)))


def canonical_features(
    *,
    text: bool = False,
    audio_dim: int | None = None,
    visual_dim: int | None = None,
    label_class: bool = False,
    extra_labels: tuple[str, ...] = (),
):
    """``datasets.Features`` of the canonical schema for the modalities present."""
    from datasets import Array2D, Features, Value

    spec = {"id": Value("string")}
    if text:
        spec["text"] = Value("string")
    if audio_dim is not None:
        spec["audio"] = Array2D(shape=(None, int(audio_dim)), dtype="float32")
    if visual_dim is not None:
        spec["visual"] = Array2D(shape=(None, int(visual_dim)), dtype="float32")
    spec["label"] = Value("float32")
    if label_class:
        spec["label_class"] = Value("int64")
    for name in extra_labels:
        spec[name] = Value("float32")
    return Features(spec)


def check_row(row: dict, features, where: str) -> None:
    """Raise a ``ValueError`` naming the row when a frame array does not fit the schema."""
    for modality in ("audio", "visual"):
        if modality in features:
            width = features[modality].shape[1]
            frames = row[modality]
            if frames.ndim != 2 or frames.shape[1] != width:
                raise ValueError(f"{where}: `{modality}` must have shape [frames, {width}], got {list(frames.shape)}")
    if "text" in features and not isinstance(row["text"], str):
        raise ValueError(f"{where}: `text` must be a string, got {type(row['text']).__name__}")
    for name in ("label", *(key for key in features if key.startswith("label_") and key != "label_class")):
        _check_label(row[name], name, where)


def _check_label(value, name: str, where: str) -> None:
    # Stored as float32: a finite float64 beyond its range (1e300) would be written as inf.
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: `{name}` must be a number, got {value!r}") from None
    with np.errstate(over="ignore"):
        finite = np.isfinite(np.float32(number))
    if not finite:
        raise ValueError(f"{where}: `{name}` is not a finite float32 number ({value!r})")


# Rows per Arrow record batch while converting: a batch is held as Python rows and again as Arrow arrays
# before it is written. With the datasets default (1000) `convert mmsa` of 4,000 MOSEI-shaped segments
# peaked at 1.31 GB RSS, with 100 at 1.03 GB (0.75 / 0.61 GB at 1,000). The output's own batches do not
# change: save_to_disk and to_parquet choose theirs.
WRITER_BATCH_ROWS = 100


def build_dataset_dict(splits: dict[str, Callable[[], Iterator[dict]]], features, work_dir: str | os.PathLike):
    """``DatasetDict`` from one row generator per split, written incrementally under ``work_dir``.

    Rows stream through Arrow files (``Dataset.from_generator``), so large splits never exist as one
    Python list; ``work_dir`` is a scratch directory the caller deletes.
    """
    from datasets import Dataset, DatasetDict

    out = {}
    for name, rows in splits.items():
        out[name] = Dataset.from_generator(
            rows,
            features=features,
            cache_dir=os.fspath(work_dir),
            # The scratch cache is fresh, so a random fingerprint avoids hashing the source arrays.
            fingerprint=uuid.uuid4().hex,
            split=name,
            writer_batch_size=WRITER_BATCH_ROWS,
        )
    return DatasetDict(out)


def check_replaceable_output(output_dir: str | os.PathLike, inputs=(), overwrite: bool = False) -> Path:
    """The resolved ``output_dir``, once it is safe to write there; a ``ValueError`` otherwise.

    An existing output is replaced only with ``overwrite`` and only when it is a previous output of the
    converters (it carries the marker file), and never when it holds one of the ``inputs`` or the
    current working directory.
    """
    output = Path(output_dir).resolve()
    for item in list(inputs) + [Path.cwd()]:
        if item in (None, ""):
            continue
        path = Path(item).resolve()
        if path == output or output in path.parents:
            what = "the current directory" if item == Path.cwd() else f"the input {str(item)!r}"
            raise ValueError(f"output {output} holds {what}; choose an output directory outside it")
    if not output.exists() and not output.is_symlink():
        return output
    if not overwrite:
        raise ValueError(f"output directory {output} exists; pass overwrite=True (--overwrite) to replace it")
    if not output.is_dir() or output.is_symlink() or not (output / OUTPUT_MARKER).is_file():
        raise ValueError(
            f"refusing to replace {output}: it is not a dataset written by hf-mmfusion convert "
            f"(no {OUTPUT_MARKER} marker); remove it yourself or choose another output directory"
        )
    written = written_entries(output, OUTPUT_MARKER)
    if written:  # markers written before they listed their entries list nothing: the whole folder is the dataset
        added = sorted(c.name for c in output.iterdir() if c.name not in written and c.name != OUTPUT_MARKER)
        if added:
            raise ValueError(
                f"refusing to replace {output}: it holds files hf-mmfusion convert did not write "
                f"({', '.join(added[:5])}); move them away or choose another output directory"
            )
    return output


def _rename_exclusive(staging: Path, output: Path) -> None:
    """Rename ``staging`` to ``output`` only if nothing is there yet; a ``ValueError`` otherwise.

    ``rename`` refuses a non-empty directory or a file as the target, and every converter output is a
    non-empty directory: of two conversions that race for one output, exactly one keeps it.
    """
    taken = ValueError(
        f"output directory {output} appeared while this conversion ran (another hf-mmfusion convert?); "
        "it was left as it is and this run's result was discarded"
    )
    if output.exists() or output.is_symlink():
        raise taken
    try:
        os.rename(staging, output)
    except OSError as err:
        if err.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise taken from None
        raise


FEATURE_EXTRACTORS_FILE = "feature_extractors.json"


def write_dataset_dict(
    dataset_dict,
    output_dir: str | os.PathLike,
    file_format: str = "arrow",
    overwrite: bool = False,
    inputs=(),
    feature_extractors: dict[str, dict] | None = None,
) -> Path:
    """Write ``dataset_dict`` to ``output_dir`` atomically: into a sibling temporary directory first, then
    renamed into place, so a failure never leaves a partial dataset behind.

    ``"arrow"`` is ``save_to_disk`` (reload with ``datasets.load_from_disk``); ``"parquet"`` writes
    ``data/<split>-00000-of-00001.parquet`` (reload with ``datasets.load_dataset(output_dir)``, the layout
    the Hub uses). Features, ``Array2D`` frames included, survive both. ``overwrite`` replaces only a
    previous output of this function (see :func:`check_replaceable_output`), never a folder holding one
    of ``inputs``. ``feature_extractors`` (modality -> extractor config, as ``to_dict()`` gives it) records how
    the frames were computed, in ``feature_extractors.json``: training builds its processor from it, so the
    saved model computes the same features from raw media (see :func:`read_feature_extractors`).
    """
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
    output = check_replaceable_output(output_dir, inputs, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_scratch(output.parent, STAGING_PATTERN)
    with ScratchDirectory(output.parent, f".{output.name}.partial-", mode=creation_mode(directory=True)) as scratch:
        staging = scratch.path
        if file_format == "arrow":
            dataset_dict.save_to_disk(staging)
        else:
            (staging / "data").mkdir()
            for split, ds in dataset_dict.items():
                ds.to_parquet(staging / "data" / f"{split}-00000-of-00001.parquet")
        if feature_extractors:
            (staging / FEATURE_EXTRACTORS_FILE).write_text(json.dumps(feature_extractors, indent=1, default=str))
        # The whole folder is the converter's: the marker lists everything in it.
        record_written(staging, OUTPUT_MARKER, scratch.entries(), reset=True)
        scratch.seal()
        if overwrite and (output.exists() or output.is_symlink()):
            # Checked again: what is there now may not be what was checked before the conversion.
            check_replaceable_output(output, inputs, overwrite)
            retired = output.with_name(f".{output.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(output, retired)
            os.replace(staging, output)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            _rename_exclusive(staging, output)
    return output


def load_converted(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
    """Load a converter's output, whichever of the two formats it was written in.

    ``cache_dir`` is where ``load_dataset`` prepares Parquet output (the ``datasets`` cache by default).
    """
    from datasets import load_dataset, load_from_disk

    path = Path(path)
    if (path / "dataset_dict.json").exists():
        try:
            return load_from_disk(os.fspath(path))
        except IndexError:
            # datasets cannot concatenate the zero shards of a split saved without rows.
            raise ValueError(f"{path}: a split has no rows; drop empty splits before save_to_disk") from None
    return load_dataset(os.fspath(path), cache_dir=None if cache_dir is None else os.fspath(cache_dir))


def read_feature_extractors(dataset_dir: str | os.PathLike) -> dict[str, dict]:
    """The extractor configs a converter recorded for ``dataset_dir`` (``{}`` when it recorded none)."""
    path = Path(dataset_dir) / FEATURE_EXTRACTORS_FILE
    if not path.is_file():
        return {}
    try:
        recorded = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(recorded, dict) or not all(isinstance(v, dict) for v in recorded.values()):
        raise ValueError(f"{path}: expected an object of modality -> extractor config")
    return recorded
